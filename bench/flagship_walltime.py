"""Flagship scenario LGC.DMP/UX.10.01: wall time split into injected network latency and bench overhead, and the
UI's response times measured while calls were in flight.

    .venv/bin/python bench/flagship_walltime.py [--out DIR] [--reuse] [--no-write]

Runs `segur-bench run LGC.DMP/UX.10.01` (unless --reuse reads an existing --out), then for each run (one per
patient) reads its bundle: from the throttling step to the last step, the wall time; the latency the scenario
must wait for = the union of the network layer's injected-delay intervals (HAR `_injected_ms`, HTTP requests and
SMTP/IMAP connections; overlapping calls counted once); overhead = wall − latency. Target: wall ≤ 1.5 × latency.
Writes the section "## Flagship scenario: wall time and UI responsiveness" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Flagship scenario: wall time and UI responsiveness"
TARGET = 1.5


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def analyse(bundle: Path) -> dict:
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()

        def load(suffix: str):
            name = next((n for n in names if n.endswith(suffix)), None)
            return json.loads(z.read(name)) if name else None

        run, steps, timings, har = load("/run.json"), load("/steps.json"), load("/timings.json"), load("/network.har")
    throttle = next(s for s in steps if "latence de 3 secondes" in s["text"])
    start, end = ts(throttle["started"]), ts(steps[-1]["ended"])
    intervals = []
    for e in (har or {}).get("log", {}).get("entries", []) + (har or {}).get("log", {}).get("_connections", []):
        injected = float(e.get("_injected_ms") or 0) / 1000
        t0 = ts(e["startedDateTime"]) if e.get("startedDateTime") else None
        if injected and t0 is not None and start <= t0 <= end:
            intervals.append((t0, t0 + injected))
    latency = union(intervals)
    wall = end - start
    ms = [a["ms"] for a in timings["actions"]]
    return {"patient": run["scenario"], "wall": wall, "latency": latency, "overhead": wall - latency,
            "ratio": wall / latency if latency else float("inf"), "calls": len(intervals),
            "actions": len(ms), "p50": timings.get("p50_ms", 0), "p95": timings.get("p95_ms", 0),
            "max": timings.get("max_ms", 0), "network": run.get("network_condition", "")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-flagship")
    parser.add_argument("--reuse", action="store_true", help="read the bundles already in --out")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.reuse:
        code = subprocess.call([sys.executable, "-m", "segur_bench", "run", "LGC.DMP/UX.10.01", "--out",
                                str(args.out)], cwd=ROOT)
        if code:
            return code
    bundles = sorted((args.out / "bundles").glob("LGC.DMP-UX.10.01_*.zip"))
    if not bundles:
        sys.exit(f"no flagship bundle in {args.out / 'bundles'}")
    rows = [analyse(b) for b in bundles]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [SECTION, "",
             f"`bench/flagship_walltime.py` — {now}, {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}. `segur-bench run LGC.DMP/UX.10.01` against the reference LGC in Debian "
             "Chromium, network layer (mitmdump) adding 3 s to every HTTP request and to every SMTP/IMAP connection. "
             "Wall time from the throttling step to the last step; latency = union of the injected-delay intervals "
             "(overlapping calls counted once); overhead = wall − latency (browser, LGC, simulators, proxy, "
             "judging).", "",
             "| run | wall (s) | injected latency waited (s) | overhead (s) | wall / latency | delayed calls | "
             "UI actions during calls | p50 / p95 / max (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['patient']} | {r['wall']:.1f} | {r['latency']:.1f} | {r['overhead']:.1f} | "
                     f"{r['ratio']:.2f} | {r['calls']} | {r['actions']} | {r['p50']:.0f} / {r['p95']:.0f} / "
                     f"{r['max']:.0f} |")
    worst = max(r["ratio"] for r in rows)
    lines += ["", f"Target: wall ≤ {TARGET} × the latency the scenario must wait for — worst {worst:.2f} "
                  f"({'met' if worst <= TARGET else 'NOT met'}).", ""]
    block = "\n".join(lines)
    publish(SECTION, block, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
