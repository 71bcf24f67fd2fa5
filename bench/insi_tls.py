"""INSi over mutual TLS vs plain HTTP, side by side in one run; and what a new TLS connection costs.

Starts the INSi simulator the way users run it (`python -m segur_bench sim insi --data-dir <tmp> --workers 2`,
journal on, its TLS port on), with a bench PKI made for the run and a client certificate issued from it. Both
paths do the same INSi work (the probe segur_bench/probes/insi-clerico.xml, a traits search answered CR 00): over
TLS the client presents its certificate (mutual TLS: the port asks for one), verified against the CA and the CRL.

Load: a small asyncio load generator (uvloop when installed) in --clients processes, each keeping
--connections/--clients HTTP/1.1 connections busy for --duration seconds. wrk cannot present a client certificate,
so both paths use this same client: the ratio is fair, the absolute figures are this client's. Rounds are
interleaved (plain, TLS, TLS, plain …) and medians reported (this machine's speed drifts between runs).

Handshake cost: the same load with a new connection per request (`Connection: close`), TLS and plain; the extra
time per request at saturation is the cost of a full handshake (TLS 1.3, RSA 2048 keys, client certificate
verified). `openssl s_time -new` gives an independent figure (connections per second) when openssl is installed.

    .venv/bin/python bench/insi_tls.py [--duration 8] [--rounds 3] [--connections 20] [--clients 2] [--no-write]

The section "## INSi over mutual TLS vs plain HTTP" of bench/RESULTS.md is replaced in place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "segur_bench" / "probes" / "insi-clerico.xml"
SECTION = "## INSi over mutual TLS vs plain HTTP"
TARGET = 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bytes(close: bool) -> bytes:
    body = PROBE.read_text(encoding="utf-8").format(message_id="urn:uuid:3f2b8c1e-0d4a-4b6e-9a57-5c1d2e3f4a5b")
    data = body.encode()
    head = (f"POST /lps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/soap+xml; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + data


async def _read_answer(reader: asyncio.StreamReader) -> bool:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200") and b"CodeCR>00<" in body  # a CR 00, whatever the prefix


async def _worker(port: int, ctx: ssl.SSLContext | None, deadline: float, close: bool, counts: list[int]) -> None:
    request = request_bytes(close)
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="localhost" if ctx else None)
        except OSError:
            counts[1] += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                ok = await _read_answer(reader)
                counts[0 if ok else 1] += 1
                if close:
                    break
        except (OSError, asyncio.IncompleteReadError):
            counts[1] += 1
        finally:
            writer.close()


def _client(port: int, tls: dict | None, connections: int, duration: float, close: bool, out) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=tls["ca"])
        ctx.load_cert_chain(tls["cert"], tls["key"])
    counts = [0, 0]

    async def main() -> None:
        deadline = time.monotonic() + duration
        await asyncio.gather(*(_worker(port, ctx, deadline, close, counts) for _ in range(connections)))

    asyncio.run(main())
    out.put(tuple(counts))


def load(port: int, tls: dict | None, *, connections: int, clients: int, duration: float,
         close: bool = False) -> tuple[float, int]:
    """Requests per second over `duration`, and the errors seen."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    per = max(1, connections // clients)
    procs = [multiprocessing.Process(target=_client, args=(port, tls, per, duration, close, queue))
             for _ in range(clients)]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join()
    wall = time.monotonic() - start
    done = sum(r[0] for r in results)
    return done / max(duration, wall - 0.3), sum(r[1] for r in results)


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
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from simulators.core.pki import BenchPki

    tmp = Path(tempfile.mkdtemp(prefix="insi-tls-"))
    pki = BenchPki.open(tmp / "pki")
    bundle = pki.issue_client("bench-client", tmp / "certs", kind="structure")
    tls = {"ca": str(pki.chain_path), "cert": str(bundle.crt_path), "key": str(bundle.key_path)}
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
        load(http_port, None, connections=args.connections, clients=args.clients, duration=3)  # warm-up
        load(tls_port, tls, connections=args.connections, clients=args.clients, duration=3)
        figures: dict[str, list[float]] = {"plain": [], "tls": [], "plain_new": [], "tls_new": []}
        errors = 0
        for n in range(args.rounds):
            order = [("plain", http_port, None), ("tls", tls_port, tls)]
            if n % 2:
                order.reverse()
            for close in (False, True):
                for name, port, t in order:
                    rps, err = load(port, t, connections=args.connections, clients=args.clients,
                                    duration=args.duration, close=close)
                    errors += err
                    key = name + ("_new" if close else "")
                    figures[key].append(rps)
                    print(f"round {n + 1}: {key:<10} {rps:8.0f} req/s ({err} errors)")
        handshakes = s_time(tls_port, tls)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in figures.items()}
    ratio = med["tls"] / med["plain"]
    # at saturation, time per request = 1 / rate; the difference with a new connection each time is the handshake
    handshake_ms = (1 / med["tls_new"] - 1 / med["plain_new"]) * 1000 * 2  # × 2 cores shared by server and client
    rng = {k: f"{min(v):,.0f}–{max(v):,.0f}" for k, v in figures.items()}
    met = "met" if ratio >= TARGET else "NOT met"
    block = f"""{SECTION}

`bench/insi_tls.py`, {datetime.now(UTC):%Y-%m-%d} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores
shared by the simulator's {args.workers} workers and the load generator; {args.rounds} interleaved rounds of
{args.duration:g} s, {args.connections} connections, medians and ranges). Same INSi traits search (CR 00, journal on)
over plain HTTP and over TLS 1.3 with a client certificate verified against the bench CA and its CRL. The load
generator is ours (wrk cannot present a client certificate), the same for both paths.

| path | keep-alive, req/s | new connection per request, req/s |
|---|---|---|
| plain HTTP | {med['plain']:,.0f} ({rng['plain']}) | {med['plain_new']:,.0f} ({rng['plain_new']}) |
| mutual TLS | {med['tls']:,.0f} ({rng['tls']}) | {med['tls_new']:,.0f} ({rng['tls_new']}) |

- **Keep-alive: mutual TLS at {ratio:.2f}× plain HTTP** (target ≥ {TARGET}×: {met}).
- **A new TLS connection** (full TLS 1.3 handshake, RSA 2048, client certificate checked) costs about
  {handshake_ms:.1f} ms of CPU across client and server at saturation (from the new-connection rates above);
  `openssl s_time -new`: {f'{handshakes:,.0f} full handshakes per second' if handshakes else 'not run'}.
- Errors during the measured runs: {errors}.
"""
    print(block)
    if not args.no_write:
        print(f"wrote {write_section(SECTION, block)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
