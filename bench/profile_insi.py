"""Where does an INSi request's time go? cProfile of a single-worker simulator under wrk load.

Runs the INSi simulator in this process (one uvicorn worker, file-backed SQLite, journal on, the same
objects `segur-bench sim insi` builds) and loads it with wrk (bench/insi_post.lua, the probe request of
bench/insi_vs_wiremock.py). Two passes:

1. no profiler: requests/s and process CPU time per request (the absolute cost);
2. cProfile with a per-thread CPU clock (time.thread_time, so GIL waits are not counted): one profile
   for the event-loop thread, one per a2wsgi worker thread (merged; idle unless a request takes the Flask
   path), then the loop's CPU time is split into stages of the inline path (uvicorn/httptools, envelope
   parse, journal entry, INSi reading, rules, matching, answer, journal append, write). The journal's
   ingestion into SQLite happens at the next journal read, outside the measured runs.

Profiling inflates Python-heavy stages; read the shares as rough. Needs wrk (`apt-get install -y wrk`).

    .venv/bin/python bench/profile_insi.py [--seconds 10] [--connections 10] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import a2wsgi.wsgi  # noqa: E402
import uvicorn  # noqa: E402

from simulators.core.server import uvicorn_config  # noqa: E402
from simulators.core.service import SimConfig  # noqa: E402
from simulators.core.simulator import build_simulator  # noqa: E402
from simulators.registry import load_spec  # noqa: E402

LUA = ROOT / "bench" / "insi_post.lua"
PROBE = ROOT / "segur_bench" / "probes" / "insi-clerico.xml"
MESSAGE_ID = "urn:uuid:3f2b8c1e-0d4a-4b6e-9a57-5c1d2e3f4a5b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProfiles:
    """One cProfile per a2wsgi worker thread, enabled only while the thread runs a request."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.all: list[cProfile.Profile] = []
        self.lock = threading.Lock()
        self.active = False

    def install(self) -> None:
        original = a2wsgi.wsgi.WSGIResponder.wsgi
        profiles = self

        def wsgi(responder, environ, start_response):  # type: ignore[no-untyped-def]
            if not profiles.active:
                return original(responder, environ, start_response)
            prof = getattr(profiles.local, "prof", None)
            if prof is None:
                prof = profiles.local.prof = cProfile.Profile(time.thread_time)
                with profiles.lock:
                    profiles.all.append(prof)
            prof.enable()
            try:
                return original(responder, environ, start_response)
            finally:
                prof.disable()

        a2wsgi.wsgi.WSGIResponder.wsgi = wsgi

    def stats(self) -> pstats.Stats | None:
        if not self.all:
            return None
        st = pstats.Stats(self.all[0])
        for p in self.all[1:]:
            st.add(p)
        return st


def run_pass(sim, port: int, body_file: Path, seconds: float, connections: int,  # type: ignore[no-untyped-def]
             main_prof: cProfile.Profile | None, workers: WorkerProfiles) -> dict:
    sim.ctx.config.port = port
    loops: list = []
    app = sim.asgi

    async def recording(scope, receive, send):  # type: ignore[no-untyped-def]
        if not loops:
            loops.append(asyncio.get_running_loop())
        await app(scope, receive, send)

    recording.app = app  # type: ignore[attr-defined]  # our protocol finds the front end: the inline path stays on

    server = uvicorn.Server(uvicorn_config(recording, sim.ctx.config))
    result: dict = {}
    # The event-loop thread's profiler is switched on and off from inside that thread (call_soon_threadsafe),
    # so it covers the measured wrk run only, like the worker threads' profiles.
    switched = threading.Event()

    def switch(on: bool) -> None:
        if main_prof is None:
            return
        switched.clear()

        def flip() -> None:
            main_prof.enable() if on else main_prof.disable()
            switched.set()

        loops[0].call_soon_threadsafe(flip)
        switched.wait(5)

    def drive() -> None:
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/lps"
        env = dict(os.environ, INSI_BODY=str(body_file))
        cmd = ["wrk", "-t1", f"-c{connections}", "--timeout", "10s", "-s", str(LUA)]
        subprocess.run([*cmd, "-d2s", url], env=env, capture_output=True)  # warm-up
        workers.active = main_prof is not None
        switch(True)
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = subprocess.run([*cmd, f"-d{seconds:g}s", url], env=env, capture_output=True, text=True).stdout
        ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        workers.active = False
        switch(False)
        result["out"] = out
        result["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        result["sys_s"] = ru1.ru_stime - ru0.ru_stime
        result["wall_s"] = t1 - t0
        server.should_exit = True

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    server.run()
    driver.join()
    m = re.search(r"(\d+) requests in", result["out"])
    result["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", result["out"])
    result["rps"] = float(m.group(1)) if m else 0.0
    return result


def cum(st: pstats.Stats, file_part: str, func: str) -> float:
    total = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if name == func and filename.replace(os.sep, "/").endswith(file_part):
            total += ct
    return total


def total(st: pstats.Stats) -> float:
    return sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--top", type=int, default=25, help="also print the N functions with most own time")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: install it with `apt-get install -y wrk`")

    workers = WorkerProfiles()
    workers.install()
    with tempfile.TemporaryDirectory(prefix="insi-profile-") as tmp:
        body_file = Path(tmp, "request.xml")
        body_file.write_text(PROBE.read_text(encoding="utf-8").replace("{message_id}", MESSAGE_ID), encoding="utf-8")
        cfg = SimConfig(data_dir=Path(tmp), workers=1)
        sim = build_simulator(load_spec("insi"), cfg)

        base = run_pass(sim, free_port(), body_file, args.seconds, args.connections, None, workers)
        cpu_us = base["cpu_s"] / max(base["requests"], 1) * 1e6
        print(f"no profiler: {base['rps']:.0f} req/s, {base['requests']} requests, process CPU"
              f" {cpu_us:.0f} µs/request (of which kernel {base['sys_s'] / max(base['requests'], 1) * 1e6:.0f} µs),"
              f" CPU use {base['cpu_s'] / base['wall_s'] * 100:.0f}% of one core")

        main_prof = cProfile.Profile(time.thread_time)
        prof = run_pass(sim, free_port(), body_file, args.seconds, args.connections, main_prof, workers)
        n = max(prof["requests"], 1)
        print(f"profiled: {prof['rps']:.0f} req/s, {prof['requests']} requests")

    ms = pstats.Stats(main_prof)
    ws = workers.stats()
    t_main, t_work = total(ms), total(ws) if ws else 0.0
    front, server, wire, model_py = ("simulators/core/http_front.py", "simulators/core/server.py",
                                     "simulators/insi/wire.py", "simulators/insi/model.py")
    # The inline path (server.py → BenchASGI.serve_inline) runs everything on the event-loop thread, the
    # journal's segment append included.
    inline = cum(ms, server, "on_message_complete")
    asgi = cum(ms, front, "__call__")  # requests that took the ASGI path (none when no fault rule is stored)
    facts = cum(ms, front, "_facts")
    parse_env = cum(ms, "simulators/core/soap.py", "parse_envelope")
    parse_xml = cum(ms, "simulators/core/xmlsafe.py", "parse_xml")
    exchange = cum(ms, front, "_exchange")
    run_fast = cum(ms, front, "_run_fast")
    parse_req = cum(ms, wire, "parse_request")
    headers = cum(ms, "simulators/core/teleservice.py", "parse_headers")
    checks = cum(ms, model_py, "check_headers") + cum(ms, model_py, "validated")
    search = cum(ms, model_py, "search_traits")
    resp = cum(ms, wire, "response_bytes")
    record = cum(ms, front, "_record")
    write = cum(ms, server, "_respond_inline")
    serve = cum(ms, front, "serve_inline")

    grand = t_main + t_work
    rows = [
        ("uvicorn + httptools + asyncio loop (outside the inline path and the ASGI app)", t_main - inline - asgi),
        ("ASGI path (requests not served inline)", asgi),
        ("inline: envelope parse and request facts (BenchASGI._facts)", facts),
        ("  of which parse_envelope", parse_env),
        ("  of which lxml parse (xmlsafe.parse_xml)", parse_xml),
        ("inline: journal entry (BenchASGI._exchange)", exchange),
        ("INSi: request reading (wire.parse_request)", parse_req),
        ("  of which header blocks (teleservice.parse_headers)", headers),
        ("INSi: header and input rules (check_headers, validated)", checks),
        ("INSi: personas matching (search_traits)", search),
        ("INSi: answer serialisation (response_bytes)", resp),
        ("INSi: rest of the handler", run_fast - parse_req - checks - search - resp),
        ("inline: journal segment append (BenchASGI._record)", record),
        ("inline: rest of serve_inline", serve - facts - exchange - run_fast - record),
        ("answer write (status line, headers, transport.write)", write),
        ("inline: rest of on_message_complete", inline - serve - write),
    ]
    print(f"\nprofiled CPU: event-loop thread {t_main / n * 1e6:.0f} µs/request, a2wsgi threads"
          f" {t_work / n * 1e6:.0f} µs/request\n")
    print(f"{'stage':<92} {'µs/req':>7} {'share':>6}")
    for label, value in rows:
        print(f"{label:<92} {value / n * 1e6:7.0f} {value / grand * 100:5.1f}%")
    if args.top:
        for title, st in (("event-loop thread", ms), ("a2wsgi worker threads", ws)):
            if st is None:
                continue
            buf = io.StringIO()
            st.stream = buf  # type: ignore[attr-defined]
            st.sort_stats("tottime").print_stats(args.top)
            print(f"\n--- top {args.top} by own time, {title} ---")
            print("\n".join(buf.getvalue().splitlines()[6:]))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
