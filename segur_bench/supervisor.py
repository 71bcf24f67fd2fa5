"""Starts simulators as child processes, waits until they answer, stops them cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from simulators.registry import ServiceInfo

from .config import BenchConfig
from .lgc import LgcProcess, register_client, start_lgc


class StartError(RuntimeError):
    pass


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    service: ServiceInfo
    url: str
    process: subprocess.Popen
    log_path: Path


class Supervisor:
    def __init__(self, config: BenchConfig, services: list[ServiceInfo], *, log_dir: Path | None = None,
                 with_lgc: bool = False) -> None:
        self.config = config
        self.services = services
        self.log_dir = log_dir or config.data_dir.parent / "logs"
        self.children: list[Child] = []
        self.with_lgc = with_lgc
        self.lgc: LgcProcess | None = None

    def start(self, *, timeout: float = 30.0, progress=print) -> list[Child]:
        for svc in self.services:
            port = self.config.ports[svc.name]
            if not port_free(self.config.host, port):
                raise StartError(
                    f"port {port} ({svc.name}) is already in use on {self.config.host}; stop the other process "
                    f"or choose another port in segur-bench.toml ([ports] {svc.name} = …)"
                )
        if self.with_lgc and not port_free(self.config.host, self.config.lgc_port):
            raise StartError(f"port {self.config.lgc_port} (reference LGC) is already in use on {self.config.host}; "
                             "stop the other process or set lgc_port in segur-bench.toml")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for svc in self.services:
            port = self.config.ports[svc.name]
            log_path = self.log_dir / f"{svc.name}.log"
            cmd = [sys.executable, "-m", "segur_bench"]
            if self.config.path:
                cmd += ["--config", str(self.config.path)]  # the child reads the same per-service settings
            cmd += ["sim", svc.name, "--host", self.config.host,
                   "--port", str(port), "--data-dir", str(self.config.data_dir),
                   "--workers", str(self.config.workers)]
            if self.config.incidents_dir:
                cmd += ["--incidents-dir", str(self.config.incidents_dir)]
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            self.children.append(Child(svc, f"http://{self.config.host}:{port}", proc, log_path))
            progress(f"starting {svc.name} on port {port} …")
        deadline = time.monotonic() + timeout
        pending = list(self.children)
        while pending:
            for child in list(pending):
                if child.process.poll() is not None:
                    tail = _tail(child.log_path)
                    self.stop()
                    raise StartError(f"{child.service.name} exited during start-up (code {child.process.returncode})"
                                     f"; last lines of {child.log_path}:\n{tail}")
                try:
                    if httpx.get(child.url + "/_bench/health", timeout=1.0).status_code == 200:
                        pending.remove(child)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.service.name for c in pending)
                self.stop()
                raise StartError(f"{names} did not answer within {timeout:g} s; see the logs in {self.log_dir}")
            if pending:
                time.sleep(0.1)
        if self.with_lgc:
            progress(f"starting the reference LGC on port {self.config.lgc_port} …")
            try:
                if any(s.name == "psc" for s in self.services):
                    register_client(self.config)
                self.lgc = start_lgc(self.config, self.log_dir, timeout=timeout)
            except (RuntimeError, httpx.HTTPError) as exc:
                self.stop()
                raise StartError(str(exc)) from None
        return self.children

    def dead(self) -> list[str]:
        names = [c.service.name for c in self.children if c.process.poll() is not None]
        if self.lgc is not None and self.lgc.process.poll() is not None:
            names.append("reference LGC")
        return names

    def stop(self, grace: float = 8.0) -> None:
        procs = [c.process for c in self.children] + ([self.lgc.process] if self.lgc else [])
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.children = []
        self.lgc = None

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
