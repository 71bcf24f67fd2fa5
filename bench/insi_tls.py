"""INSi over mutual TLS vs plain HTTP, side by side in one run; and what a new TLS connection costs.

Starts the INSi simulator the way users run it (`python -m segur_bench sim insi --data-dir <tmp> --workers 2`,
journal on, its TLS port on), with a bench PKI made for the run and a client certificate issued from it. Both
paths do the same INSi work (the probe segur_bench/probes/insi-clerico.xml, a traits search answered CR 00): over
TLS the client presents its certificate (mutual TLS: the port asks for one), verified against the CA and the CRL.

Load: curl in parallel mode (`-Z --parallel-max`, keep-alive), a client written by others that presents a client
certificate (wrk cannot), the same for both paths. Rounds are interleaved (plain, TLS, TLS, plain …) and medians
reported (this machine's speed drifts between runs), with the ratio of each round's pair. The simulator's own CPU
per exchange (its processes' user + system time, from /proc) says what it can serve on cores of its own.

Handshake cost: the same load with a new connection per request (`Connection: close`, `--no-sessionid`: no TLS
session resumption), TLS and plain; the extra CPU per request is the cost of a full handshake (TLS 1.3, RSA 2048
keys, client certificate verified). `openssl s_time -new` gives an independent figure when openssl is installed.

    .venv/bin/python bench/insi_tls.py [--requests 30000] [--new-requests 2000] [--rounds 5] [--connections 20]
        [--no-write]

The section "## INSi over mutual TLS vs plain HTTP" of bench/RESULTS.md is replaced in place.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "segur_bench" / "probes" / "insi-clerico.xml"
SECTION = "## INSi over mutual TLS vs plain HTTP"
TARGET = 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(url: str, tls: dict, probe: Path, cfg_dir: Path, *, connections: int, requests: int,
         close: bool = False) -> tuple[float, int]:
    """Requests per second of `requests` POSTs of the probe, `connections` at a time, by curl in parallel mode
    (one process, keep-alive; `close`: a new connection per request and no TLS session resumption, a full
    handshake each time). Returns (requests/s, answers other than 200)."""
    cfg = cfg_dir / f"curl-{requests}.cfg"
    if not cfg.exists():
        cfg.write_text('url = "URL"\noutput = "/dev/null"\n' * requests, encoding="ascii")
    text = cfg.read_text(encoding="ascii").replace("URL", url)
    run_cfg = cfg_dir / "run.cfg"
    run_cfg.write_text(text, encoding="ascii")
    cmd = ["curl", "-s", "-Z", "--parallel-max", str(connections), "-K", str(run_cfg), "--data-binary", f"@{probe}",
           "-H", "Content-Type: application/soap+xml; charset=utf-8", "-w", "%{http_code}\n",
           "--cacert", tls["ca"], "--cert", tls["cert"], "--key", tls["key"]]
    if close:
        cmd += ["-H", "Connection: close", "--no-sessionid"]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - start
    codes = done.stdout.split()
    return len(codes) / wall, sum(c != "200" for c in codes) + (requests - len(codes))


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the simulator and its workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.append(int(child))
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def s_time(port: int, tls: dict, seconds: int = 5) -> float | None:
    """`openssl s_time -new`: full handshakes (client certificate included) per second."""
    if shutil.which("openssl") is None:
        return None
    done = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
                           "-CAfile", tls["ca"], "-cert", tls["cert"], "-key", tls["key"]],
                          capture_output=True, text=True, timeout=seconds + 30)
    for line in done.stdout.splitlines():
        if "connections/user sec" in line:
            with contextlib.suppress(ValueError, IndexError):
                return float(line.split("connections/user sec")[0].split(";")[-1].split()[-1])
        if "connections in" in line and "real seconds" in line:
            with contextlib.suppress(ValueError, IndexError):
                words = line.split()
                return int(words[0]) / float(words[3])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30000, help="Requests per keep-alive run.")
    parser.add_argument("--new-requests", type=int, default=2000, help="Requests per new-connection run.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from simulators.core.pki import BenchPki

    tmp = Path(tempfile.mkdtemp(prefix="insi-tls-"))
    pki = BenchPki.open(tmp / "pki")
    bundle = pki.issue_client("bench-client", tmp / "certs", kind="structure")
    tls = {"ca": str(pki.chain_path), "cert": str(bundle.crt_path), "key": str(bundle.key_path)}
    probe = tmp / "probe.xml"
    probe.write_text(PROBE.read_text(encoding="utf-8").format(
        message_id="urn:uuid:3f2b8c1e-0d4a-4b6e-9a57-5c1d2e3f4a5b"), encoding="utf-8")
    if shutil.which("curl") is None:
        raise SystemExit("curl not found: `apt-get install -y curl`")
    http_port, tls_port = free_port(), free_port()
    sim = subprocess.Popen([sys.executable, "-m", "segur_bench", "sim", "insi", "--port", str(http_port),
                            "--tls-port", str(tls_port), "--data-dir", str(tmp / "data"), "--pki-dir",
                            str(tmp / "pki"), "--workers", str(args.workers)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{http_port}/_bench/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or sim.poll() is not None:
                raise SystemExit("the INSi simulator did not start")
            time.sleep(0.2)
        print(f"INSi on http://127.0.0.1:{http_port} and https://127.0.0.1:{tls_port} ({args.workers} workers)")
        urls = {"plain": f"http://localhost:{http_port}/lps", "tls": f"https://localhost:{tls_port}/lps"}
        for url in urls.values():  # warm-up
            load(url, tls, probe, tmp, connections=args.connections, requests=3000)
        figures: dict[str, list[float]] = {"plain": [], "tls": [], "plain_new": [], "tls_new": []}
        cpu: dict[str, list[float]] = {k: [] for k in figures}  # the simulator's CPU µs per exchange
        errors = 0
        for n in range(args.rounds):
            order = ["plain", "tls"] if n % 2 == 0 else ["tls", "plain"]
            for close in (False, True):
                count = args.new_requests if close else args.requests
                for name in order:
                    before = _tree_cpu(sim.pid)
                    rps, err = load(urls[name], tls, probe, tmp, connections=args.connections, requests=count,
                                    close=close)
                    used = _tree_cpu(sim.pid) - before
                    errors += err
                    key = name + ("_new" if close else "")
                    figures[key].append(rps)
                    cpu[key].append(used / count * 1e6)
                    print(f"round {n + 1}: {key:<10} {rps:8.0f} req/s, simulator {cpu[key][-1]:.0f} µs CPU per "
                          f"exchange ({err} errors)")
        handshakes = s_time(tls_port, tls)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in figures.items()}
    us = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = med["tls"] / med["plain"]
    paired = sorted(t / p for t, p in zip(figures["tls"], figures["plain"], strict=True))  # same round, side by side
    capacity = us["plain"] / us["tls"]  # what the simulator alone can serve, TLS vs plain
    # at saturation, time per request = 1 / rate; the difference with a new connection each time is the handshake
    handshake_ms = (1 / med["tls_new"] - 1 / med["plain_new"]) * 1000 * (os.cpu_count() or 2)  # cores, shared
    rng = {k: f"{min(v):,.0f}–{max(v):,.0f}" for k, v in figures.items()}
    met = "met" if ratio >= TARGET else "NOT met"
    handshake_server_us = us["tls_new"] - us["plain_new"]
    header = ("| path | keep-alive, req/s | simulator CPU per exchange | new connection per request, req/s "
              "| simulator CPU per exchange |\n|---|---|---|---|---|")
    rows = [f"| {label} | {med[k]:,.0f} ({rng[k]}) | {us[k]:.0f} µs | {med[k + '_new']:,.0f} ({rng[k + '_new']}) "
            f"| {us[k + '_new']:.0f} µs |" for label, k in (("plain HTTP", "plain"), ("mutual TLS", "tls"))]
    table = "\n".join([header, *rows])
    block = f"""{SECTION}

`bench/insi_tls.py`, {datetime.now(UTC):%Y-%m-%d} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores
shared by the simulator's {args.workers} workers and the load generator; {args.rounds} interleaved rounds,
{args.requests:,} requests per keep-alive run and {args.new_requests:,} per new-connection run, {args.connections}
at a time; medians and ranges). Same INSi traits search (CR 00, journal on) over plain HTTP and over TLS 1.3 with
a client certificate verified against the bench CA and its CRL. The load generator is curl in parallel mode (wrk
cannot present a client certificate), the same for both paths; new connections are made with
`Connection: close` and `--no-sessionid` (a full handshake each time, no resumption).

{table}

- **Keep-alive: mutual TLS at {ratio:.2f}× plain HTTP** in requests per second (target ≥ {TARGET}×: {met}); round by
  round, {", ".join(f"{r:.2f}" for r in paired)} (median {statistics.median(paired):.2f}). The
  load generator shares the 2 cores and pays for TLS too; the simulator's own CPU per exchange says what it can
  serve on cores of its own: **{capacity:.2f}× plain** over mutual TLS.
- **A new TLS connection** (full TLS 1.3 handshake, RSA 2048, client certificate checked against the CA and CRL)
  costs the simulator about {handshake_server_us / 1000:.1f} ms of CPU, and {handshake_ms:.1f} ms across client and
  server at saturation (from the new-connection rates above); `openssl s_time -new`:
  {f'{handshakes:,.0f} full handshakes per second' if handshakes else 'not run'}. An LGC that keeps its connections
  alive pays it once; one that opens a connection per call (like the reference LGC) pays it every time.
- Errors during the measured runs: {errors}.
"""
    publish(SECTION, block, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
