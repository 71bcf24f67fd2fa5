"""A fresh reference LGC per scenario run (own base, own port), pointed where the run says; its redirect URI is
registered with the PSC simulator through the control API."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from segur_bench.lifeline import dies_with_this_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LgcProcess:
    def __init__(self, settings: dict[str, Any], data_dir: Path, psc_control: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = f"segur-bench-lgc-{self.port}"
        headers = {"Authorization": f"Bearer {token}"} if token else None
        # This run's LGC owns the client of its port: "replace" takes over one left by an earlier run on the same
        # port (the PSC simulator refuses to overwrite a registered client unless asked, 409).
        httpx.post(psc_control + "/_bench/state", timeout=10, headers=headers, json={"clients": [{
            "client_id": self.client_id, "client_secret": "scenario-secret", "name": "LGC de référence",
            "redirect_uris": [self.url + "/auth/callback"], "post_logout_redirect_uris": [self.url + "/"]}],
            "replace": True}).raise_for_status()
        data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"port = {self.port}", f'data_dir = "{data_dir}"',
                 f"dmp_defer_seconds = {settings.get('dmp_defer_seconds', 3)}",
                 "[psc]", f'issuer = "{settings["psc_issuer"]}"', f'client_id = "{self.client_id}"',
                 'client_secret = "scenario-secret"']
        tls = settings.get("tls") or {}
        if tls:  # HTTPS: the bench CA and the LGC's client certificates
            lines += ["[tls]", *(f'{k} = "{v}"' for k, v in tls.items() if k != "services")]
        for name, spec in settings["services"].items():
            lines += [f"[services.{name}]", f'url = "{spec["url"]}"', f"timeout = {spec.get('timeout', 15)}",
                      f"retries = {spec.get('retries', 0)}"]
            lines += [f'tls.{k} = "{v}"' for k, v in tls.get("services", {}).get(name, {}).items()]
            if spec.get("extra"):
                lines.append(f"[services.{name}.extra]")
                lines += [f'{k} = "{v}"' for k, v in spec["extra"].items()]
        self.config = data_dir / "lgc.toml"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log = data_dir / "lgc.log"
        # It dies with this scenario process, even a killed one (a CI job's timeout): no LGC left holding its port.
        self.proc = subprocess.Popen([sys.executable, "-m", "reference_lgc", "--config", str(self.config)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                     preexec_fn=dies_with_this_process())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"reference LGC exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + "/sante", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("reference LGC did not start")

    def version(self) -> str:
        try:
            return httpx.get(self.url + "/sante", timeout=5).json().get("version", "")
        except httpx.HTTPError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
