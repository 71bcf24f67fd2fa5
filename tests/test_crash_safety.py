"""Crash safety (issue 22): a simulator killed with SIGKILL mid-stream and restarted on the same data directory
loses nothing it acknowledged, doubles nothing, and its journal has one entry per acknowledged exchange.

Real `segur-bench sim` processes on free ports, each with its own data directory; independent clients (httpx with
hand-built ITI-41 MTOM, stdlib smtplib and imaplib) stream submissions, each with a unique marker (DMP uniqueId,
mail Subject/Message-ID, IMAP keyword flag), and record every acknowledgement. The whole process group is killed
(a) at a random moment, (b) by the client thread right after it got an acknowledgement, (c) inside journal
ingestion: after a burst of large exchanges that a kill left un-ingested, the restarted process's journal reads
(control API, in a loop beside a stream) have megabytes of a dead writer's segment to bring into SQLite; killed
there at a random moment, then — by a test-only audit hook (CRASH_HOOK below) — exactly while a frame is decoded
inside an ingest transaction, just after a finished segment was removed, and just before.
After the last restart: every acknowledged item stored once (DMP: the registry's state; MSSanté: the mailboxes),
nothing stored twice, one journal entry per acknowledged exchange (none twice), no dead segment left behind.
Randomness is seeded (CRASH_SAFETY_SEED to replay); the seed, every kill moment and what each kill left on disk
are printed on failure.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import os
import random
import re
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from dmp.messages import A_ITI41, CLERICO, cda, envelope, mtom, pnr
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from simulators.core.journal_log import writer_gone

ROOT = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("CRASH_SAFETY_SEED") or random.SystemRandom().randrange(1, 1_000_000))
DMP_BASE = "/si-dmp-server/v2/services"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
ACK_KILL_WITHIN_S = 3.0
BIG = 600 * 1024  # bytes of a "large" exchange: a burst of them outruns the background ingester (1 MB per 0.25 s)

ISSUER = "http://psc.crash.test/auth/realms/esante-wallet"
KEY = RSAKey.generate_key(2048, private=True)
KEY.ensure_kid()
KIT = "899700366240"
KIT_BAL = "kit.doc0036624@medecin.mssante.fr"
ROBERT_BAL = "robert.specialiste0021889@medecin.mssante.fr"


# Test instrumentation, written as sitecustomize.py into a directory put on PYTHONPATH of the simulator processes
# this file starts (never installed, no hook in the simulators): with SEGUR_BENCH_TEST_CRASH_AT set, the process
# SIGKILLs its own process group at an exact point of journal ingestion (Journal._consume_segment): at the Nth
# frame decoded (decode:N, inside an ingest transaction, before its COMMIT), just before a dead writer's segment
# with frames still to ingest is removed (unlink) or just after (unlinked) — windows a kill from outside hits
# only by chance.
CRASH_HOOK = """
import os
import signal
import sys

_AT = os.environ.get("SEGUR_BENCH_TEST_CRASH_AT", "")
if _AT:
    _KIND, _, _N = _AT.partition(":")
    _LEFT = [int(_N or 1)]
    # the segment whose removal counts: the one with the most frames still to ingest when the process started, so
    # that the transaction just before its removal inserted rows
    _SEGMENTS = set(os.environ.get("SEGUR_BENCH_TEST_CRASH_SEGMENTS", "").split(","))

    def _ingesting():
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name == "_consume_segment":
                return True
            frame = frame.f_back
        return False

    def _crash_hook(event, args):
        if _KIND == "decode" and event == "marshal.loads":
            what = "decoding a frame"
        elif (_KIND in ("unlink", "unlinked") and event == "os.remove"
              and os.path.basename(str(args[0])) in _SEGMENTS):
            what = "about to remove " + os.path.basename(str(args[0]))
        else:
            return
        if _LEFT[0] <= 0 or not _ingesting():
            return
        _LEFT[0] -= 1
        if _LEFT[0] > 0:
            return
        if _KIND == "unlinked":  # the audit event comes before the removal: carry it out, die right after it
            os.unlink(args[0])
            what = "just removed " + os.path.basename(str(args[0]))
        with open(os.environ["SEGUR_BENCH_TEST_CRASH_NOTE"], "a") as note:
            note.write(f"{_AT}: SIGKILL while {what} in Journal._consume_segment\\n")
        os.killpg(0, signal.SIGKILL)

    sys.addaudithook(_crash_hook)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(national_id: str = KIT) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": f"f:crash:{national_id}", "aud": "segur-bench-lgc", "exp": now + 3600, "iat": now,
            "azp": "segur-bench-lgc", "scope": "openid scope_all", "preferred_username": national_id}
    return jwt.encode({"alg": "RS256", "kid": KEY.kid}, body, KEY)


# ------------------------------------------------------------------------------------------ bookkeeping


@dataclass
class Ledger:
    """What the clients sent and what the simulator acknowledged, per stream; and the story, for failures."""

    sent: dict[str, list[str]] = field(default_factory=dict)
    acked: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # refusals or failures while the simulator was alive
    story: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, line: str) -> None:
        with self.lock:
            self.story.append(line)

    def send(self, stream: str, marker: str) -> None:
        with self.lock:
            self.sent.setdefault(stream, []).append(marker)

    def ack(self, stream: str, marker: str) -> int:
        with self.lock:
            self.acked.setdefault(stream, []).append(marker)
            return len(self.acked[stream])

    def problem(self, line: str) -> None:
        with self.lock:
            self.problems.append(line)
            self.story.append("PROBLEM " + line)

    def context(self) -> str:
        counts = ", ".join(f"{s}: {len(self.acked.get(s, []))} acked of {len(m)} sent" for s, m in self.sent.items())
        return f"seed {SEED} (CRASH_SAFETY_SEED={SEED} replays it); {counts}\n" + "\n".join(self.story)


class Sim:
    """One `segur-bench sim` process in its own process group, restarted on the same data directory."""

    def __init__(self, name: str, tmp: Path, ledger: Ledger, sets: dict[str, object],
                 ready_ports: tuple[int, ...] = ()) -> None:
        self.name = name
        self.ledger = ledger
        self.data_dir = tmp / f"{name}-data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / f"{name}.toml"
        self.config.write_text(f'data_dir = "{self.data_dir}"\nfront_port = 0\n')
        self.log = tmp / f"{name}.log"
        self.sets = sets
        self.ready_ports = ready_ports
        self.proc: subprocess.Popen | None = None
        self.killing = threading.Event()  # set before the signal: a client that loses its connection knows why
        self.phase_started = 0.0
        self._lock = threading.Lock()
        self.hook_dir = tmp / "crash-hook"
        self.hook_dir.mkdir(exist_ok=True)
        (self.hook_dir / "sitecustomize.py").write_text(CRASH_HOOK)
        self.note = tmp / f"{name}-crash-notes.txt"
        self.armed: str | None = None  # the ingestion point at which the running process kills itself

    def start(self, crash_at: str | None = None) -> None:
        args = [sys.executable, "-m", "segur_bench", "--config", str(self.config), "sim", self.name,
                "--port", str(self.port), "--no-tls", "--data-dir", str(self.data_dir), "--workers", "1"]
        for key, value in self.sets.items():
            args += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        env = dict(os.environ)
        for name in ("SEGUR_BENCH_TEST_CRASH_AT", "SEGUR_BENCH_TEST_CRASH_SEGMENTS"):
            env.pop(name, None)
        if crash_at:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.hook_dir), env.get("PYTHONPATH")]))
            env["SEGUR_BENCH_TEST_CRASH_AT"] = crash_at
            env["SEGUR_BENCH_TEST_CRASH_NOTE"] = str(self.note)
            env["SEGUR_BENCH_TEST_CRASH_SEGMENTS"] = ",".join(self.pending_segments()[:1])
        self.armed = crash_at
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        launched = time.monotonic()
        deadline = launched + 40
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(self.url + "/_bench/health", timeout=1).raise_for_status()
                for port in self.ready_ports:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except (httpx.HTTPError, OSError):
                time.sleep(0.05)
        else:
            pytest.fail(f"{self.name} did not answer:\n{self.log.read_text()[-3000:]}")
        self.killing.clear()
        self.phase_started = time.monotonic()
        self.ledger.note(f"  {self.name} (re)started in {self.phase_started - launched:.2f}s")

    def kill(self, why: str) -> bool:
        """SIGKILL the whole process group (once per start); the moment and the reason go to the story."""
        with self._lock:
            if self.proc is None or self.proc.poll() is not None or self.killing.is_set():
                return False
            self.killing.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            at = time.monotonic() - self.phase_started
            self.proc.wait(10)
        self.ledger.note(f"  {self.name} SIGKILL at +{at:.3f}s: {why}")
        return True

    def gone(self) -> bool:
        """Whether the simulator was killed (by the test, or by its armed hook): a lost connection is expected."""
        if self.killing.is_set():
            return True
        if self.armed and self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
                return True
        return False

    def self_kill_watch(self, fallback_s: float = 8.0) -> Callable[[], None]:
        """Waits for the armed process to kill itself; kills it after `fallback_s` (a hook that never fired)."""

        def run() -> None:
            assert self.proc is not None
            try:
                self.proc.wait(fallback_s)
            except subprocess.TimeoutExpired:
                self.kill(f"FALLBACK: the {self.armed} hook did not fire within {fallback_s}s")
                self.ledger.problem(f"{self.name}: the crash hook {self.armed} did not fire")
                return
            self.killing.set()
            lines = self.note.read_text().splitlines() if self.note.exists() else []
            what = lines[-1] if lines else f"exited with {self.proc.returncode}, no note from the hook"
            self.ledger.note(f"  {self.name} killed itself at +{time.monotonic() - self.phase_started:.3f}s: {what}")

        return run

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def dead_segments(self) -> list[str]:
        """Journal segments whose writer is gone: a journal read ingests and removes them (journal_log.py)."""
        seg_dir = self.data_dir / f"{self.name}.sqlite3-jlog"
        return [p.name for p in sorted(seg_dir.glob("*.seg")) if writer_gone(p)] if seg_dir.is_dir() else []

    def segments(self) -> tuple[dict[str, tuple[int | None, int]], str | None]:
        """Each journal segment's size (None: removed) and the offset SQLite says was ingested; an error."""
        db = self.data_dir / f"{self.name}.sqlite3"
        seg_dir = self.data_dir / f"{self.name}.sqlite3-jlog"
        sizes = {p.name: p.stat().st_size for p in seg_dir.glob("*.seg")} if seg_dir.is_dir() else {}
        offsets, error = {}, None
        try:
            conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
            try:
                offsets = dict(conn.execute("SELECT name, ingested FROM journal_segments").fetchall())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            error = f"journal state unreadable ({exc})"
        return {name: (sizes.get(name), offsets.get(name, 0)) for name in sorted(set(sizes) | set(offsets))}, error

    def pending_segments(self) -> list[str]:
        """Segments (of stopped processes, between phases) with frames not yet ingested, the most first."""
        found, _ = self.segments()
        pending = {name: size - done for name, (size, done) in found.items() if size is not None and done < size}
        return sorted(pending, key=pending.__getitem__, reverse=True)

    def left_on_disk(self) -> str:
        """What the kill left of the journal: each segment's size against the offset SQLite says was ingested."""
        found, error = self.segments()
        if error:
            return error
        parts = []
        for name, (size, done) in found.items():
            if size is None:
                parts.append(f"{name}: removed, its offset row left (killed after the removal)")
            elif done >= size:
                parts.append(f"{name}: {size} B all ingested, not yet removed (killed after COMMIT)")
            elif done > 0:
                parts.append(f"{name}: {done}/{size} B ingested (partly: killed mid-ingestion or before the next)")
            else:
                parts.append(f"{name}: {size} B not ingested")
        return "; ".join(parts) or "no segment"


def due(kill_after: int | None, acked: int, started: float) -> bool:
    """Whether a client that kills after its `kill_after`-th acknowledgement does it now (after fewer on a slow
    machine: the phase must not outlast the test's time budget)."""
    return kill_after is not None and (acked >= kill_after or time.monotonic() - started > ACK_KILL_WITHIN_S)


def run_threads(*targets: Callable[[], None], timeout: float = 60) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a client thread hung"


def killer_at_random(sim: Sim, rng: random.Random, low: float, high: float) -> Callable[[], None]:
    delay = rng.uniform(low, high)

    def run() -> None:
        time.sleep(delay)
        sim.kill(f"random moment (drawn {delay:.3f}s)")

    return run


def journal_reader(sim: Sim, operations: list[str], first: threading.Event,
                   rng: random.Random) -> Callable[[], None]:
    """A control-API reader that makes the simulator ingest its journal segments (each query first catches up),
    in a loop until the simulator is gone; `first` is set as the first read leaves."""

    def read() -> None:
        with httpx.Client(timeout=15) as http:
            while not sim.killing.is_set():
                first.set()
                try:
                    http.get(sim.url + "/_bench/journal", params={"operation": rng.choice(operations), "limit": 1})
                except httpx.HTTPError:
                    return
                time.sleep(rng.uniform(0, 0.05))

    return read


def killer_after_first_read(sim: Sim, first: threading.Event, delay: float) -> Callable[[], None]:
    def run() -> None:
        first.wait(10)
        time.sleep(delay)
        sim.kill(f"{delay * 1000:.0f} ms into the journal reads (ingestion)")

    return run


# ------------------------------------------------------------------------------------------------- DMP


def dmp_document(uid: str, size: int, rng: random.Random) -> bytes:
    doc = cda(uid)
    if size:  # a large PDF body: the exchange's frame in the journal segment grows with it
        doc = doc.replace(b"JVBERi0xLjQKJSVFT0YK", base64.b64encode(rng.randbytes(size * 3 // 4)))
    return doc


def dmp_stream(sim: Sim, ledger: Ledger, rng: random.Random, phase: int, *, size: int = 0,
               kill_after: int | None = None, limit: int = 400) -> Callable[[], None]:
    stream = "dmp ITI-41"

    def run() -> None:
        started = time.monotonic()
        with httpx.Client(timeout=15) as http:
            for n in range(limit):
                if sim.killing.is_set():
                    return
                uid = f"1.2.250.1.999.{SEED}.{phase}.{n}"
                body, ctype = mtom(envelope(A_ITI41, "repository", pnr(uid, mtom=True), message_id=str(uuid.uuid4())),
                                   dmp_document(uid, size, rng))
                ledger.send(stream, uid)
                try:
                    resp = http.post(sim.url + f"{DMP_BASE}/repository", content=body, headers={"Content-Type": ctype})
                except httpx.HTTPError as exc:
                    if not sim.gone():
                        ledger.problem(f"{stream} {uid}: {exc!r} while the simulator was alive")
                    return
                if resp.status_code != 200 or SUCCESS not in resp.text[:4000]:
                    ledger.problem(f"{stream} {uid}: refused {resp.status_code} {resp.text[:400]}")
                    return
                ledger.ack(stream, uid)
                acked = n + 1  # every earlier one was acknowledged (any other answer ends the stream)
                if due(kill_after, acked, started):
                    sim.kill(f"right after the ack of {uid} ({acked} acked in this phase)")
                    return

    return run


def test_dmp_iti41_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    ledger = Ledger()
    sim = Sim("dmp", tmp_path, ledger, {})
    first = threading.Event()
    try:
        phase = 0

        def begin(label: str, crash_at: str | None = None) -> None:
            nonlocal phase
            phase += 1
            sim.start(crash_at)
            ledger.note(f"dmp phase {phase}: {label}")

        def after() -> None:
            ledger.note(f"    left: {sim.left_on_disk()}")

        begin("stream, kill at a random moment")
        run_threads(dmp_stream(sim, ledger, rng, phase), killer_at_random(sim, rng, 0.3, 1.0))
        after()
        # (b) right after an ack, in a burst of large documents: killed before the background ingester catches up,
        # it leaves the restarted processes' reads (c) megabytes of a dead writer's segment to bring in.
        begin(f"burst of {BIG // 1024} kB documents, the client kills right after an ack")
        run_threads(dmp_stream(sim, ledger, rng, phase, size=BIG, kill_after=rng.randint(12, 20)))
        after()
        for crash_at in (None, f"decode:{rng.randint(1, 4)}", "unlinked", "unlink"):
            if crash_at and not sim.pending_segments():  # the removal hooks want a segment with frames to ingest
                begin("no segment left to ingest: the client kills right after its first ack")
                run_threads(dmp_stream(sim, ledger, rng, phase, kill_after=1))
                after()
            first.clear()
            begin("journal reads ingest dead writers' segments while a stream goes on; "
                  + (f"the process kills itself at {crash_at}" if crash_at else "kill at a random moment inside"),
                  crash_at)
            done = sim.self_kill_watch() if crash_at else killer_after_first_read(sim, first, rng.uniform(0, 0.35))
            run_threads(journal_reader(sim, ["ITI-41"], first, rng), done,
                        dmp_stream(sim, ledger, rng, phase, size=BIG // 8))
            after()
        sim.start()
        ledger.note("dmp: final restart, checks")

        with httpx.Client(timeout=60) as http:
            state = http.get(sim.url + "/_bench/state", params={"ins": CLERICO, "limit": 10_000}).json()["state"]
            journal = http.get(sim.url + "/_bench/journal", params={"operation": "ITI-41"}).json()["entries"]
        assert not sim.dead_segments(), f"segments left after a journal read: {sim.left_on_disk()}\n{ledger.context()}"
        stored = Counter(d["unique_id"] for d in state["documents"])
        check(ledger, "dmp ITI-41", stored, journal, lambda e: re.findall(rb'value="(1\.2\.250\.1\.999\.[0-9.]+)"',
                                                                         body_of(e)), ok_status=200,
              ours=rf"1\.2\.250\.1\.999\.{SEED}\.\d+\.\d+")
    finally:
        sim.stop()
        print(ledger.context())


# --------------------------------------------------------------------------------------------- MSSanté


def mail_ports() -> dict[str, int]:
    return {"smtp": free_port(), "imap": free_port(), "smtps": free_port(), "imaps": free_port()}


def message(marker: str, size: int, rng: random.Random, sender: str, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"crash-safety {marker}"
    msg["Message-ID"] = f"<{marker}@lgc.test>"
    msg.set_content(f"Message {marker} du test de robustesse.")
    if size:
        msg.add_attachment(rng.randbytes(size), maintype="application", subtype="pdf", filename=f"{marker}.pdf")
    return msg


class MailStreams:
    def __init__(self, sim: Sim, ports: dict[str, int], ledger: Ledger, rng: random.Random) -> None:
        self.sim, self.ports, self.ledger, self.rng = sim, ports, ledger, rng
        self.ca: ssl.SSLContext | None = None

    def refresh_ca(self) -> None:
        pem = httpx.get(self.sim.url + "/_bench/mss/ca.pem", timeout=10).text
        self.ca = ssl.create_default_context(cadata=pem)

    def _lost(self, stream: str, marker: str | None, exc: BaseException) -> None:
        if not self.sim.gone():
            self.ledger.problem(f"{stream} {marker}: {exc!r} while the simulator was alive")

    def smtp(self, phase: int, *, size: int = 0, kill_after: int | None = None, limit: int = 400) -> Callable:
        stream = "mss SMTP"

        def run() -> None:
            marker = None
            try:
                with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=15) as client:
                    client.ehlo("lgc.test")
                    client.starttls(context=self.ca)
                    client.ehlo("lgc.test")
                    client.auth("XOAUTH2", lambda challenge=None: (
                        f"user={KIT_BAL}\x01auth=Bearer {token()}\x01\x01" if challenge is None else ""))
                    started = time.monotonic()
                    for n in range(limit):
                        if self.sim.killing.is_set():
                            return
                        marker = f"cs{SEED}-s{phase}-{n}"
                        msg = message(marker, size, self.rng, KIT_BAL, ROBERT_BAL)
                        self.ledger.send(stream, marker)
                        refused = client.send_message(msg)
                        if refused:
                            self.ledger.problem(f"{stream} {marker}: recipients refused {refused}")
                            return
                        self.ledger.ack(stream, marker)
                        acked = n + 1
                        if due(kill_after, acked, started):
                            self.sim.kill(f"right after the 250 of {marker} ({acked} acked in this phase)")
                            return
            except smtplib.SMTPResponseException as exc:
                if not self.sim.gone():
                    self.ledger.problem(f"{stream} {marker}: refused {exc.smtp_code} {exc.smtp_error!r}")
            except (smtplib.SMTPException, OSError) as exc:
                self._lost(stream, marker, exc)

        return run

    def imap(self, phase: int, *, kill_after: int | None = None, limit: int = 400) -> Callable:
        stream = "mss IMAP APPEND"

        def run() -> None:
            marker = None
            try:
                client = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=15)
                try:
                    client.starttls(ssl_context=self.ca)
                    payload = f"user={KIT_BAL}\x01auth=Bearer {token()}\x01\x01".encode()
                    client.authenticate("XOAUTH2", lambda _challenge: payload)
                    started = time.monotonic()
                    for n in range(limit):
                        if self.sim.killing.is_set():
                            return
                        marker = f"cs{SEED}-i{phase}-{n}"
                        raw = message(marker, 0, self.rng, ROBERT_BAL, KIT_BAL).as_bytes()
                        self.ledger.send(stream, marker)
                        typ, data = client.append("INBOX", f"(\\Seen $m{marker})", None, raw)
                        if typ != "OK":
                            self.ledger.problem(f"{stream} {marker}: {typ} {data!r}")
                            return
                        self.ledger.ack(stream, marker)
                        acked = n + 1
                        if due(kill_after, acked, started):
                            self.sim.kill(f"right after the OK of APPEND {marker} ({acked} acked in this phase)")
                            return
                finally:
                    with contextlib.suppress(Exception):
                        client.shutdown()
            except imaplib.IMAP4.abort as exc:
                self._lost(stream, marker, exc)
            except imaplib.IMAP4.error as exc:
                if not self.sim.gone():
                    self.ledger.problem(f"{stream} {marker}: refused {exc!r}")
            except OSError as exc:
                self._lost(stream, marker, exc)

        return run


def test_mss_smtp_and_imap_append_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    ledger = Ledger()
    ports = mail_ports()
    sets: dict[str, object] = {"psc_issuer": ISSUER, "psc_jwks": KeySet([KEY]).as_dict(private=False),
                               **{f"{k}_port": v for k, v in ports.items()}}
    sim = Sim("mss", tmp_path, ledger, sets, ready_ports=(ports["smtp"], ports["imap"]))
    mail = MailStreams(sim, ports, ledger, rng)
    first = threading.Event()
    try:
        phase = 0

        def begin(label: str, crash_at: str | None = None) -> None:
            nonlocal phase
            phase += 1
            sim.start(crash_at)
            mail.refresh_ca()
            ledger.note(f"mss phase {phase}: {label}")

        def after() -> None:
            ledger.note(f"    left: {sim.left_on_disk()}")

        begin("SMTP and IMAP APPEND streams, kill at a random moment")
        run_threads(mail.smtp(phase), mail.imap(phase), killer_at_random(sim, rng, 0.4, 1.2))
        after()
        begin("streams, the IMAP client kills right after an APPEND's OK")
        run_threads(mail.smtp(phase), mail.imap(phase, kill_after=rng.randint(2, 15)))
        after()
        # SMTP's 250 in a burst of large messages, alone so that it outruns the background ingester: it leaves the
        # restarted processes' reads (c) megabytes of a dead writer's segment to bring in, as for the DMP
        begin(f"burst of {BIG // 1024} kB messages, the SMTP client kills right after a 250")
        run_threads(mail.smtp(phase, size=BIG, kill_after=rng.randint(12, 20)))
        after()
        for crash_at in (None, f"decode:{rng.randint(1, 4)}", "unlinked", "unlink"):
            if crash_at and not sim.pending_segments():  # the removal hooks want a segment with frames to ingest
                begin("no segment left to ingest: the SMTP client kills right after its first 250")
                run_threads(mail.smtp(phase, kill_after=1))
                after()
            first.clear()
            begin("journal reads ingest dead writers' segments while the streams go on; "
                  + (f"the process kills itself at {crash_at}" if crash_at else "kill at a random moment inside"),
                  crash_at)
            done = sim.self_kill_watch() if crash_at else killer_after_first_read(sim, first, rng.uniform(0, 0.35))
            run_threads(journal_reader(sim, ["SMTP DATA", "IMAP APPEND"], first, rng), done,
                        mail.smtp(phase, size=BIG // 8), mail.imap(phase))
            after()
        sim.start()
        ledger.note("mss: final restart, checks")

        with httpx.Client(timeout=60) as http:
            def box(address: str, folder: str) -> Counter:
                got = http.get(sim.url + f"/_bench/mss/mailboxes/{address}", params={"folder": folder}).json()
                return Counter(re.sub(r"^crash-safety ", "", m["subject"]) for m in got["messages"]
                               if m["subject"].startswith("crash-safety "))

            def journal(operation: str) -> list[dict]:
                return http.get(sim.url + "/_bench/journal", params={"operation": operation}).json()["entries"]

            smtp_journal, imap_journal = journal("SMTP DATA"), journal("IMAP APPEND")
            robert_inbox, kit_sent, kit_inbox = box(ROBERT_BAL, "INBOX"), box(KIT_BAL, "Sent"), box(KIT_BAL, "INBOX")
        assert not sim.dead_segments(), f"segments left after a journal read: {sim.left_on_disk()}\n{ledger.context()}"
        marker_re = rb"cs%d-[si]\d+-\d+" % SEED
        check(ledger, "mss SMTP", robert_inbox, smtp_journal,
              lambda e: set(re.findall(rb"Subject: crash-safety (" + marker_re + rb")", body_of(e))), ok_status=250)
        check(ledger, "mss SMTP", kit_sent, smtp_journal, lambda e: (), ok_status=None, what="the sender's Sent")
        check(ledger, "mss IMAP APPEND", kit_inbox, imap_journal,
              lambda e: re.findall(rb"\$m(" + marker_re + rb")", body_of(e)), ok_status=200)
    finally:
        sim.stop()
        print(ledger.context())


# ---------------------------------------------------------------------------------------------- checks


def body_of(entry: dict) -> bytes:
    request = entry["request"]
    body = request.get("body") or ""
    return base64.b64decode(body) if request.get("encoding") == "base64" else body.encode("utf-8")


def check(ledger: Ledger, stream: str, stored: Counter, journal: list[dict],
          markers_of: Callable[[dict], Iterator[bytes] | list | set | tuple], *, ok_status: int | None,
          what: str = "the store", ours: str | None = None) -> None:
    """Every acknowledged marker stored exactly once and journaled exactly once (with a success status); no marker
    stored or journaled twice, acknowledged or not."""
    sent, acked = set(ledger.sent.get(stream, [])), ledger.acked.get(stream, [])
    context = ledger.context()
    assert not ledger.problems, f"failures while the simulator was alive:\n{context}"
    assert acked, f"{stream}: nothing acknowledged, the test proves nothing\n{context}"
    assert len(set(acked)) == len(acked)
    ours = ours or rf"cs{SEED}-[si]\d+-\d+"  # what a marker of this test looks like, sent or not
    mine = {m: n for m, n in stored.items() if m in sent or re.fullmatch(ours, m)}
    lost = [m for m in acked if stored.get(m, 0) == 0]
    doubled = {m: n for m, n in mine.items() if n > 1}
    unknown = sorted(set(mine) - sent)
    assert not lost, f"{stream}: {len(lost)} acknowledged item(s) missing from {what}: {lost[:10]}\n{context}"
    assert not doubled, f"{stream}: item(s) stored more than once in {what}: {doubled}\n{context}"
    assert not unknown, f"{stream}: item(s) in {what} that were never sent: {unknown[:10]}\n{context}"
    if ok_status is None:
        return
    journaled: Counter = Counter()
    status: dict[str, int | None] = {}
    for entry in journal:
        for raw in set(markers_of(entry)):
            marker = raw.decode()
            if marker in sent:
                journaled[marker] += 1
                status[marker] = entry["status"]
    unjournaled = [m for m in acked if journaled[m] == 0]
    twice = {m: n for m, n in journaled.items() if n > 1}
    wrong = {m: status[m] for m in acked if journaled[m] and status[m] != ok_status}
    assert not unjournaled, (f"{stream}: {len(unjournaled)} acknowledged exchange(s) missing from the journal: "
                             f"{unjournaled[:10]}\n{context}")
    assert not twice, f"{stream}: exchange(s) journaled more than once: {twice}\n{context}"
    assert not wrong, f"{stream}: acknowledged exchange(s) journaled with another status: {wrong}\n{context}"
    # Stored but unacknowledged (the kill came between the commit and the answer) is allowed, once; the journal
    # may or may not have it (the entry is written just before the answer).
    ledger.note(f"{stream}: {len(acked)} acknowledged, {len(mine)} in {what}, "
                f"{sum(journaled.values())} journaled (of {len(sent)} sent)")
