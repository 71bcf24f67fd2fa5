"""The operator's shared screen, as the bench receives it during a guided run.

The operator page (scenarios/operator_page.html) records the screen or window the operator shares
(`getDisplayMedia` + `MediaRecorder`) and uploads the recording in segments as it is produced, plus one picture
of the stream each time the operator confirms a step or answers a question (or, when sharing is refused, an image
file the operator chose). This module keeps what arrived, on disk as it arrives (a closed tab or a crash loses at
most the segment being recorded), with bench-clock times, and says at the end what is covered and what is missing.

Times: the page measures its clock against the bench's (`GET /horloge`, half the round trip) and sends bench-clock
milliseconds; a time more than two minutes away from the bench's own receipt time is not believed (receipt time
is used, and the summary says so).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_SEGMENT = 64 * 1024 * 1024  # a 2-second segment of a 4K screen is a few MiB
MAX_PICTURE = 20 * 1024 * 1024
CLOCK_TRUST_S = 120
SOURCES = {  # picture source -> French label in the bundle
    "partage": "image de l'écran partagé, prise par la page de l'opérateur à sa confirmation de l'étape",
    "confirmation": "image de la vidéo du partage d'écran, à l'instant où l'opérateur a confirmé l'étape",
    "televersement": "image téléversée par l'opérateur (partage d'écran refusé ou indisponible)",
    "video": "image extraite de la vidéo du partage d'écran, à la fin de l'étape",
}
WHOSE = "écran du LGC sous test, partagé par l'opérateur depuis son navigateur"


class ShareError(ValueError):
    """An upload the bench refuses (HTTP status and French reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Capture:
    """One sharing session: from the moment the operator shares until the sharing stops, the tab closes or the run
    ends. Segments are numbered from 1 by the page; only the unbroken run from 1 can be decoded."""

    n: int
    mime: str
    surface: str  # displaySurface as the browser reports it: monitor | window | browser
    label: str
    width: int
    height: int
    started: float  # bench clock, epoch seconds
    segments: list[dict] = field(default_factory=list)  # {"n", "at" (bench time covered up to), "size"}
    ended: float | None = None
    end_reason: str = ""  # French: why it ended, when the page said so
    clock_note: str = ""

    @property
    def covered_until(self) -> float:
        """Bench time up to which the uploaded, contiguous segments hold the picture."""
        last = self.started
        for expected, seg in enumerate(sorted(self.segments, key=lambda s: s["n"]), start=1):
            if seg["n"] != expected:
                break
            last = max(last, seg["at"])
        return last


@dataclass
class Picture:
    instruction: int
    step: int  # the scenario step whose instruction it confirms
    at: float
    path: Path
    source: str  # key of SOURCES
    method: str = ""  # "piste": grabbed from the shared track (fresh); "video": from a <video> (may lag)


class ScreenShare:
    """Receives the operator page's uploads into `directory` (hidden from the bundle: the proof is the encoded
    video and the step pictures; the raw segments stay in the run directory for a second look)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.captures: list[Capture] = []
        self.pictures: list[Picture] = []
        self.refusals: list[dict] = []
        self.confirmations: list[dict] = []  # {"instruction", "step", "at"}: when the operator answered
        self.stop_requested = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- from the page ------------------------------------------------------------------------------------------

    def begin(self, info: dict) -> Capture:
        now = time.time()
        started, note = _bench_time(info.get("debut"), now)
        with self._lock:
            capture = Capture(n=len(self.captures) + 1, mime=_text(info.get("mime"), 100) or "video/webm",
                              surface=_text(info.get("surface"), 20), label=_text(info.get("libelle"), 200),
                              width=_int(info.get("largeur")), height=_int(info.get("hauteur")), started=started,
                              clock_note=note)
            self.captures.append(capture)
            (self.dir / f"partage-{capture.n:02d}").mkdir(exist_ok=True)
            self._save()
            self._changed.notify_all()
        return capture

    def segment(self, capture_n: int, seq: int, data: bytes, at_ms: object) -> None:
        capture = self._capture(capture_n)
        if seq < 1 or seq > 1_000_000:
            raise ShareError(400, f"numéro de segment invalide : {seq}")
        if len(data) > MAX_SEGMENT:
            raise ShareError(413, f"segment trop gros ({len(data)} octets, au plus {MAX_SEGMENT})")
        at, _ = _bench_time(at_ms, time.time())
        path = self.dir / f"partage-{capture.n:02d}" / f"{seq:06d}.part"
        path.write_bytes(data)
        with self._lock:
            capture.segments = [s for s in capture.segments if s["n"] != seq]  # a retried upload replaces
            capture.segments.append({"n": seq, "at": at, "size": len(data)})
            self._save()
            self._changed.notify_all()

    def end(self, capture_n: int, reason: str) -> None:
        capture = self._capture(capture_n)
        with self._lock:
            capture.ended = capture.ended or time.time()
            capture.end_reason = capture.end_reason or _text(reason, 200) or "fin du partage"
            self._save()
            self._changed.notify_all()

    def picture(self, instruction: int, data: bytes, source: str, *, step: int = 0, method: str = "") -> Picture:
        if source not in ("partage", "televersement"):
            raise ShareError(400, f"source d'image inconnue : {source!r}")
        if len(data) > MAX_PICTURE:
            raise ShareError(413, f"image trop grosse ({len(data)} octets, au plus {MAX_PICTURE})")
        suffix = ".png" if data.startswith(b"\x89PNG\r\n\x1a\n") else ".jpg" if data.startswith(b"\xff\xd8\xff") \
            else None
        if suffix is None:
            raise ShareError(415, "image attendue au format PNG ou JPEG")
        path = self.dir / "images" / f"consigne-{instruction:03d}-{source}{suffix}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            pic = Picture(instruction, step, time.time(), path, source, method if method in ("piste", "video") else "")
            self.pictures.append(pic)
            self._save()
        return pic

    def confirmed(self, instruction: int, step: int, at: float) -> None:
        with self._lock:
            self.confirmations.append({"instruction": instruction, "step": step, "at": at})
            self._save()

    def refused(self, reason: str) -> None:
        with self._lock:
            self.refusals.append({"at": time.time(), "raison": _text(reason, 300) or "partage refusé"})
            self._save()

    # -- from the bench -----------------------------------------------------------------------------------------

    def finish(self, wait_s: float = 8.0) -> None:
        """The run is over: ask the page to stop recording (its next poll says so) and wait a little for the last
        segments and the end of every capture; a capture that never ends (tab closed) is left as it is."""
        deadline = time.time() + wait_s
        with self._lock:
            self.stop_requested = True
            while any(c.ended is None for c in self.captures) and time.time() < deadline:
                self._changed.wait(max(0.05, deadline - time.time()))

    def capture_file(self, capture: Capture) -> Path | None:
        """The capture's decodable recording: its contiguous segments from the first, joined (a MediaRecorder
        stream is one file cut in pieces)."""
        folder = self.dir / f"partage-{capture.n:02d}"
        out = self.dir / f"partage-{capture.n:02d}{_suffix(capture.mime)}"
        wrote = False
        with out.open("wb") as fh:
            for expected, seg in enumerate(sorted(capture.segments, key=lambda s: s["n"]), start=1):
                if seg["n"] != expected:
                    break
                fh.write((folder / f"{seg['n']:06d}.part").read_bytes())
                wrote = True
        if not wrote:
            out.unlink(missing_ok=True)
            return None
        return out

    def _capture(self, n: int) -> Capture:
        for capture in self.captures:
            if capture.n == n:
                return capture
        raise ShareError(404, f"partage d'écran inconnu : {n}")

    def _save(self) -> None:
        """The state next to the data, on every change: what arrived is known even if the run dies."""
        state = {"captures": [asdict(c) for c in self.captures],
                 "pictures": [{**asdict(p), "path": p.path.name} for p in self.pictures], "refusals": self.refusals,
                 "confirmations": self.confirmations}
        tmp = self.dir / "etat.json.tmp"
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(self.dir / "etat.json")


def _bench_time(value: object, now: float) -> tuple[float, str]:
    """Bench-clock seconds from the page's milliseconds; receipt time when absent or not believable."""
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value / 1000 - now) <= CLOCK_TRUST_S:
        return value / 1000, ""
    if value is None:
        return now, ""
    return now, "horloge du navigateur non synchronisée : heure de réception du banc retenue"


def _text(value: object, limit: int) -> str:
    return str(value)[:limit] if isinstance(value, str | int | float) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100_000 else 0


def _suffix(mime: str) -> str:
    return ".mp4" if "mp4" in mime else ".webm"
