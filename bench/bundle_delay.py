"""How long a finished run waits for its proof bundle: from the scenario's last step to the bundle on disk, against
the run's duration, for the flagship LGC.DMP/UX.10.01 played two ways in one go —

- guided, with the automated operator sharing the reference LGC's tab from the operator page (the video and
  step pictures come from the uploaded recording: the bench waits for the last segments, decodes, captions and
  encodes);
- the Playwright reference driver (the bench's own CDP screencast, captioned and encoded).

    .venv/bin/python bench/bundle_delay.py [--out DIR] [--no-write]

Per run (one per patient): run duration = run start → last step's end; delay = last step's end → the bundle's
zip written (its mtime); ratio = delay / duration. Target: ratio ≤ 0.5. For guided runs the share of the delay
spent waiting for the page's last segments and encoding is read from run.json ("ecran").
Writes the section "## Proof bundle delay after the last step" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Proof bundle delay after the last step"
TARGET = 0.5
MODES = {
    "guided (shared screen)": ["--driver", "guided", "--operator", "auto"],
    "playwright (bench screencast)": [],
}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def measure(bundle: Path) -> dict:
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        run = json.loads(z.read(next(n for n in names if n.endswith("/run.json"))))
        steps = json.loads(z.read(next(n for n in names if n.endswith("/steps.json"))))
    last = ts(steps[-1]["ended"])
    duration = last - ts(run["started"])
    delay = bundle.stat().st_mtime - last
    screen = run.get("ecran") or {}
    return {"bundle": bundle.name, "outcome": run.get("outcome"), "duration": duration, "delay": delay,
            "ratio": delay / duration, "encode": screen.get("duree_traitement_s"),
            "video_s": screen.get("duree_video_s")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/segur-bench-bundle-delay"))
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {}
    load = []
    for mode, flags in MODES.items():
        out = args.out / mode.split()[0]
        load.append(os.getloadavg()[0])
        print(f"running LGC.DMP/UX.10.01, {mode} …", flush=True)
        done = subprocess.run([sys.executable, "-m", "segur_bench", "run", "LGC.DMP/UX.10.01", *flags, "--out",
                               str(out)], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        results[mode] = [measure(b) for b in sorted((out / "bundles").glob("*.zip"))]
    load.append(os.getloadavg()[0])

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [SECTION, "",
             f"`bench/bundle_delay.py` — {stamp}, {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `segur-bench run LGC.DMP/UX.10.01` (two patients, 3-s network latency), "
             "each way in turn on the same machine (1-min load average "
             f"{load[0]:.2f} at the start, {load[-1]:.2f} at the end).",
             "Delay = the scenario's last step → the bundle's zip on disk (video encoded, pictures placed, journals, "
             "HAR window, hashes, zip); duration = run start → last step. For guided runs, \"processing\" is the "
             "part spent waiting for the operator page's last segments and decoding + captioning + encoding the "
             "shared screen.", "",
             "| driver | bundle | run duration (s) | delay (s) | delay / duration | processing (s) |",
             "|---|---|---:|---:|---:|---:|"]
    for mode, rows in results.items():
        for r in rows:
            lines.append(f"| {mode} | {r['bundle']} | {r['duration']:.1f} | {r['delay']:.1f} | {r['ratio']:.2f} | "
                         + (f"{r['encode']:.1f}" if r["encode"] is not None else "—") + " |")
    worst = max(r["ratio"] for r in results["guided (shared screen)"])
    ref = statistics.median(r["ratio"] for r in results["playwright (bench screencast)"])
    lines += ["", f"Target: delay ≤ {TARGET} × run duration for guided runs — worst ratio {worst:.2f} "
              f"({'met' if worst <= TARGET else 'NOT met'}); the Playwright runs' median ratio is {ref:.2f}."]
    block = "\n".join(lines) + "\n"
    publish(SECTION, block, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
