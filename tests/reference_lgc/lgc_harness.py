"""Run the bench's simulators and the reference LGC as a user runs them (child processes, loopback ports),
and drive the LGC's UI in Chromium. The LGC only learns the simulators' addresses from its TOML settings."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
# Where the simulators are started from (another checkout when developing the LGC against a stable bench).
SIMS_ROOT = Path(os.environ.get("SEGUR_BENCH_SIMS_ROOT") or ROOT)
SIMS = ("insi", "apcv", "dmp", "psc", "on", "mss", "annuaire")
PSC_REALM = "/auth/realms/esante-wallet"
BASE_PATHS = {"insi": "/lps", "apcv": "/apcv", "dmp": "/si-dmp-server/v2/services", "psc": PSC_REALM,
              "on": "/eprescription", "mss": "", "annuaire": "/fhir/v2"}
CLIENT_ID, CLIENT_SECRET = "segur-bench-lgc-tests", "tests-secret"
GP = "899700366240"  # KIT DOC0036624, flagship physician


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reusable_port() -> int:
    """A free port below the kernel's ephemeral range, for a server restarted on the same port several
    times (the reference LGC of a module): a port the kernel hands out may meanwhile become the source port
    of some client connection, and the restart then fails with "address already in use"."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.15)
    raise RuntimeError(f"{what} did not answer on {url}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Bench:
    urls: dict[str, str]  # service -> root URL (control API at <root>/_bench)
    proc: subprocess.Popen
    lgc_port: int
    mail_ports: dict[str, int]
    pki_dir: Path

    def control(self, service: str, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.urls[service]}/_bench{path}", json=body, timeout=10)
        assert resp.status_code < 400, resp.text
        return resp.json() if resp.content else None

    def fault(self, service: str, **rule: Any) -> None:
        """Add one fault rule to a simulator (selector `service` filled in)."""
        self.control(service, "POST", "/faults", {"service": service, **rule})

    def clear(self) -> None:
        for s in self.urls:
            self.control(s, "DELETE", "/faults")

    def reset(self) -> None:
        """The simulators' state as at start (journals kept): a module's fresh LGC must not meet the DMP
        authorisations or messages another module's LGC left (the consent test expected a TD0.3 that an earlier
        module had already made unnecessary)."""
        for s in self.urls:
            self.control(s, "POST", "/reset", {"keep": ["journal"]})

    def journal(self, service: str, operation: str | None = None) -> list[dict]:
        q = f"?operation={operation}" if operation else ""
        return self.control(service, "GET", "/journal" + q)["entries"]

    def present_apcv(self, patient: str) -> dict:
        return self.control("apcv", "POST", "/state", {"present": patient})["state"]["presented"]


def start_bench(tmp: Path) -> Bench:
    ports = {s: free_port() for s in SIMS}
    lgc_port = reusable_port()
    mail = {"smtp": free_port(), "imap": free_port()}
    issuer = f"http://127.0.0.1:{ports['psc']}{PSC_REALM}"
    redirect = f"http://127.0.0.1:{lgc_port}/auth/callback"
    cfg = tmp / "segur-bench.toml"
    clients = json.dumps([{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [redirect],
                           "post_logout_redirect_uris": [f"http://127.0.0.1:{lgc_port}/"]}])
    cfg.write_text(
        # plain HTTP: these tests judge the LGC's behaviour (HTTPS runs are the scenario suites'); no front door
        f'data_dir = "{tmp / "sims"}"\nworkers = 1\ntls = false\nfront_port = 0\n[ports]\n'
        + "".join(f"{s} = {p}\n" for s, p in ports.items())
        + f"[settings.psc]\nclients = {_toml_array(clients)}\n"
        + f'[settings.mss]\nsmtp_port = {mail["smtp"]}\nimap_port = {mail["imap"]}\npsc_issuer = "{issuer}"\n'
        + f'psc_jwks_url = "{issuer}/protocol/openid-connect/certs"\n')
    log = open(tmp / "bench.log", "w")  # noqa: SIM115 - kept open for the child's life
    proc = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(cfg), "up", "--only",
                             ",".join(SIMS)], cwd=SIMS_ROOT, stdout=log, stderr=subprocess.STDOUT)
    urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    try:
        for s, url in urls.items():
            wait_http(f"{url}/_bench/health", proc, f"simulator {s}")
    except RuntimeError:
        stop(proc)
        raise RuntimeError((tmp / "bench.log").read_text()[-3000:]) from None
    return Bench(urls=urls, proc=proc, lgc_port=lgc_port, mail_ports=mail, pki_dir=tmp / "sims" / "pki")


def _toml_array(js: str) -> str:
    """JSON objects as TOML inline tables (the clients list of the PSC simulator)."""
    items = []
    for obj in json.loads(js):
        parts = []
        for k, v in obj.items():
            parts.append(f"{k} = {json.dumps(v)}")
        items.append("{ " + ", ".join(parts) + " }")
    return "[" + ", ".join(items) + "]"


@dataclass
class Lgc:
    url: str
    proc: subprocess.Popen
    data_dir: Path
    config: Path
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def restart(self) -> None:
        stop(self.proc)
        self.proc = _spawn_lgc(self.config, self.log)
        wait_http(self.url + "/sante", self.proc, "reference LGC")


def lgc_config(bench: Bench, data_dir: Path, *, timeouts: dict[str, float] | None = None,
               retries: int = 0, defer_s: float = 2.0) -> str:
    timeouts = timeouts or {}
    lines = [f'port = {bench.lgc_port}', f'data_dir = "{data_dir}"', f"dmp_defer_seconds = {defer_s}",
             'service_status_url = "https://esante.gouv.fr/"',
             "[psc]", f'issuer = "{bench.urls["psc"]}{PSC_REALM}"', f'client_id = "{CLIENT_ID}"',
             f'client_secret = "{CLIENT_SECRET}"',
             # MSSanté's STARTTLS presents a certificate of the bench PKI (in the simulators' data directory)
             "[tls]", f'ca_file = "{bench.pki_dir / "ca-chain.pem"}"']
    for s in ("insi", "apcv", "dmp", "on", "mss", "annuaire"):
        lines += [f"[services.{s}]", f'url = "{bench.urls[s]}{BASE_PATHS[s]}"',
                  f"timeout = {timeouts.get(s, 10)}", f"retries = {retries}"]
    lines += ["[services.mss.extra]", f'smtp_port = "{bench.mail_ports["smtp"]}"',
              f'imap_port = "{bench.mail_ports["imap"]}"']
    return "\n".join(lines) + "\n"


def _spawn_lgc(config: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "reference_lgc", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)


def start_lgc(bench: Bench, tmp: Path, **kwargs: Any) -> Lgc:
    data_dir = tmp / "lgc"
    config = tmp / "lgc.toml"
    config.write_text(lgc_config(bench, data_dir, **kwargs))
    log = tmp / "lgc.log"
    proc = _spawn_lgc(config, log)
    url = f"http://127.0.0.1:{bench.lgc_port}"
    try:
        wait_http(url + "/sante", proc, "reference LGC")
    except RuntimeError:
        stop(proc)
        raise RuntimeError(log.read_text()[-3000:]) from None
    return Lgc(url=url, proc=proc, data_dir=data_dir, config=config, log=log)


def login(page: Any, lgc_url: str, *, national_id: str = GP, first_time: bool = True) -> None:
    """Log in through the PSC simulator's page; on the first login, link the demo local account and
    acknowledge the information message."""
    page.goto(lgc_url + "/patients")
    page.click("#connexion-psc")
    page.check(f"input[name=national_id][value='{national_id}']")
    page.click("button[name=decision][value=approve]")
    if first_time:
        page.wait_for_url("**/premiere-connexion")
        page.click("#associer button[type=submit]")
        page.wait_for_url("**/information**")
        page.check("#compris")
        page.click("#message-information button[type=submit]")
    page.wait_for_url("**/patients**")
