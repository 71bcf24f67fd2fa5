"""Latency-injection accuracy: how close is the delay a simulator adds to the delay it was asked for?

Starts the core's echo service the way `segur-bench up` runs simulators (uvicorn, file-backed
SQLite, 2 worker processes by default) in a child process, injects a fixed latency, fires 1, 10
and 100 concurrent requests from this process, and reports p50/p99 of:

- injection error   = latency actually waited by the simulator − injected (server clock, journal);
- server-side error = simulator time from request received to response sent − injected;
- client error      = client-observed round trip − injected;
- client baseline   = client-observed round trip with no latency injected (what the stack costs).

Writes the figures to bench/RESULTS.md (section replaced in place).

    .venv/bin/python bench/latency_accuracy.py [--latency-ms 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Latency-injection accuracy"

SERVER = textwrap.dedent("""
    import json, os, sys, uvicorn
    from simulators.core.service import SimConfig
    from simulators.core.simulator import build_simulator
    from simulators.core.server import server_options
    from simulators.core.testing import echo_spec

    cfg = SimConfig.from_json(json.loads(os.environ["BENCH_CFG"]))
    if cfg.workers > 1:
        uvicorn.run("bench_echo:app", factory=True, workers=cfg.workers, **server_options(cfg))
    else:
        uvicorn.Server(uvicorn.Config(build_simulator(echo_spec(), cfg).asgi, **server_options(cfg))).run()
""")

FACTORY = textwrap.dedent("""
    import json, os
    from simulators.core.service import SimConfig
    from simulators.core.simulator import build_simulator
    from simulators.core.testing import echo_spec

    def app():
        return build_simulator(echo_spec(), SimConfig.from_json(json.loads(os.environ["BENCH_CFG"]))).asgi
""")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def fire(client: httpx.AsyncClient, url: str, concurrency: int, rounds: int) -> list[float]:
    observed: list[float] = []

    async def one() -> None:
        t0 = time.perf_counter()
        r = await client.post(url, content=b"ping")
        r.raise_for_status()
        observed.append((time.perf_counter() - t0) * 1000)

    for _ in range(rounds):
        await asyncio.gather(*[one() for _ in range(concurrency)])
    return observed


def measure(base: str, concurrency: int, rounds: int, latency_ms: float) -> dict[str, list[float]]:
    with httpx.Client(base_url=base) as ctl:
        ctl.post("/_bench/reset")
        run = f"bench-c{concurrency}"

        async def go(inject: bool) -> list[float]:
            ctl.delete("/_bench/faults")
            ctl.post("/_bench/run", json={"run": run + ("-lat" if inject else "-base")})
            if inject:
                ctl.post("/_bench/faults", json={"operation": "POST /echo",
                                                 "effect": {"type": "latency", "ms": latency_ms}})
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:
                await fire(client, base + "/echo", concurrency, 1)  # warm connections up
                return await fire(client, base + "/echo", concurrency, rounds)

        baseline = asyncio.run(go(False))
        observed = asyncio.run(go(True))
        entries = ctl.get("/_bench/journal", params={"run": run + "-lat"}).json()["entries"]
        entries = entries[concurrency:]  # skip the warm-up round
        ctl.delete("/_bench/faults")
    return {
        "injection": [e["waited_ms"] - latency_ms for e in entries if e["waited_ms"] is not None],
        "server": [e["duration_ms"] - latency_ms for e in entries],
        "client": [o - latency_ms for o in observed],
        "baseline": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=18999)
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args()

    plan = [(1, 100), (10, 20), (100, 5)]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench_echo.py").write_text(FACTORY)
        cfg = {"host": "127.0.0.1", "port": args.port, "data_dir": tmp, "workers": args.workers,
               "max_request_bytes": 1 << 20, "incidents_dir": None, "public_url": None, "settings": {}}
        env = dict(os.environ, BENCH_CFG=__import__("json").dumps(cfg),
                   PYTHONPATH=os.pathsep.join([tmp, str(ROOT), os.environ.get("PYTHONPATH", "")]))
        server = subprocess.Popen([sys.executable, "-c", SERVER], env=env, cwd=tmp)
        base = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(base + "/_bench/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the echo simulator did not start")
            rows = []
            for concurrency, rounds in plan:
                print(f"concurrency {concurrency}: {rounds} round(s) …", file=sys.stderr)
                m = measure(base, concurrency, rounds, args.latency_ms)
                rows.append((concurrency, len(m["client"]), m))
        finally:
            server.terminate()
            server.wait(10)

    lines = [
        SECTION,
        "",
        f"`bench/latency_accuracy.py` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" echo service, {args.workers} worker process(es), file-backed SQLite, journal on;"
        f" injected latency {args.latency_ms:g} ms; client in another process.",
        "",
        "| concurrent requests | samples | injection error p50 / p99 (ms) | server-side error p50 / p99 (ms)"
        " | client error p50 / p99 (ms) | client baseline, no latency, p50 / p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency, n, m in rows:
        cells = [f"{pct(m[k], 50):.2f} / {pct(m[k], 99):.2f}" for k in ("injection", "server", "client", "baseline")]
        lines.append(f"| {concurrency} | {n} | " + " | ".join(cells) + " |")
    at_100 = next((pct(m["injection"], 99) for c, _, m in rows if c == 100), float("nan"))
    worst = max(pct(m["injection"], 99) for _, _, m in rows)
    lines += [
        "",
        f"Target: injection error p99 ≤ 5 ms at 100 concurrent requests — measured {at_100:.2f} ms"
        f" ({'met' if at_100 <= 5 else 'NOT met'}); worst p99 over all rows {worst:.2f} ms.",
        "The client and the simulator's processes share the machine's cores: when the OS does not schedule a"
        " worker the moment its timer fires, that shows in the p99, which therefore varies from run to run.",
        "Client and server-side errors include the service's own work and the queueing of simultaneous requests"
        f" on {args.workers} process(es); the client baseline shows that cost without any injected latency"
        f" (mean {statistics.mean(rows[-1][2]['baseline']):.1f} ms at 100 concurrent).",
        "",
    ]
    block = "\n".join(lines)
    publish(SECTION, block, write=not args.no_write)


if __name__ == "__main__":
    main()
