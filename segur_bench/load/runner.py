"""`segur-bench load`: Locust in child processes (never in the CLI's: gevent patches the whole interpreter),
incidents applied mid-test through the bench's control API, progress from Locust's CSV, a summary at the end."""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from segur_bench.config import BenchConfig
from simulators import registry
from simulators.core.incidents import IncidentCatalog, IncidentError

from ..incident_control import apply_incident, clear_incident
from ..lifeline import dies_with_this_process
from ..supervisor import log_tail
from . import PROFILES
from .plugin import TargetError, load_target_class
from .simulators_target import NEEDED

Echo = Callable[[str], None]
CSV_PREFIX = "stats"  # <out>/stats_stats.csv, stats_failures.csv, stats_exceptions.csv, stats_stats_history.csv
MASTER_LOG = "locust.log"
PROGRESS_EVERY_S = 5.0
STOP_GRACE_S = 30
WORKERS_MAX_WAIT_S = 60  # the master gives up when the expected workers have not all connected by then


class LoadError(RuntimeError):
    """The load test cannot be run (no bench, bad incident spec, Locust did not start…): one line for the user."""


@dataclass(frozen=True)
class IncidentAt:
    name: str
    at_s: float


@dataclass
class LoadOptions:
    profile: str = "cabinet"
    users: int = 10
    spawn_rate: float = 1.0
    duration_s: float = 60.0
    out: Path = Path("out/load")
    incidents: list[IncidentAt] = field(default_factory=list)
    workers: int = 0  # local worker processes (0: one standalone Locust process)
    expect_workers: int | None = None  # workers the master waits for (local + remote); default: `workers`
    master_bind: str = "127.0.0.1"
    master_port: int = 0  # 0: a free port when every worker is local, else Locust's 5557
    target: str | None = None  # module:Class
    pace: float = 1.0
    call_timeout: float = 10.0


@dataclass(frozen=True)
class OperationStats:
    type: str
    name: str
    requests: int
    failures: int
    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    rps: float


@dataclass
class LoadResult:
    out: Path
    operations: list[OperationStats]
    total: OperationStats | None
    workers_reported: int | None  # what the master's log says (distributed mode)
    incidents: list[tuple[str, float]]  # (name, seconds after the load started) actually applied

    @property
    def failures(self) -> int:
        return self.total.failures if self.total else 0

    def by_name(self) -> dict[str, OperationStats]:
        return {op.name: op for op in self.operations}


# ------------------------------------------------------------------------------------------- parsing


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '5m', '1h30m' (Locust's run-time format)."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value)
        if not parts or not any(parts.groups()):
            raise LoadError(f"duration {text!r}: seconds, or e.g. 90s, 5m, 1h30m")
        h, m, s = (int(g or 0) for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise LoadError(f"duration {text!r}: must be positive")
    return seconds


def parse_incident(spec: str, catalog: IncidentCatalog, duration_s: float) -> IncidentAt:
    """NAME@SECONDS (or NAME@2m): an incident of the catalogue, applied that long after the load started."""
    name, sep, when = spec.partition("@")
    if not sep or not name.strip() or not when.strip():
        raise LoadError(f"--incident {spec!r}: NAME@SECONDS expected (e.g. dmp-lent@30)")
    try:
        catalog.get(name.strip())
    except IncidentError as exc:
        known = ", ".join(catalog.names())
        raise LoadError(f"--incident {spec!r}: {exc} (known: {known})") from None
    at = 0.0 if when.strip() in ("0", "0s") else parse_duration(when)
    if at >= duration_s:
        raise LoadError(f"--incident {spec!r}: at {at:g} s, not within the {duration_s:g}-s run")
    return IncidentAt(name.strip(), at)


# ------------------------------------------------------------------------------------------- the bench


def bench_status(config: BenchConfig, services: tuple[str, ...] = NEEDED) -> dict[str, bool]:
    """Which of the profile's services answer their health check."""
    answers = {}
    for name in services:
        try:
            answers[name] = httpx.get(f"{config.url(name)}/_bench/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            answers[name] = False
    return answers


def check_bench(config: BenchConfig, *, default_target: bool, incidents: bool, echo: Echo) -> None:
    status = bench_status(config)
    down = [name for name, ok in status.items() if not ok]
    if not down:
        return
    where = ", ".join(f"{name} {config.url(name)}" for name in down)
    if len(down) == len(status):
        message = (f"no bench answers ({where}): start one with `segur-bench up` (or `up --no-lgc`), or point "
                   "--config at the settings of the one you use")
        if default_target or incidents:
            raise LoadError(message)
        echo(f"warning: {message}; your target may not need it")
    elif default_target:
        raise LoadError(f"the cabinet profile needs INSi, DMP, ON, PSC and MSSanté; not answering: {where}")


def _bench_targets(config: BenchConfig) -> list[tuple[str, str]]:
    return [(svc.name, config.url(svc.name)) for svc in registry.available()]


# ------------------------------------------------------------------------------------------- Locust


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return s.getsockname()[1]


def locust_env(config: BenchConfig, opts: LoadOptions) -> dict[str, str]:
    """What every Locust process of this machine reads (cabinet.py's module docstring)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", SEGUR_BENCH_LOAD_PACE=str(opts.pace),
               SEGUR_BENCH_LOAD_TIMEOUT=str(opts.call_timeout))
    env.pop("SEGUR_BENCH_LOAD_TARGET", None)
    if opts.target:
        env["SEGUR_BENCH_LOAD_TARGET"] = opts.target
    if config.path:
        env["SEGUR_BENCH_CONFIG"] = str(config.path)
    # The vendor's target module is looked for where the command runs, as --driver is.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p)
    return env


def profile_path(profile: str) -> Path:
    if profile not in PROFILES:
        raise LoadError(f"unknown load profile {profile!r}; known: {', '.join(PROFILES)}")
    return PROFILES[profile]


def worker_command(profile: str, master_host: str, master_port: int) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(profile_path(profile)), "--worker",
            "--master-host", master_host, "--master-port", str(master_port)]


def check_target(spec: str | None) -> None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        load_target_class(spec)
    except TargetError as exc:
        raise LoadError(str(exc)) from None


def run_load(config: BenchConfig, opts: LoadOptions, echo: Echo = print) -> LoadResult:
    """Run the profile headless; returns the figures from Locust's CSV. Every child is stopped on return."""
    path = profile_path(opts.profile)
    check_target(opts.target)
    check_bench(config, default_target=opts.target is None, incidents=bool(opts.incidents), echo=echo)
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{CSV_PREFIX}_*.csv"):
        old.unlink()
    env = locust_env(config, opts)
    expect = opts.expect_workers if opts.expect_workers is not None else opts.workers
    distributed = expect > 0
    cmd = [sys.executable, "-m", "locust", "-f", str(path), "--headless", "--only-summary",
           "-u", str(opts.users), "-r", f"{opts.spawn_rate:g}", "-t", f"{round(opts.duration_s)}s",
           "--csv", str(out / CSV_PREFIX), "--html", str(out / "report.html"), "--exit-code-on-error", "0"]
    port = opts.master_port
    if distributed:
        if not port:
            port = _free_port(opts.master_bind) if expect == opts.workers else 5557
        cmd += ["--master", "--master-bind-host", opts.master_bind, "--master-bind-port", str(port),
                "--expect-workers", str(expect), "--expect-workers-max-wait", str(WORKERS_MAX_WAIT_S)]
    procs: list[subprocess.Popen] = []
    applied: list[tuple[str, float]] = []
    pending = sorted(opts.incidents, key=lambda i: i.at_s)
    log_path = out / MASTER_LOG
    try:
        procs.append(_spawn(cmd, log_path, env))
        master = procs[0]
        if distributed:
            connect = "127.0.0.1" if opts.master_bind in ("0.0.0.0", "") else opts.master_bind
            for n in range(opts.workers):
                procs.append(_spawn(worker_command(opts.profile, connect, port), out / f"locust-worker-{n + 1}.log",
                                    env))
            remote = expect - opts.workers
            echo(f"Locust master on {opts.master_bind}:{port}, {opts.workers} local worker(s)"
                 + (f", waiting for {remote} more: `segur-bench load {opts.profile} --worker --master-host "
                    f"<this machine> --master-port {port}` on each" if remote > 0 else ""))
        started = _wait_for_start(master, log_path, timeout=WORKERS_MAX_WAIT_S + 30)
        echo(f"load started: {opts.users} practitioner(s), {opts.spawn_rate:g}/s, for {opts.duration_s:g} s"
             f" — Locust log in {log_path}")
        next_progress = started + PROGRESS_EVERY_S
        # Locust stops at its run time; past this grace, it is asked to (SIGTERM: it still writes its report),
        # then given up on.
        deadline = started + opts.duration_s + STOP_GRACE_S
        asked = False
        while master.poll() is None:
            now = time.monotonic()
            while pending and now - started >= pending[0].at_s:
                inc = pending.pop(0)
                catalog = IncidentCatalog(config.incidents_dir)
                services = [o.service for o in apply_incident(config, catalog.get(inc.name), _bench_targets(config))
                            if o.ok]
                applied.append((inc.name, now - started))
                echo(f"  {now - started:5.0f} s  incident {inc.name} applied to {', '.join(services) or 'nothing'}")
            if now >= next_progress:
                line = _progress(out)
                if line:
                    echo(f"  {now - started:5.0f} s  {line}")
                next_progress += PROGRESS_EVERY_S
            if now > deadline and not asked:
                echo(f"warning: Locust still runs {STOP_GRACE_S} s after its run time; stopping it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(master.pid, signal.SIGTERM)
                asked = True
            elif now > deadline + STOP_GRACE_S:
                raise LoadError(f"Locust did not stop after {opts.duration_s:g} s; see {log_path}")
            time.sleep(0.2)
        if not (out / f"{CSV_PREFIX}_stats.csv").is_file():
            raise LoadError(f"Locust ended (code {master.returncode}) without its report; last lines of "
                            f"{log_path}:\n{log_tail(log_path)}")
    finally:
        for name, _ in applied:
            clear_incident(config, name, _bench_targets(config))
        _stop_all(procs)
    for name, _ in applied:
        echo(f"incident {name} cleared")
    return read_result(out, applied)


def run_worker(opts: LoadOptions, config: BenchConfig, master_host: str, master_port: int, echo: Echo = print) -> int:
    """This machine as one more worker of a master elsewhere; returns Locust's exit code."""
    check_target(opts.target)
    status = bench_status(config)
    if opts.target is None and not all(status.values()):
        down = ", ".join(f"{n} {config.url(n)}" for n, ok in status.items() if not ok)
        raise LoadError(f"from this machine the bench does not answer ({down}): give its address in "
                        "segur-bench.toml (host = \"<bench address>\", or [urls]) and --config")
    opts.out.mkdir(parents=True, exist_ok=True)
    log_path = opts.out / "locust-worker.log"
    proc = _spawn(worker_command(opts.profile, master_host, master_port), log_path, locust_env(config, opts))
    echo(f"Locust worker connected to {master_host}:{master_port} (log {log_path}); it stops with the master")
    try:
        return proc.wait()
    finally:
        _stop_all([proc])


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=dies_with_this_process())  # no Locust left behind a killed runner
    finally:
        log.close()


def _wait_for_start(master: subprocess.Popen, log_path: Path, timeout: float) -> float:
    """When users start spawning (distributed: once the expected workers are connected)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        if "Ramping to" in text or "Sending spawn jobs" in text:  # standalone / master
            return time.monotonic()
        if master.poll() is not None:
            raise LoadError(f"Locust exited before the load started (code {master.returncode}); last lines of "
                            f"{log_path}:\n{log_tail(log_path)}")
        time.sleep(0.1)
    raise LoadError(f"the load did not start within {timeout:g} s (workers missing?); see {log_path}")


def _stop_all(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """Master first (it tells its workers to quit), then whatever remains, by process group."""
    deadline = time.monotonic() + grace
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _progress(out: Path) -> str | None:
    """The last 'Aggregated' row of Locust's history CSV (written every second, flushed every 5)."""
    path = out / f"{CSV_PREFIX}_stats_history.csv"
    try:
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
    except OSError:
        return None
    rows = [r for r in rows if r.get("Name") == "Aggregated"]
    if not rows:
        return None
    r = rows[-1]
    return (f"{r['User Count']} users  {float(r['Requests/s']):6.1f} req/s  {r['Total Request Count']} requests  "
            f"{r['Total Failure Count']} failures  median {_num(r['Total Median Response Time']):.0f} ms")


# ------------------------------------------------------------------------------------------- results


def _num(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def read_result(out: Path, incidents: list[tuple[str, float]] | None = None) -> LoadResult:
    ops: list[OperationStats] = []
    total = None
    with (out / f"{CSV_PREFIX}_stats.csv").open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            op = OperationStats(type=r["Type"], name=r["Name"], requests=int(r["Request Count"]),
                                failures=int(r["Failure Count"]), median_ms=_num(r["50%"]), p95_ms=_num(r["95%"]),
                                min_ms=_num(r["Min Response Time"]), max_ms=_num(r["Max Response Time"]),
                                rps=_num(r["Requests/s"]))
            if r["Name"] == "Aggregated":
                total = op
            else:
                ops.append(op)
    log = (out / MASTER_LOG).read_text(errors="replace") if (out / MASTER_LOG).is_file() else ""
    found = re.findall(r"(\d+) workers connected|to (\d+) ready workers", log)
    workers = max((int(a or b) for a, b in found), default=None) if found else None
    return LoadResult(out, ops, total, workers, list(incidents or []))


def summary_table(result: LoadResult) -> str:
    rows = [("operation", "requests", "failures", "median ms", "p95 ms", "max ms", "req/s")]
    for op in [*result.operations, *([result.total] if result.total else [])]:
        rows.append((op.name, str(op.requests), str(op.failures), f"{op.median_ms:.0f}", f"{op.p95_ms:.0f}",
                     f"{op.max_ms:.0f}", f"{op.rps:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
