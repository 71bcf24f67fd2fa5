"""The network layer, seen from the bench: mitmproxy's own virtual environment and one `mitmdump` subprocess.

mitmproxy's pins conflict with authlib/cryptography, so it never enters the bench's venv: `ensure_venv()`
builds `.venv-mitm` (once; a stamp makes later calls instant) and `NetworkLayer` runs `mitmdump` from it as
a reverse proxy in front of each simulator, with `addon.py` applying the network conditions and writing a
HAR. Conditions live in a JSON file the addon re-reads when it changes: `set_condition()` takes effect on
the next request, without a restart.

    layer = NetworkLayer({"insi": "http://127.0.0.1:8101"}, har_path=Path("out/net.har"),
                         control_dir=Path(".segur-bench/net"))
    layer.start()
    layer.urls()                     # {"insi": "http://127.0.0.1:<port>"}: what the LGC must use
    layer.set_condition(3000)        # the REM's throttled interface: +3 s on every HTTP request
    layer.stop()                     # the HAR is complete once stop() returns
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from segur_bench.lifeline import dies_with_this_process

MITMPROXY_REQUIREMENT = "mitmproxy>=11.0.2,<12"
DEFAULT_VENV = Path(".venv-mitm")
STAMP_NAME = ".segur-bench-mitm"
ADDON = Path(__file__).with_name("addon.py")
HTTP_SCHEMES = ("http", "https")
TCP_SCHEMES = ("tcp",)
TLS_SCHEMES = ("tls",)  # TLS passthrough of an HTTPS service: latency per request turn, TLS kept end to end


class NetworkLayerError(RuntimeError):
    pass


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def ensure_venv(path: Path = DEFAULT_VENV, *, requirement: str = MITMPROXY_REQUIREMENT,
                python: str | None = None) -> Path:
    """mitmproxy's own virtual environment: created and installed when missing; returns `mitmdump`'s path.

    Idempotent and instant once done (a stamp file records the requirement installed). `SEGUR_BENCH_MITMDUMP`
    names an existing mitmdump to use instead. Several processes may call it at once (a lock file).
    """
    override = os.environ.get("SEGUR_BENCH_MITMDUMP")
    if override:
        if not Path(override).is_file():
            raise NetworkLayerError(f"SEGUR_BENCH_MITMDUMP={override}: no such file")
        return Path(override)
    path = Path(path)
    mitmdump, stamp = _bin(path, "mitmdump"), path / STAMP_NAME

    def ready() -> bool:
        return mitmdump.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == requirement

    if ready():
        return mitmdump
    path.mkdir(parents=True, exist_ok=True)  # `python -m venv` fills an existing empty directory
    with open(path / ".segur-bench-mitm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing it right now
        if ready():
            return mitmdump
        steps = []
        if not _bin(path, "python").is_file():
            steps.append([python or sys.executable, "-m", "venv", str(path)])
        pip = [str(_bin(path, "python")), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
        steps.append([*pip, requirement])
        for cmd in steps:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise NetworkLayerError(f"could not prepare mitmproxy's virtual environment {path}: {exc}") from None
            if done.returncode != 0:
                raise NetworkLayerError(
                    f"could not prepare mitmproxy's virtual environment {path}: `{' '.join(cmd)}` exited with "
                    f"{done.returncode} (is PyPI reachable? `python3-venv` installed?). Retry by hand with:\n"
                    f"  python3 -m venv {path} && {_bin(path, 'pip')} install '{requirement}'\n"
                    f"Last lines:\n{_tail(done.stdout + done.stderr)}")
        if not mitmdump.is_file():
            raise NetworkLayerError(f"{requirement} installed in {path} but {mitmdump} is missing")
        stamp.write_text(requirement + "\n", encoding="utf-8")
    return mitmdump


def _stop_at_exit(ref: weakref.ref) -> None:
    layer = ref()
    if layer is not None:
        layer.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bench_targets(config: Any, services: Iterable[str] | None = None, *, tcp: bool = True,
                  service_hosts: bool = False) -> dict[str, str]:
    """Targets for a `segur_bench.config.BenchConfig`: each simulator's direct address (never `config.urls`,
    which is where the proxy will be); its TLS port as a TLS-passthrough target `<name>-tls` when the bench serves
    TLS; MSSanté's mail ports as raw TCP targets `mss-smtp`, `mss-imap`, `mss-smtps`, `mss-imaps`.
    `service_hosts`: each simulator is reached under its service name (docker compose)."""
    from simulators.registry import SERVICES  # the bench's venv only: addon.py never imports this module

    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    if ":" in host:
        host = f"[{host}]"
    targets = {}
    for name in services or SERVICES:
        where = name if service_hosts else host
        targets[name] = f"http://{where}:{config.ports[name]}"
        if getattr(config, "tls", False):
            targets[f"{name}-tls"] = f"tls://{where}:{config.tls_ports[name]}"
        if tcp:
            settings = config.settings.get(name, {})
            for label, port in SERVICES[name].extra_ports:
                targets[f"{name}-{label}"] = f"tcp://{where}:{settings.get(f'{label}_port', port)}"
    return targets


LAYER_PORT_OFFSET = 1000  # the layer listens on each simulator's port + 1000 (INSi 8101 → 9101, 8401 → 9401)


def bench_ports(targets: Iterable[str], config: Any) -> dict[str, int]:
    """Fixed listen ports for `bench_targets` names (simulator port + 1000), so an LGC is configured once."""
    from simulators.registry import SERVICES

    ports = {}
    for name in targets:
        service, _, label = name.partition("-")
        if not label:
            port = config.ports[service]
        elif label == "tls":
            port = config.tls_ports[service]
        else:
            default = dict(SERVICES[service].extra_ports)[label]
            port = int(config.settings.get(service, {}).get(f"{label}_port", default))
        ports[name] = port + LAYER_PORT_OFFSET
    return ports


def edit_conditions(control_path: Path, *, latency_ms: int = 0, jitter_ms: int = 0,
                    services: Iterable[str] | None = None, down: Iterable[str] = ()) -> dict[str, Any]:
    """`NetworkLayer.set_condition` for a layer another process runs (its control file is all it reads): every
    service's latency (or the named services' only), the services that are down. Written atomically."""
    if latency_ms < 0 or jitter_ms < 0:
        raise ValueError("latency_ms and jitter_ms must be >= 0")
    try:
        data = json.loads(control_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NetworkLayerError(f"no network layer control file at {control_path} (is the layer running?)") from None
    known = {entry["name"] for entry in data.get("services", {}).values()}
    names = list(services) if services is not None else []
    unknown = (set(names) | set(down)) - known
    if unknown:
        raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    rule = {"latency_ms": latency_ms, "jitter_ms": jitter_ms}
    if services is None:
        data.update(default=rule, overrides={})
    else:
        data.setdefault("overrides", {}).update({name: dict(rule) for name in names})
    data["down"] = list(down)
    tmp = control_path.with_name(f".{control_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, control_path)
    return data


class NetworkLayer:
    """One `mitmdump` process: a reverse proxy per target, conditions changed live through `control_dir`.

    `targets` maps a name to `http://`/`https://` (HTTP services: latency per request) or `tcp://`/`tls://`
    (raw TCP such as SMTP/IMAP: latency per connection). `ports` fixes listen ports (others are free ports
    chosen at construction).
    """

    def __init__(self, targets: Mapping[str, str], *, listen_host: str = "127.0.0.1",
                 ports: Mapping[str, int] | None = None, har_path: Path, control_dir: Path,
                 mitmdump: Path | None = None, venv: Path = DEFAULT_VENV, flush_s: float = 2.0,
                 har_max_body: int = 1 << 20, extra_options: Iterable[str] = ()) -> None:
        if not targets:
            raise ValueError("NetworkLayer needs at least one target")
        self.targets: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        for name, url in targets.items():
            parts = urlsplit(url)
            schemes = HTTP_SCHEMES + TCP_SCHEMES + TLS_SCHEMES
            if parts.scheme not in schemes or not parts.hostname or not parts.port:
                raise ValueError(f"target {name}={url!r}: expected scheme://host:port with scheme in {schemes}")
            if parts.path not in ("", "/"):
                raise ValueError(f"target {name}={url!r}: no path (base paths stay in the URLs clients use)")
            self.targets[name] = f"{parts.scheme}://{parts.netloc}"
            self.kinds[name] = ("http" if parts.scheme in HTTP_SCHEMES else
                                "tls" if parts.scheme in TLS_SCHEMES else "tcp")
        unknown = set(ports or {}) - set(self.targets)
        if unknown:
            raise ValueError(f"ports given for unknown target(s) {sorted(unknown)}")
        self.listen_host = listen_host
        self.ports = {name: (ports or {}).get(name) or free_port(listen_host) for name in self.targets}
        if len(set(self.ports.values())) != len(self.ports):
            raise ValueError(f"two targets share a listen port: {self.ports}")
        self.har_path = Path(har_path)
        self.control_dir = Path(control_dir)
        self.control_path = self.control_dir / "conditions.json"
        self.log_path = self.control_dir / "mitmdump.log"
        self.ready_path = self.control_dir / "ready"
        self.mitmdump = mitmdump
        self.venv = venv
        self.flush_s = flush_s
        self.har_max_body = har_max_body
        self.extra_options = list(extra_options)
        self.process: subprocess.Popen | None = None
        self._condition: dict[str, Any] = {"default": {"latency_ms": 0, "jitter_ms": 0}, "overrides": {},
                                           "down": [], "down_action": "503", "seed": None}

    # -- addresses
    def urls(self) -> dict[str, str]:
        """Where clients reach each HTTP service through the layer (no base path: add the service's own); TLS
        passthrough targets are `https://` URLs."""
        host = self._client_host()
        return {name: f"{'https' if kind == 'tls' else 'http'}://{host}:{self.ports[name]}"
                for name, kind in self.kinds.items() if kind in ("http", "tls")}

    def addresses(self) -> dict[str, tuple[str, int]]:
        """(host, port) of every listener, raw TCP ones included (e.g. `mss-smtp`)."""
        return {name: (self._client_host(), port) for name, port in self.ports.items()}

    def _client_host(self) -> str:
        host = "127.0.0.1" if self.listen_host in ("0.0.0.0", "::", "") else self.listen_host
        return f"[{host}]" if ":" in host else host

    # -- conditions
    def set_condition(self, latency_ms: int = 0, *, services: Iterable[str] | None = None, jitter_ms: int = 0,
                      down: Iterable[str] = (), down_action: str | None = None, seed: int | None = None) -> None:
        """Change the network conditions, live.

        - `services=None`: `latency_ms` ± `jitter_ms` (uniform) becomes every service's latency, and per-service
          overrides are dropped; otherwise it overrides the latency of the named services only.
        - `down`: the complete list of services that are down after this call (HTTP: 503 from the proxy, or a
          closed connection with `down_action="close"`; raw TCP: connection closed at once).
        - `seed`: makes the jitter reproducible.
        Effective for every request that arrives after this call returns.
        """
        if latency_ms < 0 or jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        rule = {"latency_ms": latency_ms, "jitter_ms": jitter_ms}
        if services is None:
            self._condition["default"] = rule
            self._condition["overrides"] = {}
        else:
            names = [services] if isinstance(services, str) else list(services)
            self._check_names(names)
            for name in names:
                self._condition["overrides"][name] = dict(rule)
        down = [down] if isinstance(down, str) else list(down)
        self._check_names(down)
        self._condition["down"] = down
        if down_action is not None:
            if down_action not in ("503", "close"):
                raise ValueError("down_action is '503' or 'close'")
            self._condition["down_action"] = down_action
        if seed is not None:
            self._condition["seed"] = seed
        self._write_control()

    def clear(self) -> None:
        """No latency, nothing down."""
        self._condition.update(default={"latency_ms": 0, "jitter_ms": 0}, overrides={}, down=[], down_action="503")
        self._write_control()

    def condition(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._condition))

    def label(self, name: str) -> str:
        """The service a target belongs to: `insi-tls` is INSi's TLS port, with INSi's conditions and HAR label."""
        if self.kinds[name] == "tls" and name.endswith("-tls"):
            return name[:-len("-tls")]
        return name

    def _check_names(self, names: Iterable[str]) -> None:
        unknown = set(names) - set(self.targets)
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {', '.join(self.targets)}")

    def _write_control(self) -> None:
        self.control_dir.mkdir(parents=True, exist_ok=True)
        data = {"version": 1,
                "services": {str(port): {"name": self.label(name), "kind": self.kinds[name]}
                             for name, port in self.ports.items()},
                **self._condition}
        if data["seed"] is None:
            data["seed"] = random.randrange(1 << 32)
        tmp = self.control_path.with_name(f".{self.control_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.control_path)  # atomic: the addon never reads half a file

    # -- process
    def command(self) -> list[str]:
        mitmdump = self.mitmdump or ensure_venv(self.venv)
        self.mitmdump = mitmdump
        confdir = self.control_dir / "mitmproxy"
        cmd = [str(mitmdump), "-s", str(ADDON)]
        for name, target in self.targets.items():
            if self.kinds[name] == "tls":  # relayed as raw TCP; the addon never lets mitmproxy terminate it
                target = "tcp://" + target.split("://", 1)[1]
            cmd += ["--mode", f"reverse:{target}@{self.ports[name]}"]
        options = {
            "listen_host": self.listen_host,
            "keep_host_header": "true",  # the simulator sees the Host the client used (its public URL)
            "connection_strategy": "eager",  # raw TCP: server-first protocols (SMTP, IMAP greetings) need it
            "ssl_insecure": "true",  # https/tls targets: the simulators' certificates are self-signed
            "http3": "false",
            "confdir": str(confdir),  # mitmproxy's CA lives here, not in ~/.mitmproxy
            "termlog_verbosity": "warn",
            "flow_detail": "0",
            "netlayer_control": str(self.control_path.resolve()),
            "netlayer_har": str(self.har_path.resolve()),
            "netlayer_flush_ms": str(round(self.flush_s * 1000)),
            "netlayer_ready": str(self.ready_path.resolve()),
            "netlayer_har_max_body": str(self.har_max_body),
        }
        for key, value in options.items():
            cmd += ["--set", f"{key}={value}"]
        for option in self.extra_options:
            cmd += ["--set", option]
        return cmd

    def start(self, *, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        cmd = self.command()  # may build the venv first (minutes, once)
        self.control_dir.mkdir(parents=True, exist_ok=True)
        self.har_path.parent.mkdir(parents=True, exist_ok=True)
        self._write_control()
        self.ready_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=dies_with_this_process())  # no orphan proxy holding the ports
        atexit.register(_stop_at_exit, weakref.ref(self))
        waiting: dict[str, int | None] = {**self.ports, "the addon": None}
        deadline = time.monotonic() + timeout
        while waiting:
            if self.process.poll() is not None:
                tail = _tail(self.log_path.read_text(errors="replace"))
                raise NetworkLayerError(f"mitmdump exited during start-up (code {self.process.returncode}); last "
                                        f"lines of {self.log_path}:\n{tail}")
            for name, port in list(waiting.items()):
                if port is None:
                    if self._ready():
                        del waiting[name]
                    continue
                if self.kinds[name] != "http" and not self._listening(port):
                    continue  # a probe connection would start a raw TCP session upstream: look, don't touch
                if self.kinds[name] != "http" or self._answers(port):
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                self.stop()
                raise NetworkLayerError(f"mitmdump did not listen on {sorted(waiting)} within {timeout:g} s; see "
                                        f"{self.log_path}")
            if waiting:
                time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            return self.process is not None and int(self.ready_path.read_text()) == self.process.pid
        except (OSError, ValueError):
            return False

    def _answers(self, port: int) -> bool:
        try:
            with socket.create_connection((self._client_host().strip("[]"), port), timeout=0.5):
                return True
        except OSError:
            return False

    def _listening(self, port: int) -> bool:
        """A LISTEN socket on the port, read from /proc (Linux) without connecting; elsewhere, connect."""
        tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
        if not tables[0].exists():
            return self._answers(port)
        hex_port = f"{port:04X}"
        for table in tables:
            with contextlib.suppress(OSError):
                for line in table.read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[1].rsplit(":", 1)[1] == hex_port and fields[3] == "0A":  # 0A = LISTEN
                        return True
        return False

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop mitmdump gracefully (SIGTERM: its `done` hook writes the final HAR), killing it if it hangs."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> NetworkLayer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
