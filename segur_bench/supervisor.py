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
from .endpoints import front_door_routes, routes_path
from .front_door import FrontDoor, write_routes
from .lgc import LgcProcess, register_client, start_lgc
from .lifeline import Lifeline
from .netnames import control_token, service_names


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
    tls_url: str | None = None


class Supervisor:
    def __init__(self, config: BenchConfig, services: list[ServiceInfo], *, log_dir: Path | None = None,
                 with_lgc: bool = False) -> None:
        self.config = config
        self.services = services
        self.log_dir = log_dir or config.data_dir.parent / "logs"
        self.children: list[Child] = []
        self.with_lgc = with_lgc
        self.lgc: LgcProcess | None = None
        self.front_door: FrontDoor | None = None
        self.console: subprocess.Popen | None = None  # the trainers' console (start_console)
        self.console_url: str | None = None
        # Every child is started through the lifeline launcher: it dies with this process, even a SIGKILLed one.
        self.lifeline = Lifeline()

    def start(self, *, timeout: float = 30.0, progress=print) -> list[Child]:
        for svc in self.services:
            port = self.config.ports[svc.name]
            if not port_free(self.config.host, port):
                raise StartError(
                    f"port {port} ({svc.name}) is already in use on {self.config.host}; stop the other process "
                    f"or choose another port in segur-bench.toml ([ports] {svc.name} = …)"
                )
            tls_port = self.config.tls_ports[svc.name]
            if self.config.tls and not port_free(self.config.host, tls_port):
                raise StartError(
                    f"TLS port {tls_port} ({svc.name}) is already in use on {self.config.host}; stop the other "
                    f"process or choose another port in segur-bench.toml ([tls_ports] {svc.name} = …)"
                )
        if self.with_lgc and not port_free(self.config.host, self.config.lgc_port):
            raise StartError(f"port {self.config.lgc_port} (reference LGC) is already in use on {self.config.host}; "
                             "stop the other process or set lgc_port in segur-bench.toml")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.config.tls and self.services:
            self._prepare_pki(progress)
        if self.config.lan and self.services:
            control_token(self.config.data_dir, create=True)
        for svc in self.services:
            port = self.config.ports[svc.name]
            log_path = self.log_dir / f"{svc.name}.log"
            cmd = [sys.executable, "-m", "segur_bench"]
            if self.config.path:
                cmd += ["--config", str(self.config.path)]  # the child reads the same per-service settings
            cmd += ["sim", svc.name, "--host", self.config.host,
                   "--port", str(port), "--data-dir", str(self.config.data_dir),
                   "--workers", str(self.config.workers)]
            cmd += (["--tls-port", str(self.config.tls_ports[svc.name]), "--pki-dir", str(self.config.pki_dir)]
                    if self.config.tls else ["--no-tls"])
            if self.config.incidents_dir:
                cmd += ["--incidents-dir", str(self.config.incidents_dir)]
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
            cmd, env, fds = self.lifeline.wrap(cmd)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                    pass_fds=fds)
            log.close()
            self.children.append(Child(svc, self.config.url(svc.name), proc, log_path,
                                       self.config.tls_url(svc.name) if self.config.tls else None))
            progress(f"starting {svc.name} on port {port} …")
        deadline = time.monotonic() + timeout
        pending = list(self.children)
        while pending:
            for child in list(pending):
                if child.process.poll() is not None:
                    tail = log_tail(child.log_path)
                    self.stop()
                    raise StartError(f"{child.service.name} exited during start-up (code {child.process.returncode})"
                                     f"; last lines of {child.log_path}:\n{tail}")
                try:
                    # the HTTP port answers once start-up is complete, the TLS listener included
                    if httpx.get(f"http://{self.config.client_host}:{self.config.ports[child.service.name]}"
                                 "/_bench/health", timeout=1.0).status_code == 200:
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
                self.lgc = start_lgc(self.config, self.log_dir, timeout=timeout, lifeline=self.lifeline)
            except (RuntimeError, httpx.HTTPError) as exc:
                self.stop()
                raise StartError(str(exc)) from None
        return self.children

    def _prepare_pki(self, progress) -> None:
        """The bench PKI and every simulator's server certificate, before the simulators start (one process makes
        them, instead of seven racing for the lock)."""
        from simulators.core.pki import BenchPki

        if not BenchPki(self.config.pki_dir).exists():
            progress(f"creating the bench PKI in {self.config.pki_dir} (once) …")
        try:
            pki = BenchPki.open(self.config.pki_dir)
            for svc in self.services:
                pki.server_material(svc.name, service_names(self.config, svc.name))
        except OSError as exc:
            raise StartError(f"could not prepare the bench PKI in {self.config.pki_dir}: {exc}") from None

    def start_front_door(self, port: int) -> int:
        """The HTTPS front door on `port` (routes by SNI to the simulators' TLS ports); returns the port it got.
        Raises PermissionError for a privileged port the process may not bind (443 without root)."""
        names, targets = front_door_routes(self.config, self.services)
        path = routes_path(self.config)
        write_routes(path, names, targets)
        door = FrontDoor(self.config.host, port, path)
        door.bind()
        self.front_door = door.start()
        return door.port

    def start_console(self, port: int, *, timeout: float = 30.0) -> str:
        """The trainers' console (console/) as a child process on `port`, over the simulators started here;
        returns its URL. It stops with the bench (stop())."""
        host = self.config.host
        if not port_free(host, port):
            raise StartError(f"port {port} (console) is already in use on {host}; stop the other process or choose "
                             "another with --console-port (console_port in segur-bench.toml)")
        cmd = [sys.executable, "-m", "segur_bench"]
        if self.config.path:
            cmd += ["--config", str(self.config.path)]
        cmd += ["console", "--host", host, "--port", str(port), "--data-dir", str(self.config.data_dir),
                "--only", ",".join(s.name for s in self.services)]
        log_path = self.log_dir / "console.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        cmd, env, fds = self.lifeline.wrap(cmd)
        self.console = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                        pass_fds=fds)
        log.close()
        url = f"http://{self.config.client_host}:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.poll() is not None:
                code, self.console = self.console.returncode, None
                raise StartError(f"the console exited during start-up (code {code}); last lines of {log_path}:\n"
                                 f"{log_tail(log_path)}")
            try:
                if httpx.get(url + "/sante", timeout=1).status_code == 200:
                    self.console_url = url
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.console.pid, signal.SIGKILL)
        self.console.wait()
        self.console = None
        raise StartError(f"the console did not answer within {timeout:g} s; see {log_path}")

    def pids(self) -> list[int]:
        """Every child's launcher pid (each leads its child's process group)."""
        procs = [c.process for c in self.children] + ([self.lgc.process] if self.lgc else [])
        return [p.pid for p in procs + ([self.console] if self.console is not None else [])]

    def dead(self) -> list[str]:
        names = [c.service.name for c in self.children if c.process.poll() is not None]
        if self.lgc is not None and self.lgc.process.poll() is not None:
            names.append("reference LGC")
        if self.console is not None and self.console.poll() is not None:
            names.append("console")
        return names

    def stop(self, grace: float = 8.0) -> None:
        if self.front_door is not None:
            self.front_door.stop()
            self.front_door = None
        procs = [c.process for c in self.children] + ([self.lgc.process] if self.lgc else [])
        procs += [self.console] if self.console is not None else []
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
        self.console = None
        # Anything still holding the old pipe's read end learns that this bench is over; a restart gets a new one.
        self.lifeline.close()
        self.lifeline = Lifeline()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a child's log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
