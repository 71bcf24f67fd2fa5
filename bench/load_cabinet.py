"""The cabinet load profile (Locust) with and without an incident, side by side.

Starts INSi, DMP, ON, PSC and MSSanté (`segur-bench up --only … --no-lgc`, child processes, free ports, plain
HTTP), then runs `segur_bench.load` twice with the same practitioners, pace and duration: once on a healthy bench,
once with an incident applied from the start (default `latence-3s`: every service answers 3 s later). Figures come
from Locust's CSV: requests/s, median and p95 per operation, failures.

    .venv/bin/python bench/load_cabinet.py [--users 40] [--pace 10] [--seconds 45] [--incident latence-3s] [--no-write]

Writes the section "## Load: cabinet profile (Locust), healthy bench vs incident" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from segur_bench.config import BenchConfig  # noqa: E402
from segur_bench.load.runner import IncidentAt, LoadOptions, LoadResult, run_load  # noqa: E402

SECTION = "## Load: cabinet profile (Locust), healthy bench vs incident"
SIMS = ("insi", "dmp", "on", "psc", "mss")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bench(tmp: Path) -> tuple[subprocess.Popen, Path]:
    ports = {s: free_port() for s in SIMS}
    config = tmp / "segur-bench.toml"
    config.write_text(f'data_dir = "{tmp / "sims"}"\ntls = false\nfront_port = 0\n[ports]\n'
                      + "".join(f"{s} = {p}\n" for s, p in ports.items())
                      + f"[settings.mss]\nsmtp_port = {free_port()}\nimap_port = {free_port()}\n")
    proc = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(config), "up", "--only",
                             ",".join(SIMS), "--no-lgc"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "sims.log", "w"))  # noqa: SIM115
    deadline = time.monotonic() + 60
    for p in ports.values():
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the simulators did not start; see {tmp / 'sims.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{p}/_bench/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
    return proc, config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=40, help="simulated practitioners")
    parser.add_argument("--pace", type=float, default=10.0, help="think times divided by this")
    parser.add_argument("--seconds", type=float, default=45.0, help="duration of each run")
    parser.add_argument("--incident", default="latence-3s")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load-bench-") as d:
        tmp = Path(d)
        proc, config_path = start_bench(tmp)
        try:
            config = BenchConfig.load(config_path)
            runs = {}
            for label, incidents in (("healthy", []), (args.incident, [IncidentAt(args.incident, 0)])):
                opts = LoadOptions(users=args.users, spawn_rate=max(1.0, args.users / 4), duration_s=args.seconds,
                                   out=tmp / label, incidents=incidents, pace=args.pace)
                print(f"--- run: {label}", file=sys.stderr)
                runs[label] = run_load(config, opts, echo=lambda m: print(m, file=sys.stderr))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    publish(SECTION, report(args, runs), write=not args.no_write)
    return 0


def report(args: argparse.Namespace, runs: dict[str, LoadResult]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (healthy_label, healthy), (incident_label, incident) = runs.items()
    lines = [
        SECTION, "",
        f"`bench/load_cabinet.py` — {now}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Simulators INSi, DMP, ON, PSC, MSSanté as `segur-bench up` children (plain "
        f"HTTP, 2 worker processes each); one Locust process (`segur-bench load cabinet`) on the same machine: "
        f"{args.users} practitioners, pace {args.pace:g} (think times ÷ {args.pace:g}: a consultation every "
        f"~{(30 + 4 * 4) / args.pace:.1f} s per practitioner), {args.seconds:g} s per run. Second run: incident "
        f"`{incident_label}` applied from the start. Times in ms, from Locust's CSV.",
        "",
        f"| operation | {healthy_label}: requests | median | p95 | failures | {incident_label}: requests | median | "
        "p95 | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    a, b = healthy.by_name(), incident.by_name()
    for name in sorted(set(a) | set(b)):
        cells = []
        for ops in (a, b):
            op = ops.get(name)
            cells += ([str(op.requests), f"{op.median_ms:.0f}", f"{op.p95_ms:.0f}", str(op.failures)] if op
                      else ["0", "–", "–", "0"])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for label, run in runs.items():
        t = run.total
        if t:
            lines.append("")
            lines.append(f"**{label}**: {t.requests} requests, {t.rps:.1f} requests/s, median {t.median_ms:.0f} ms, "
                         f"p95 {t.p95_ms:.0f} ms, {t.failures} failure(s).")
    started = {label: run.by_name().get("INSi rechercherInsAvecTraitsIdentite") for label, run in runs.items()}
    counts = ", ".join(f"{label} {op.requests if op else 0}" for label, op in started.items())
    lines += ["", f"Consultations started (one INSi search each) by the {args.users} practitioners: {counts}. Under "
              "the incident each practitioner waits for every answer, so the same practitioners make far fewer "
              "requests: the bench holds the load, the practice slows down. The first consultation of every "
              "practitioner has every step, including a letter: an SMTP submission is about eight commands, each "
              "delayed by the simulator's fault engine, hence ~24 s per letter under a 3-s incident (the network "
              "layer of `segur-bench run` delays a connection once instead). PSC logins happen as the load "
              "starts, after the incident was applied: two delayed calls each.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
