"""INSi simulator throughput and latency vs WireMock serving the same canned response (issue 3).

Starts the INSi simulator the way users run it (`python -m segur_bench sim insi --data-dir <tmp>
--workers 2`: full semantics, journal on), fetches one real answer to a traits search (the probe
segur_bench/probes/insi-clerico.xml with a constant MessageID), then starts WireMock standalone with a
stub for POST /lps returning exactly that body and content type (set through POST /__admin/mappings),
once with its request journal on (its default) and once with `--no-request-journal`. The three run side
by side: each gets a 3 s wrk warm-up, then --rounds rounds in which every target, in an order rotated
from round to round and with its journal emptied first, gets one wrk run per connection count
(`--latency`, POST body from bench/insi_post.lua). Per target and connection count the run with the
median requests/s is reported, with the range over the rounds (this machine's speed drifts between
runs: interleaved rounds and medians keep that drift from favouring one side). The section
"## INSi throughput vs WireMock" of bench/RESULTS.md is replaced in place.

Setup (outside the repository; nothing is pip-installed):

    apt-get install -y wrk                                   # the load tool (wrk 4.x)
    mkdir -p /tmp/wiremock && cd /tmp/wiremock && npm install wiremock   # bundles WireMock's jar
    java -version                                            # Java 17 or later runs the jar

Run:

    .venv/bin/python bench/insi_vs_wiremock.py [--connections 10,50] [--duration 10] [--rounds 3]
        [--warmup 3] [--threads 2] [--workers 2] [--wiremock-jar PATH] [--no-write]

The jar is looked for in --wiremock-jar, $WIREMOCK_JAR, /tmp/wiremock/node_modules/wiremock/build/
and ./node_modules/wiremock/build/. Every child process (simulator and its workers, WireMock, wrk)
runs in its own process group and is stopped at the end, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "insi_post.lua"
PROBE = ROOT / "segur_bench" / "probes" / "insi-clerico.xml"
SECTION = "## INSi throughput vs WireMock"
MESSAGE_ID = "urn:uuid:3f2b8c1e-0d4a-4b6e-9a57-5c1d2e3f4a5b"
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
TARGET_TEXT = "INSi simulator, full semantics and journal on, at least matches WireMock's requests per second"
JAR_GLOBS = ["/tmp/wiremock/node_modules/wiremock/build/wiremock-standalone-*.jar",
             str(Path.cwd() / "node_modules/wiremock/build/wiremock-standalone-*.jar")]

INSTALL = {
    "wrk": "wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`",
    "java": "java not found: install a Java 17+ runtime, e.g. `apt-get install -y openjdk-17-jre-headless`",
    "jar": "WireMock jar not found: `mkdir -p /tmp/wiremock && cd /tmp/wiremock && npm install wiremock`"
           " (or pass --wiremock-jar / set WIREMOCK_JAR)",
}


# ------------------------------------------------------------------------------------ child processes
class Children:
    """Every process we start, each in its own session, so it can be stopped with all its descendants."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # uvicorn's worker processes share the group: make sure none outlives its parent.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM behaves like Ctrl-C: the finally blocks stop the children


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited during start-up (code {proc.returncode}); log:\n{_tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not answer {url} within {timeout:g} s; log:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


# ------------------------------------------------------------------------------------ prerequisites
def find_jar(explicit: str | None) -> Path | None:
    for candidate in [explicit, os.environ.get("WIREMOCK_JAR")]:
        if candidate:
            return Path(candidate) if Path(candidate).is_file() else None
    for pattern in JAR_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    return None


def check_tools(jar_arg: str | None) -> tuple[str, str, Path]:
    wrk, java, jar = shutil.which("wrk"), shutil.which("java"), find_jar(jar_arg)
    missing = [INSTALL[k] for k, v in (("wrk", wrk), ("java", java), ("jar", jar)) if not v]
    if missing:
        raise SystemExit("\n".join(missing))
    return wrk, java, jar  # type: ignore[return-value]


def java_version(java: str) -> str:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr.splitlines()
    m = re.search(r'version "([^"]+)"', out[0]) if out else None
    vendor = out[1].split("(")[0].strip() if len(out) > 1 else ""
    return f"{m.group(1) if m else out[0] if out else '?'} ({vendor})" if vendor else (m.group(1) if m else "?")


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    m = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return m.group(1).removeprefix("debian/") if m else "?"


# ------------------------------------------------------------------------------------ wrk
@dataclass
class Row:
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    raw: dict = field(default_factory=dict)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    """Requests/s, p50/p99 and error counts from wrk's --latency output (plus our Lua WRK_JSON line)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p50 and p99 and total):
        raise SystemExit(f"could not parse wrk's output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    exact = re.search(r"^WRK_JSON (\{.*\})$", out, re.M)
    return {
        "rps": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1)),
        "requests": int(total.group(1)), "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, sock.groups())) if sock else 0,
        "exact": json.loads(exact.group(1)) if exact else None,
    }


def run_wrk(children: Children, wrk: str, url: str, body_file: Path, threads: int, connections: int,
            seconds: float, latency: bool = True) -> str:
    cmd = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "-s", str(LUA)]
    if latency:
        cmd.append("--latency")
    cmd.append(url)
    proc = children.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, INSI_BODY=str(body_file)))
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        children.stop(proc)
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed (code {proc.returncode}):\n{out}")
    return out


def warm_up(children: Children, wrk: str, name: str, url: str, body_file: Path, args: argparse.Namespace,
            connections: int) -> int:
    """A short unmeasured load (JIT, caches, connection set-up); returns its request count."""
    print(f"[{name}] warm-up {args.warmup:g} s at {connections} connections …", file=sys.stderr)
    out = run_wrk(children, wrk, url, body_file, args.threads, connections, args.warmup, latency=False)
    warm = re.search(r"(\d+) requests in", out)
    return int(warm.group(1)) if warm else 0


def measure(children: Children, wrk: str, name: str, url: str, body_file: Path, args: argparse.Namespace,
            conns: list[int], round_no: int) -> list[Row]:
    """One measured wrk run per connection count."""
    rows = []
    for c in conns:
        print(f"[round {round_no}] [{name}] {c} connections, {args.duration:g} s …", file=sys.stderr)
        out = run_wrk(children, wrk, url, body_file, args.threads, c, args.duration)
        p = parse_wrk(out)
        rows.append(Row(name, c, p["rps"], p["p50_ms"], p["p99_ms"], p["requests"], p["non2xx"],
                        p["socket_errors"], p))
        print(f"    {p['rps']:.0f} req/s, p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms,"
              f" non-2xx {p['non2xx']}, socket errors {p['socket_errors']}", file=sys.stderr)
    return rows


def clear_journal(name: str, base: str) -> None:
    """Empty a target's request journal, so every round starts from the same state for both."""
    if name.startswith("INSi"):
        r = httpx.post(base + "/_bench/reset", json={"keep": ["faults", "clock", "state", "run"]}, timeout=60)
    else:
        r = httpx.delete(base + "/__admin/requests", timeout=60)
    if r.status_code != 200:
        raise SystemExit(f"could not clear the journal of {name} ({r.status_code}): {r.text[:500]}")


# ------------------------------------------------------------------------------------ targets
def start_insi(children: Children, tmp: Path, workers: int) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    data_dir = tmp / "insi-data"
    data_dir.mkdir()
    log = tmp / "insi.log"
    with open(log, "wb") as fh:
        proc = children.start([sys.executable, "-m", "segur_bench", "sim", "insi", "--port", str(port),
                               "--data-dir", str(data_dir), "--workers", str(workers)],
                              cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/_bench/health", proc, "the INSi simulator", log)
    return proc, base, data_dir


def start_wiremock(children: Children, java: str, jar: Path, tmp: Path, journal: bool,
                   canned: bytes, ctype: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    root = tmp / f"wiremock-{'journal' if journal else 'nojournal'}"
    root.mkdir()
    log = root / "wiremock.log"
    cmd = [java, "-jar", str(jar), "--port", str(port), "--disable-banner", "--root-dir", str(root)]
    if not journal:
        cmd.append("--no-request-journal")
    with open(log, "wb") as fh:
        proc = children.start(cmd, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/__admin/mappings", proc, "WireMock", log)
    stub = {"request": {"method": "POST", "url": "/lps"},
            "response": {"status": 200, "base64Body": base64.b64encode(canned).decode("ascii"),
                         "headers": {"Content-Type": ctype}}}
    r = httpx.post(base + "/__admin/mappings", json=stub, timeout=10)
    if r.status_code not in (200, 201):
        raise SystemExit(f"WireMock refused the stub ({r.status_code}): {r.text}")
    return proc, base


def wiremock_version(base: str, jar: Path) -> str:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        r = httpx.get(base + "/__admin/version", timeout=5)
        if r.status_code == 200:
            return r.json()["version"]
    m = re.search(r"standalone-([\d.]+)\.jar", jar.name)
    return m.group(1) if m else jar.name


def read_journal(base: str) -> float:
    """One journal query (which first ingests every exchange answered so far); its duration in seconds."""
    start = time.perf_counter()
    r = httpx.get(base + "/_bench/journal", params={"limit": 1}, timeout=600)
    if r.status_code != 200:
        raise SystemExit(f"journal query failed ({r.status_code}): {r.text[:500]}")
    return time.perf_counter() - start


def journal_rows(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "insi.sqlite3", timeout=10)) as db:
        return db.execute("SELECT count(*) FROM journal").fetchone()[0]


# ------------------------------------------------------------------------------------ report
def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def median_row(rows: list[Row]) -> Row:
    """The run with the median requests/s (the lower middle one for an even count)."""
    ordered = sorted(rows, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def report(rows: list[Row], conns: list[int], facts: dict, args: argparse.Namespace) -> str:
    insi, wm_j, wm_n = facts["names"]
    runs: dict[tuple[str, int], list[Row]] = {}
    for r in rows:
        runs.setdefault((r.target, r.connections), []).append(r)
    med = {key: median_row(v) for key, v in runs.items()}
    lines = [
        SECTION,
        "",
        f"`bench/insi_vs_wiremock.py` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()},"
        f" {os.cpu_count()} cores, Python {platform.python_version()}, Java {facts['java']},"
        f" WireMock {facts['wiremock']} (standalone jar, default settings), wrk {facts['wrk']}.",
        f"Load: wrk, {args.threads} threads, keep-alive, `--latency`; a real INSi traits search"
        f" (segur_bench/probes/insi-clerico.xml, {facts['request_bytes']} bytes, constant MessageID) POSTed to /lps"
        f" as `{CONTENT_TYPE}`. The INSi simulator runs as users run it (`python -m segur_bench sim insi --data-dir"
        f" <tmp> --workers {args.workers}`: SOAP parsing, header and input rules, personas matching, fault engine,"
        f" journal on, zero injected latency: each exchange is appended to the journal's segment file before its"
        f" answer leaves, and SQLite catches up at the next journal read); WireMock answers a stub for POST /lps"
        f" with the body the simulator returned ({facts['response_bytes']} bytes, same content type, checked byte"
        f" for byte).",
        f"Method: the three targets run side by side on the same machine as wrk, each warmed up"
        f" ({args.warmup:g} s), then {args.rounds} rounds; in each round every target (in a rotated order) gets"
        f" one {args.duration:g}-s run per connection count, its journal emptied first. The table gives, per"
        f" target and connection count, the run with the median requests/s and the range over the rounds:"
        f" this machine's speed varies from run to run (1-min load average {facts['loadavg']:.2f} at the start,"
        f" {facts.get('loadavg_end', float('nan')):.2f} at the end).",
        "",
        "| target | connections | req/s (median) | range over rounds | p50 (ms) | p99 (ms) | errors / non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target in (insi, wm_j, wm_n):
        for c in conns:
            if (target, c) not in med:
                continue
            r, all_runs = med[(target, c)], runs[(target, c)]
            lo, hi = min(x.rps for x in all_runs), max(x.rps for x in all_runs)
            errors = sum(x.socket_errors for x in all_runs), sum(x.non2xx for x in all_runs)
            lines.append(f"| {target} | {c} | {r.rps:,.0f} | {lo:,.0f}–{hi:,.0f} | {fmt_ms(r.p50_ms)}"
                         f" | {fmt_ms(r.p99_ms)} | {errors[0]} / {errors[1]} |")
    lines += ["", "Ratio INSi / WireMock, median requests per second:", ""]
    met = True
    ratios = []
    for c in conns:
        i = med[(insi, c)].rps
        parts = [f"{i / med[(wm, c)].rps:.2f} vs {wm}" for wm in (wm_j, wm_n) if (wm, c) in med]
        ratio = i / med[(wm_j, c)].rps
        ratios.append(ratio)
        met &= ratio >= 1.0
        wins = sum(a.rps >= b.rps for a, b in zip(runs[(insi, c)], runs[(wm_j, c)], strict=True))
        lines.append(f"- {c} connections: " + ", ".join(parts)
                     + f"; INSi ahead of WireMock (journal on) in {wins} of {len(runs[(insi, c)])} rounds")
    lines += [
        "",
        f"Journal check (last round): the simulator's SQLite journal holds {facts['journal_rows']:,} entries for"
        f" {facts['insi_responses']:,} responses wrk counted. The journal query made right after each INSi run"
        f" (it first ingests that run's exchanges into SQLite; not part of the requests/s above) took"
        f" {', '.join(f'{t:.1f}' for t in facts['ingest_s'])} s"
        + (f"; WireMock's journal holds {facts['wm_journal']:,} requests for {facts['wm_responses']:,}."
           if facts.get("wm_journal") is not None else "."),
        "",
        f"Target: {TARGET_TEXT} (median over the rounds, compared with WireMock, journal on, its default, at every"
        f" connection count) — ratios {', '.join(f'{r:.2f}' for r in ratios)} ({'met' if met else 'NOT met'}).",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="10,50", help="comma-separated wrk connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (targets interleaved in each)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up per target")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="INSi simulator worker processes")
    parser.add_argument("--wiremock-jar", default=None, help="path to wiremock-standalone-*.jar")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args()
    conns = sorted({int(c) for c in args.connections.split(",") if c.strip()})

    wrk, java, jar = check_tools(args.wiremock_jar)
    # Explicit handlers: SIGINT may arrive ignored (e.g. started in the background by a shell).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    children = Children()
    names = (f"INSi simulator ({args.workers} workers, journal on)", "WireMock (journal on)",
             "WireMock (--no-request-journal)")
    facts: dict = {"names": names, "java": java_version(java), "wrk": wrk_version(wrk),
                   "loadavg": os.getloadavg()[0]}
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="insi-vs-wiremock-") as tmpname:
            tmp = Path(tmpname)
            request = PROBE.read_text(encoding="utf-8").replace("{message_id}", MESSAGE_ID).encode("utf-8")
            body_file = tmp / "request.xml"
            body_file.write_bytes(request)
            facts["request_bytes"] = len(request)

            # The INSi simulator gives one real answer, which WireMock then serves as its canned response.
            print("starting the INSi simulator and WireMock (journal on, then off) …", file=sys.stderr)
            _, insi_base, data_dir = start_insi(children, tmp, args.workers)
            r = httpx.post(insi_base + "/lps", content=request, headers={"Content-Type": CONTENT_TYPE}, timeout=10)
            if r.status_code != 200 or b"<" not in r.content or b"CodeCR>00<" not in r.content.replace(b" ", b""):
                raise SystemExit(f"unexpected INSi answer {r.status_code}:\n{r.text[:2000]}")
            canned, ctype = r.content, r.headers["content-type"]
            facts["response_bytes"] = len(canned)
            bases = {names[0]: insi_base}
            for journal, name in ((True, names[1]), (False, names[2])):
                _, base = start_wiremock(children, java, jar, tmp, journal, canned, ctype)
                facts.setdefault("wiremock", wiremock_version(base, jar))
                check = httpx.post(base + "/lps", content=request, headers={"Content-Type": CONTENT_TYPE})
                if check.status_code != 200 or check.content != canned or check.headers["content-type"] != ctype:
                    raise SystemExit(f"WireMock's canned answer differs from the simulator's ({check.status_code})")
                bases[name] = base

            for name in names:
                warm_up(children, wrk, name, bases[name] + "/lps", body_file, args, max(conns))
                if name == names[0]:
                    read_journal(bases[name])  # catch up now, not during the next target's warm-up
            for round_no in range(1, args.rounds + 1):
                shift = (round_no - 1) % len(names)
                for name in names[shift:] + names[:shift]:
                    clear_journal(name, bases[name])
                    measured = measure(children, wrk, name, bases[name] + "/lps", body_file, args, conns, round_no)
                    rows += measured
                    if name == names[0]:
                        # The simulator journals each exchange by appending it to a segment file; SQLite catches
                        # up at the next journal read (or when the load stops). Read now, so that catching up
                        # never runs during another target's measurement, and time what it costs.
                        ingest_s = read_journal(bases[name])
                        facts.setdefault("ingest_s", []).append(ingest_s)
                        if round_no == args.rounds:
                            facts["journal_rows"] = journal_rows(data_dir)
                            facts["insi_responses"] = sum(m.requests for m in measured)
                    if round_no == args.rounds and name == names[1]:
                        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                            facts["wm_journal"] = httpx.get(bases[name] + "/__admin/requests", params={"limit": 1},
                                                            timeout=30).json()["meta"]["total"]
                            facts["wm_responses"] = sum(m.requests for m in measured)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the child processes …", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        children.stop_all()

    facts["loadavg_end"] = os.getloadavg()[0]
    block = report(rows, conns, facts, args)
    publish(SECTION, block, write=not args.no_write)


if __name__ == "__main__":
    main()
