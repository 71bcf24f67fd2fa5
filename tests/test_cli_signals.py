"""Issue 22, "nothing outlives its bench": a full `segur-bench up` (every simulator, the reference LGC, the console,
the HTTPS front door) killed with SIGKILL, or stopped with SIGTERM or SIGINT, at any moment of its start-up or of
its steady state, leaves no process and no listening port behind.

Each bench has its own data directory and its own ports; several run side by side so the ~40 signal moments fit in
the suite's time budget. A bench is watched from outside:

- its process tree, captured while it runs (descendants of `up`, then of everything seen, orphans included), and
  every process that carries the bench's tag in its environment (inherited by all its descendants, worker
  processes included) or names its directory on its command line;
- every port its configuration gives out (HTTP and TLS of each simulator, MSSanté's SMTP/IMAP/SMTPS/IMAPS, the
  reference LGC, the console, the front door), by a connection attempt.

After the signal, `up` must end (SIGTERM/SIGINT: within EXIT_WITHIN_S), and within GONE_WITHIN_S of its end
nothing of the above may remain. Whatever happens, every process a bench started is killed before the test ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from simulators import registry

ROOT = Path(__file__).resolve().parents[1]
TAG_ENV = "SEGUR_BENCH_SIGNALS_TAG"  # inherited by everything a bench starts: how its processes are found
SEED_ENV = "SEGUR_BENCH_SIGNALS_SEED"  # replays the SIGKILL moments of a failed run
GONE_WITHIN_S = 5.0  # issue 22: no process, no listening port, 5 s after `up` ended
EXIT_WITHIN_S = 20.0  # SIGTERM/SIGINT: `up` stops its children (8 s grace at most) and ends
SCAN_EVERY_S = 0.25
STARTING_AT_ONCE = int(os.environ.get("SEGUR_BENCH_SIGNALS_AT_ONCE", 4))  # benches starting side by side (run_benches)
FRESH_PKI_BEFORE_S = 4  # the SIGTERM/SIGINT benches signalled before this make their PKI, as a first `up`
MAIL_PORTS = ("smtp", "imap", "smtps", "imaps")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches processes through /proc")

# Ports are drawn below the kernel's ephemeral range (32768-60999 by default): a client's source port (the
# health checks of ~8 supervisors, the LGC, the console) then never takes a port a bench is about to bind, and a
# connection attempt to a closed port can never connect to itself.
PORT_RANGE = (20000, 32000)
_given: set[int] = set()


def free_port() -> int:
    draw = random.SystemRandom()
    while True:
        port = draw.randrange(*PORT_RANGE)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return False
        except OSError:
            return True  # a timeout: something holds the port (a full backlog)
    return True


# ----------------------------------------------------------------------------------------- the host's processes


@dataclass
class World:
    """What runs on this machine, as far as this user can see: parent links and start times, and the bench tag of
    each process (read once per process: the tag is inherited at fork and kept across exec)."""

    parents: dict[int, int] = field(default_factory=dict)
    starts: dict[int, int] = field(default_factory=dict)  # pid -> start time (clock ticks): tells reused pids apart
    tags: dict[tuple[int, int], str | None] = field(default_factory=dict)  # (pid, start time) -> tag

    def scan(self) -> None:
        parents, starts, tags = {}, {}, {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == b"Z":
                continue  # dead, not reaped yet: gone
            parents[pid], starts[pid] = int(fields[1]), int(fields[19])
            key = (pid, starts[pid])
            tags[key] = self.tags[key] if key in self.tags else _tag_of(pid)
        self.parents, self.starts, self.tags = parents, starts, tags

    def tagged(self, tag: str) -> list[int]:
        return [pid for (pid, _), t in self.tags.items() if t == tag]

    def descendants(self, roots: set[int]) -> set[int]:
        found, frontier = set(), set(roots)
        children: dict[int, list[int]] = {}
        for pid, ppid in self.parents.items():
            children.setdefault(ppid, []).append(pid)
        while frontier:
            pid = frontier.pop()
            for child in children.get(pid, ()):
                if child not in found:
                    found.add(child)
                    frontier.add(child)
        return found


def _tag_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    marker = TAG_ENV.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(marker):
            return item[len(marker):].decode()
    return None


def mentioning(text: str) -> list[psutil.Process]:
    """Processes whose command line names `text` (the bench's directory: its config file, data dir, LGC dir)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(text in arg for arg in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return [p for p in found if p.pid != os.getpid()]


def _owners(ports: dict[str, int]) -> str:
    """Who listens on these ports (for a failure message)."""
    wanted = set(ports.values())
    found = []
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted:
                found.append(f"{conn.laddr.port} held by pid {conn.pid}")
    return f" [{', '.join(found)}]" if found else ""


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({proc.status()}): {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid} (gone)"


# ------------------------------------------------------------------------------------------------------ a bench

# Progress lines of `up`, in order: a SIGKILL moment is a random delay after one of them (every phase of the
# start-up is hit, however slow the machine is), or after the table (steady state).
PHASES = {"launch": None, "pki": "creating the bench PKI", "simulators": "starting insi ",
          "last simulator": "starting mss ", "lgc": "starting the reference LGC", "console": "starting the console",
          "steady": "Press Ctrl-C"}


class Bench:
    """One `segur-bench up` with everything on, its own directory and ports, and the signal it will get."""

    def __init__(self, root: Path, sig: signal.Signals, *, after_s: float, phase: str = "launch",
                 pki: Path | None = None, workers: int = 1) -> None:
        self.root, self.sig, self.after_s, self.phase, self.workers = root, sig, after_s, phase, workers
        root.mkdir(parents=True)
        self.made_pki = pki is not None
        if pki is not None:  # the PKI an earlier `up` made in this data directory
            shutil.copytree(pki, root / "data" / "pki")
        self.tag = uuid.uuid4().hex
        self.ports = {f"{name} http": free_port() for name in registry.SERVICES}
        self.ports |= {f"{name} tls": free_port() for name in registry.SERVICES}
        self.ports |= {f"mss {label}": free_port() for label in MAIL_PORTS}
        self.ports |= {"lgc": free_port(), "console": free_port(), "front door": free_port()}
        self.config = root / "segur-bench.toml"
        self.config.write_text(
            f'data_dir = "{root / "data"}"\nworkers = {workers}\nlgc_port = {self.ports["lgc"]}\n'
            f'console_port = {self.ports["console"]}\nfront_port = {self.ports["front door"]}\n'
            + "[ports]\n" + "".join(f"{n} = {self.ports[f'{n} http']}\n" for n in registry.SERVICES)
            + "[tls_ports]\n" + "".join(f"{n} = {self.ports[f'{n} tls']}\n" for n in registry.SERVICES)
            + "[settings.mss]\n" + "".join(f"{k}_port = {self.ports[f'mss {k}']}\n" for k in MAIL_PORTS))
        self.output = root / "up.out"
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, int] = {}  # pid -> start time
        self.events: dict[str, float] = {}  # phase -> seconds after launch
        self.started = self.signalled = self.ended = self.checked = 0.0
        self.signalled_in = ""  # the last phase `up` had reached when it got the signal
        self.failure: str | None = None
        self.clean_after: float | None = None  # seconds from the end of `up` to nothing left
        self.done = False
        self._read = 0

    def __str__(self) -> str:
        return (f"{self.sig.name} {self.after_s:.2f} s after {self.phase}"
                + (f" ({self.workers} workers)" if self.workers > 1 else "")
                + (" (PKI made before)" if self.made_pki else ""))

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{TAG_ENV: self.tag})
        with open(self.output, "wb") as out:
            # a session of its own: a Ctrl-C of pytest does not reach it, the clean-up can kill its group
            self.proc = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(self.config), "up",
                                          "--lgc", "--console"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.started = time.monotonic()
        self.events["launch"] = 0.0

    def _follow_output(self, now: float) -> None:
        with open(self.output, "rb") as f:
            f.seek(self._read)
            text = f.read().decode(errors="replace")
        complete = text[:text.rfind("\n") + 1]
        self._read += len(complete.encode())
        for line in complete.splitlines():
            for phase, marker in PHASES.items():
                if marker and marker in line and phase not in self.events:
                    self.events[phase] = now - self.started

    def step(self, world: World, now: float) -> None:
        assert self.proc is not None
        self._follow_output(now)
        # the tree: `up` (until it is reaped: then its pid may be another's), then everything seen, which keeps
        # its children when `up` dies; and whatever carries the tag (an orphan started in a gap between scans)
        roots = {pid for pid, start in self.seen.items() if world.starts.get(pid) == start}
        if self.proc.returncode is None:
            roots.add(self.proc.pid)
        for pid in world.descendants(roots) | set(world.tagged(self.tag)):
            if pid not in self.seen and pid in world.starts:
                self.seen[pid] = world.starts[pid]
        if not self.signalled:
            if self.phase in self.events and now - self.started >= self.events[self.phase] + self.after_s:
                self.signalled_in = max(self.events, key=self.events.__getitem__)
                # in steady state, every port checked afterwards is served (the check is not about unused ones)
                idle = [f"{what} {port}" for what, port in self.ports.items()
                        if self.signalled_in == "steady" and not listening(port)]
                self.proc.send_signal(self.sig)
                self.signalled = now
                if idle:
                    self.finish("ports not served in steady state: " + ", ".join(idle))
            elif self.proc.poll() is not None:
                self.finish(f"`up` ended (code {self.proc.returncode}) before its signal")
            elif "steady" in self.events and self.phase not in self.events:
                self.finish(f"`up` started without going through phase {self.phase!r}")
            return
        if not self.ended:
            if self.proc.poll() is not None:
                self.ended = now
            elif now - self.signalled > EXIT_WITHIN_S:
                self.finish(f"`up` did not end within {EXIT_WITHIN_S:g} s of its {self.sig.name}")
            return
        if now - self.checked < SCAN_EVERY_S:
            return
        self.checked = now
        leftovers = self.leftovers(world)
        if not leftovers:
            self.clean_after = now - self.ended
            self.finish(None)
        elif now - self.ended > GONE_WITHIN_S:
            self.finish(f"{GONE_WITHIN_S:g} s after `up` ended: " + "; ".join(leftovers) + _owners(self.ports))

    def _processes(self, world: World) -> dict[int, psutil.Process]:
        """Everything of this bench still running: seen in its tree, tagged, or naming its directory."""
        procs = {}
        for pid in {pid for pid, start in self.seen.items() if world.starts.get(pid) == start} | set(
                world.tagged(self.tag)):
            with contextlib.suppress(psutil.Error):
                procs[pid] = psutil.Process(pid)
        for proc in mentioning(f"{self.root}{os.sep}"):
            procs.setdefault(proc.pid, proc)
        return {pid: p for pid, p in procs.items() if alive(p)}

    def leftovers(self, world: World) -> list[str]:
        found = [describe(p) for p in self._processes(world).values()]
        found += [f"port {port} ({what}) listening" for what, port in self.ports.items() if listening(port)]
        return found

    def finish(self, failure: str | None) -> None:
        self.failure, self.done = failure, True
        self.kill()

    def kill(self) -> None:
        """Kill whatever is left of this bench: `up`, everything seen, tagged or naming its directory (and the
        groups the launchers lead)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        world = World()
        world.scan()
        for proc in self._processes(world).values():
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # nothing when it leads no group
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def report(self) -> str:
        timeline = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.events.items(), key=lambda kv: kv[1]))
        sent = f"sent at {self.signalled - self.started:.2f} s (in phase {self.signalled_in})" if self.signalled \
            else "never sent"
        ended = f", up ended {self.ended - self.signalled:.2f} s later" if self.ended else ""
        if self.clean_after is not None:
            ended += f", nothing left {self.clean_after:.2f} s after that"
        tail = ""
        if self.failure:
            with contextlib.suppress(OSError):
                tail = "\n      " + "\n      ".join(self.output.read_text(errors="replace").splitlines()[-8:])
        return (f"{self}: {sent}{ended}; timeline [{timeline}] ({self.root.name})"
                + (f"\n    FAILED: {self.failure}{tail}" if self.failure else ""))


def run_benches(benches: list[Bench], *, starting_at_once: int) -> tuple[list[Bench], float]:
    """Run the benches, at most `starting_at_once` of them in their start-up at a time (before their signal and
    their table: what costs CPU; on 2 cores, 3 or 4 of them make each start-up two to three times as slow as
    alone, so the phases keep roughly their place in time); returns the failed ones and the wall time."""
    began = time.monotonic()
    pending, running = list(benches), []
    world = World()
    try:
        while pending or running:
            starting = [b for b in running if not b.signalled and "steady" not in b.events]
            for _ in range(min(len(pending), starting_at_once - len(starting))):
                bench = pending.pop(0)
                bench.start()
                running.append(bench)
            world.scan()
            now = time.monotonic()
            for bench in running:
                bench.step(world, now)
            running = [b for b in running if not b.done]
            time.sleep(0.1)
    finally:
        for bench in benches:  # a failure, an error or a timeout of the test: nothing is left running
            bench.kill()
    return [b for b in benches if b.failure], time.monotonic() - began


def _summary(title: str, benches: list[Bench], failed: list[Bench], wall: float) -> str:
    lines = [f"{title}: {len(failed)} of {len(benches)} benches failed ({wall:.0f} s)"]
    lines += [("  " + b.report()) for b in sorted(benches, key=lambda b: (b.failure is None, str(b)))]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def made_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bench PKI with every simulator's server certificate, as the first `up` of a data directory leaves it."""
    from segur_bench.config import BenchConfig
    from segur_bench.netnames import service_names
    from simulators.core.pki import BenchPki

    directory = tmp_path_factory.mktemp("bench-pki") / "pki"
    pki = BenchPki.open(directory)
    for name in registry.SERVICES:
        pki.server_material(name, service_names(BenchConfig(), name))
    return directory


@pytest.mark.timeout(300)
def test_sigterm_and_sigint_at_every_second_of_the_first_15_s_leave_nothing(tmp_path: Path,
                                                                             made_pki: Path) -> None:
    """`kill` (SIGTERM) or Ctrl-C (SIGINT) at 0, 1, …, 15 s after the start of `up`: the PKI being made, the
    simulators starting, the LGC's registration and start, the console, the table, steady state. Benches run side
    by side, which slows each one's start-up: past the first seconds (the PKI being made, as in a first `up`),
    their data directories hold the PKI already, as after a first `up`, so that the 15 s reach the LGC, the
    console and steady state."""
    benches = [Bench(tmp_path / f"{sig.name.lower()}-{second:02d}", sig, after_s=float(second),
                     pki=None if second < FRESH_PKI_BEFORE_S else made_pki)
               for second in range(15, -1, -1) for sig in (signal.SIGTERM, signal.SIGINT)]
    failed, wall = run_benches(benches, starting_at_once=STARTING_AT_ONCE)
    summary = _summary("SIGTERM/SIGINT in the first 15 s", benches, failed, wall)
    print(summary)
    assert not failed, summary


@pytest.mark.timeout(200)
def test_sigkill_at_random_moments_of_start_up_and_steady_state_leaves_nothing(tmp_path: Path,
                                                                               made_pki: Path) -> None:
    """What a CI runner does when a job times out: `kill -9` of `up`, at a random moment of each phase of its
    start-up and of its steady state, with the simulators' worker processes (the default 2 per simulator). The
    launchers see their supervisor die and stop their groups. Past the PKI phases, the benches' data directories
    hold the PKI already (less CPU: the moments follow `up`'s progress lines, not the clock)."""
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(10**6))
    draw = random.Random(seed)
    moments = [(phase, round(draw.uniform(0, 1.5 if phase != "steady" else 4.0), 2)) for phase in PHASES]
    moments.append(("steady", round(draw.uniform(0, 4.0), 2)))
    print(f"SIGKILL moments (seed {seed}): {moments}")  # shown even when the test is cut short by its timeout
    benches = [Bench(tmp_path / f"kill-{i}-{phase.replace(' ', '-')}", signal.SIGKILL, after_s=after, phase=phase,
                     pki=None if phase in ("launch", "pki") else made_pki, workers=2)
               for i, (phase, after) in enumerate(moments)]
    failed, wall = run_benches(benches[::-1], starting_at_once=STARTING_AT_ONCE)  # the longest first
    summary = _summary(f"SIGKILL (seed {seed}; replay with {SEED_ENV}={seed})", benches, failed, wall)
    print(summary)
    assert not failed, summary
