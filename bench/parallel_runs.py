"""The whole scenario suite, sequential against `--parallel N` on one set of simulators, side by side in one go:

    .venv/bin/python bench/parallel_runs.py [--workers 4] [--out DIR] [--no-write]

Each way runs `segur-bench run --all` (the reference LGC, Playwright, the network layer) on this machine, one
after the other; the wall time is the command's, from start to exit (simulators started and stopped, bundles
built). Both must pass every scenario for the figure to count. Target (issue 19): parallel ≤ 0.35 × sequential
on 2 cores. Writes the section "## Scenario suite: sequential vs parallel" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree
from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Scenario suite: sequential vs parallel"
TARGET = 0.35


def play(out: Path, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)  # bundles of an earlier run would be counted
    flags = ["--parallel", str(workers)] if workers > 1 else []
    print(f"segur-bench run --all {' '.join(flags)} …", flush=True)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "segur_bench", "run", "--all", *flags, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    junit = etree.parse(str(out / "junit.xml"), etree.XMLParser(resolve_entities=False, no_network=True))
    cases = junit.getroot().iter("testcase")
    outcomes = ["failed" if c.find("failure") is not None or c.find("error") is not None else
                "skipped" if c.find("skipped") is not None else "passed" for c in cases]
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-2000:], file=sys.stderr)
    return {"workers": workers, "wall": wall, "code": done.returncode, "passed": outcomes.count("passed"),
            "total": len(outcomes), "bundles": len(list((out / "bundles").glob("*.zip"))), "load": load, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("/tmp/segur-bench-parallel-runs"))
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    rows = [play(args.out / "sequential", 1), play(args.out / f"parallel-{args.workers}", args.workers)]
    seq, par = rows
    ratio = par["wall"] / seq["wall"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [SECTION, "",
             f"`bench/parallel_runs.py` — {stamp}, {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `segur-bench run --all` (reference LGC, Playwright, network layer), "
             "sequential then parallel, one after the other on the same machine. Wall time = the command's, "
             "simulators' start and stop and bundle building included.", "",
             "| mode | wall time (s) | CPU time (s) | CPU / wall | scenarios passed | bundles | exit code | "
             "1-min load at start |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mode = "sequential" if r["workers"] == 1 else f"--parallel {r['workers']}"
        lines.append(f"| {mode} | {r['wall']:.1f} | {r['cpu']:.0f} | {r['cpu'] / r['wall']:.2f} | "
                     f"{r['passed']}/{r['total']} | {r['bundles']} | {r['code']} | {r['load']:.2f} |")
    cores = os.cpu_count() or 1
    floor = seq["cpu"] / cores / seq["wall"]
    complete = all(r["code"] == 0 and r["passed"] == r["total"] for r in rows)
    lines += ["", f"Parallel / sequential: **{ratio:.2f}** (target ≤ {TARGET}: "
              f"{'met' if ratio <= TARGET else 'NOT met'})"
              + ("" if complete else " — not every scenario passed, the figure does not count") + ".",
              "", f"CPU time = user + system time of every process the command ran (browsers, reference LGCs, "
              f"simulators, network layer, ffmpeg). The sequential suite already keeps {seq['cpu'] / seq['wall']:.2f} "
              f"of the {cores} cores busy: spread perfectly over {cores} cores, the same work cannot take less than "
              f"{floor:.2f} × the sequential wall time, whatever the number of workers."]
    publish(SECTION, "\n".join(lines) + "\n", write=not args.no_write)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
