"""Starting the reference LGC next to the simulators: its settings are generated from the bench's, so it
reaches each service where the bench says (directly, or through the network proxy), over the wire only."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from simulators.registry import SERVICES

from .config import BenchConfig
from .lifeline import Lifeline

DEFAULT_CLIENT = ("segur-bench-lgc", "segur-bench-lgc-secret")  # registered by the PSC simulator for port 8000


@dataclass
class LgcProcess:
    url: str
    process: subprocess.Popen
    log_path: Path
    config_path: Path


REFERENCE_CERTS = {"structure": "reference-lgc", "software": "reference-lgc-insi"}


def reference_certificates(config: BenchConfig, workstation: str = "") -> dict[str, tuple[Path, Path]]:
    """The reference LGC's client certificates, issued once per data directory: its practice's ORG AUTH_CLI
    (every service that asks for one, the DMP first) and an INSI-AUTO one for INSi's mutual-TLS mode. Parallel
    runs give each of their LGCs its own pair (`workstation`), as each of a practice's computers has its own:
    the bench tells the runs apart by them."""
    from simulators.core.pki import BenchPki

    pki = BenchPki.open(config.pki_dir)
    out = config.pki_dir / "clients"
    found = {}
    for kind, base in REFERENCE_CERTS.items():
        name = f"{base}-{workstation}" if workstation else base
        crt, key = out / f"{name}.crt", out / f"{name}.key"
        if not (crt.is_file() and key.is_file()) or pki.verdict(_load(crt)).problems:
            pki.issue_client(name, out, kind=kind)
        found[kind] = (crt, key)
    return found


def _load(path: Path):
    from simulators.core.pki import load_certificate

    return load_certificate(path.read_bytes())


def tls_settings(config: BenchConfig, workstation: str = "") -> dict:
    """The `[tls]` part of an LGC's settings on this bench: the bench CA, the practice's certificate, and INSi's."""
    if not config.tls:
        return {}
    certs = reference_certificates(config, workstation)
    return {"ca_file": str(config.pki_dir.resolve() / "ca-chain.pem"),
            "cert_file": str(certs["structure"][0].resolve()), "key_file": str(certs["structure"][1].resolve()),
            "services": {"insi": {"cert_file": str(certs["software"][0].resolve()),
                                  "key_file": str(certs["software"][1].resolve())}}}


def lgc_settings(config: BenchConfig, data_dir: Path) -> str:
    """The LGC's TOML settings: where every service is, as the bench publishes it (HTTPS when the bench serves
    TLS, with the bench CA and the reference LGC's client certificates)."""
    def url(name: str) -> str:
        if config.tls and name not in config.urls:
            return config.tls_url(name) + SERVICES[name].base_path
        return config.url(name) + SERVICES[name].base_path

    public_host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host  # browsers need a real one
    lines = [f'host = "{config.host}"', f"port = {config.lgc_port}", f'data_dir = "{data_dir}"',
             f'public_url = "http://{public_host}:{config.lgc_port}"', "",
             "[psc]", f'issuer = "{url("psc")}"', f'client_id = "{DEFAULT_CLIENT[0]}"',
             f'client_secret = "{DEFAULT_CLIENT[1]}"']
    tls = tls_settings(config)
    if tls:
        lines += ["", "[tls]", *(f'{k} = "{v}"' for k, v in tls.items() if k != "services")]
    for name in ("insi", "apcv", "dmp", "on", "annuaire", "mss"):
        lines += ["", f"[services.{name}]", f'url = "{url(name)}"']
        for key, value in tls.get("services", {}).get(name, {}).items():
            lines.append(f'tls.{key} = "{value}"')
    mss = config.settings.get("mss", {})
    lines += ["", "[services.mss.extra]", f'smtp_port = "{mss.get("smtp_port", 2587)}"',
              f'imap_port = "{mss.get("imap_port", 2143)}"']
    return "\n".join(lines) + "\n"


def register_client(config: BenchConfig) -> None:
    """The PSC simulator knows the LGC's redirect URI on port 8000; any other port is registered at run time."""
    if config.lgc_port == 8000:
        return
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    base = f"http://{host}:{config.lgc_port}"
    client = {"client_id": DEFAULT_CLIENT[0], "client_secret": DEFAULT_CLIENT[1], "name": "LGC de référence",
              "redirect_uris": [base + "/auth/callback"], "post_logout_redirect_uris": [base + "/"]}
    # The PSC simulator refuses to overwrite a registered client silently (409): this one deliberately repoints
    # the default client (registered for port 8000) to the LGC's port, hence "replace".
    resp = httpx.post(config.url("psc") + "/_bench/state", json={"clients": [client], "replace": True}, timeout=5,
                      headers=config.control_headers())
    resp.raise_for_status()


def write_settings(config: BenchConfig) -> Path:
    """The LGC's base lives next to the simulators' state; its settings file is rewritten at each start."""
    data_dir = config.data_dir.parent / "lgc"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = data_dir / "lgc.toml"
    settings.write_text(lgc_settings(config, data_dir), encoding="utf-8")
    return settings


def start_lgc(config: BenchConfig, log_dir: Path, *, timeout: float = 30.0,
              lifeline: Lifeline | None = None) -> LgcProcess:
    settings = write_settings(config)
    log_path = log_dir / "reference-lgc.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    cmd, env, fds = [sys.executable, "-m", "reference_lgc", "--config", str(settings)], None, ()
    if lifeline is not None:
        cmd, env, fds = lifeline.wrap(cmd)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                            pass_fds=fds)
    log.close()
    url = f"http://{config.host}:{config.lgc_port}"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"the reference LGC exited during start-up (code {proc.returncode}); last lines "
                                   f"of {log_path}:\n{tail}")
            try:
                if httpx.get(url + "/sante", timeout=1).status_code == 200:
                    return LgcProcess(url, proc, log_path, settings)
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the reference LGC did not answer within {timeout:g} s; see {log_path}")
    except BaseException:
        # Not handed to the supervisor yet (a timeout, or a signal during the wait): stopped here, not left running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise

