"""Reference LGC: response time of user actions while 3-s national-service calls are in flight.

Starts INSi, ApCV, DMP and PSC (`segur-bench up --no-lgc`, child processes) and the reference LGC
(`python -m reference_lgc`, its own process), logs in through the PSC simulator's page with a plain HTTP
client, injects 3 s of latency on every INSi and DMP call, then several virtual users act for a while:
open patient files (each opening of an unretrieved identity starts a 3-s INSi call), search the patient list,
poll status elements as the browser does, record consent. Every action's response time is recorded, and the
number of service calls in flight is sampled from the LGC's base. Target: p95 ≤ 100 ms.

    .venv/bin/python bench/lgc_responsiveness.py [--seconds 20] [--users 4] [--no-write]

Writes the section "## Reference LGC: UI response time during 3-s calls" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Reference LGC: UI response time during 3-s calls"
TARGET_MS = 100.0
SIMS = ("insi", "apcv", "dmp", "psc")
REALM = "/auth/realms/esante-wallet"
BASE = {"insi": "/lps", "apcv": "/apcv", "dmp": "/si-dmp-server/v2/services", "psc": REALM}
CLIENT = ("segur-bench-lgc-bench", "bench-secret")
GP = "899700366240"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"{what} did not answer on {url}")


def start(tmp: Path) -> tuple[subprocess.Popen, subprocess.Popen, dict[str, str], str]:
    ports = {s: free_port() for s in SIMS}
    lgc_port = free_port()
    lgc_url = f"http://127.0.0.1:{lgc_port}"
    client = (f'{{ client_id = "{CLIENT[0]}", client_secret = "{CLIENT[1]}", '
              f'redirect_uris = ["{lgc_url}/auth/callback"], post_logout_redirect_uris = ["{lgc_url}/"] }}')
    # Plain HTTP, no front door: PSC would otherwise announce its HTTPS issuer, which this HTTP client and the
    # LGC's settings below do not trust (what is measured is the LGC's responsiveness, not TLS).
    (tmp / "bench.toml").write_text(f'data_dir = "{tmp / "sims"}"\ntls = false\nfront_port = 0\n[ports]\n'
                                    + "".join(f"{s} = {p}\n" for s, p in ports.items())
                                    + f"[settings.psc]\nclients = [{client}]\n")
    sims = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(tmp / "bench.toml"), "up",
                             "--only", ",".join(SIMS), "--no-lgc"], cwd=os.environ.get("SEGUR_BENCH_SIMS_ROOT", ROOT),
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "sims.log", "w"))  # noqa: SIM115
    urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    for s, u in urls.items():
        wait(u + "/_bench/health", sims, s)
    lines = [f"port = {lgc_port}", f'data_dir = "{tmp / "lgc"}"', "[psc]", f'issuer = "{urls["psc"]}{REALM}"',
             f'client_id = "{CLIENT[0]}"', f'client_secret = "{CLIENT[1]}"']
    for s in ("insi", "apcv", "dmp"):
        lines += [f"[services.{s}]", f'url = "{urls[s]}{BASE[s]}"', "timeout = 10", "retries = 0"]
    (tmp / "lgc.toml").write_text("\n".join(lines) + "\n")
    lgc = subprocess.Popen([sys.executable, "-m", "reference_lgc", "--config", str(tmp / "lgc.toml")], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=open(tmp / "lgc.log", "w"))  # noqa: SIM115
    wait(lgc_url + "/sante", lgc, "reference LGC")
    return sims, lgc, urls, lgc_url


def csrf_token(page: httpx.Response) -> str:
    """The anti-forgery token of an LGC form (every POST to the LGC must carry its session's token)."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if not found:
        sys.exit(f"no csrf_token in the form of {page.url}")
    return found.group(1)


def login(lgc_url: str) -> tuple[httpx.Client, str]:
    """Log in as the flagship physician through the PSC simulator's login page (plain HTTP, like a browser);
    returns the client and the session's anti-forgery token."""
    http = httpx.Client(base_url=lgc_url, follow_redirects=True, timeout=30)
    token = csrf_token(http.get("/connexion"))
    page = http.post("/connexion", data={"next": "", "csrf_token": token})
    action = re.search(r'<form method="post" action="([^"]+)" id="connexion"', page.text)
    moyen = re.search(r'name="moyen" value="([^"]+)"', page.text)
    if not action or not moyen:
        sys.exit("PSC login page not recognised")
    target = httpx.URL(str(page.url)).join(action.group(1).replace("&amp;", "&"))
    resp = http.post(target, data={"national_id": GP, "moyen": moyen.group(1), "decision": "approve"})
    if resp.url.path.endswith("/premiere-connexion"):
        user = re.search(r'name="user_id" value="(\d+)"', resp.text)
        resp = http.post("/premiere-connexion", data={"mode": "link", "user_id": user.group(1),
                                                      "csrf_token": token})
    if "/information" in resp.url.path:
        resp = http.post("/information", data={"compris": "oui", "next": "", "csrf_token": token})
    if not resp.url.path.startswith("/patients"):
        sys.exit(f"login failed, ended on {resp.url}")
    return http, token


def fault(url: str, service: str) -> None:
    httpx.post(url + "/_bench/faults", json={"service": service, "operation": "*",
                                             "effect": {"type": "latency", "ms": 3000}}).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=4, help="virtual users acting at once")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lgc-bench-") as d:
        tmp = Path(d)
        sims, lgc, urls, lgc_url = start(tmp)
        try:
            return run(args, tmp, urls, lgc_url)
        finally:
            for proc in (lgc, sims):
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def run(args: argparse.Namespace, tmp: Path, urls: dict[str, str], lgc_url: str) -> int:
    http, token = login(lgc_url)
    cookies = dict(http.cookies)
    for s in ("insi", "dmp"):
        fault(urls[s], s)
    # Patients whose identity INSi does not find (01): every opening starts a new 3-s INSi call.
    ids = []
    for i in range(12):
        resp = http.post("/patients/nouveau", data={
            "birth_name": f"BENCH{chr(65 + i)}", "first_names": "CHARGE", "sex": "F", "birth_date": "1970-01-01",
            "birthplace_cog": "75056", "csrf_token": token})
        ids.append(int(re.search(r"/patients/(\d+)", str(resp.url)).group(1)))
    samples: dict[str, list[float]] = {"ouvrir un dossier": [], "liste / recherche": [], "statut d'un appel": [],
                                       "enregistrer un consentement": []}
    in_flight: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()
    db = tmp / "lgc" / "lgc.sqlite3"

    def sampler() -> None:
        conn = sqlite3.connect(db)
        while not stop.is_set():
            in_flight.append(conn.execute("SELECT count(*) FROM service_calls WHERE status='en_cours'").fetchone()[0])
            time.sleep(0.2)
        conn.close()

    def user(n: int) -> None:
        client = httpx.Client(base_url=lgc_url, cookies=cookies, timeout=30)
        k = 0
        last = ""
        while not stop.is_set():
            pid = ids[(n * 3 + k) % len(ids)]
            for kind, method, path, data in (
                ("ouvrir un dossier", "GET", f"/patients/{pid}", None),
                ("liste / recherche", "GET", f"/patients?nom=BENCH{chr(65 + k % 12)}", None),
                ("statut d'un appel", "GET", "/appels/LAST", None),
                ("enregistrer un consentement", "POST", f"/patients/{pid}/consentement",
                 {"consultation": "on", "episode": "Banc de charge", "csrf_token": token}),
            ):
                if path == "/appels/LAST":
                    m = re.search(r'data-poll="(/appels/\d+)"', last)
                    if not m:
                        continue
                    path = m.group(1)
                t0 = time.perf_counter()
                resp = client.request(method, path, data=data, follow_redirects=False)
                dt = (time.perf_counter() - t0) * 1000
                if resp.status_code >= 400:
                    raise SystemExit(f"{method} {path} answered {resp.status_code}")
                if kind == "ouvrir un dossier":
                    last = resp.text
                with lock:
                    samples[kind].append(dt)
                time.sleep(0.05)  # a person does not click faster than this
            k += 1

    threads = [threading.Thread(target=sampler)] + [threading.Thread(target=user, args=(n,))
                                                    for n in range(args.users)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    insi_calls = len(httpx.get(urls["insi"] + "/_bench/journal").json()["entries"])
    everything = sorted(x for v in samples.values() for x in v)
    block = report(args, samples, everything, in_flight, wall, insi_calls)
    publish(SECTION, block, write=not args.no_write)
    return 0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def report(args, samples, everything, in_flight, wall, insi_calls) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    p95 = pct(everything, 95)
    lines = [
        SECTION, "",
        f"`bench/lgc_responsiveness.py` — {now}, {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. Simulators INSi, ApCV, DMP, PSC as `segur-bench up` children; the reference "
        f"LGC in its own process (uvicorn, 1 process); clients: {args.users} virtual users (httpx, 50 ms between "
        f"actions, logged in through the PSC simulator's page), all on the same machine. Every INSi and DMP call "
        f"delayed by 3 s (fault rule `latency 3000 ms`); 12 patients whose identity INSi does not find, so each "
        f"opening starts a new 3-s INSi call. {wall:.0f} s of load; {insi_calls} INSi calls answered.",
        "",
        "| action | count | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, xs in samples.items():
        if xs:
            lines.append(f"| {kind} | {len(xs)} | {pct(xs, 50):.1f} | {pct(xs, 95):.1f} | {pct(xs, 99):.1f} | "
                         f"{max(xs):.1f} |")
    lines.append(f"| **all actions** | {len(everything)} | {pct(everything, 50):.1f} | {p95:.1f} | "
                 f"{pct(everything, 99):.1f} | {max(everything):.1f} |")
    lines += ["", f"Service calls in flight in the LGC while the users acted (sampled every 200 ms): mean "
                  f"{statistics.mean(in_flight):.1f}, max {max(in_flight)}.", "",
              f"Target: p95 ≤ {TARGET_MS:.0f} ms for user actions while 3-s calls are in flight — p95 {p95:.1f} ms "
              f"({'met' if p95 <= TARGET_MS else 'NOT met'}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
