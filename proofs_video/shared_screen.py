"""Proof video of a guided run from the screen the operator shared: the browser's recordings (WebM or MP4 from
`MediaRecorder`, one per sharing session) decoded by ffmpeg, placed on the bench's clock, captioned like the
reference runs, and encoded to MP4 H.264. Where no recording covers a moment (before the operator shares, after the
tab closed) the frame says so instead of showing anything else: nothing of the bench's own browser is stitched in."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from PIL import Image

from proofs_video.encoding import Timeline, encode_captioned, placeholder, tool

MAX_SIZE = (1600, 1000)  # a 4K screen is scaled down: captions stay readable, files stay small


@dataclass
class Recording:
    """One sharing session's recording and the bench-clock interval it covers."""

    path: Path
    start: float
    until: float
    end_reason: str = ""


@dataclass
class Gap:
    start: float
    end: float
    reason: str  # French


@dataclass
class SharedScreenVideo:
    out_path: Path
    size: tuple[int, int]
    gaps: list[Gap]
    stills: dict[str, Path] = field(default_factory=dict)  # name -> PNG of the shared screen at that moment


def probe_size(path: Path) -> tuple[int, int] | None:
    """Width and height of a recording's video stream, or None when ffprobe cannot read it."""
    result = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "json", str(path)], capture_output=True, text=True, check=False)
    try:
        stream = json.loads(result.stdout)["streams"][0]
        return int(stream["width"]), int(stream["height"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def output_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIZE[0] / width, MAX_SIZE[1] / height)
    w, h = max(2, round(width * scale)), max(2, round(height * scale))
    return w - w % 2, h - h % 2


def find_gaps(recordings: list[Recording], t0: float, end: float) -> list[Gap]:
    """The parts of [t0, end] no recording covers, each with its reason (French)."""
    gaps: list[Gap] = []
    cursor = t0
    previous: Recording | None = None
    for rec in sorted(recordings, key=lambda r: r.start):
        if rec.start > cursor + 0.5:
            gaps.append(Gap(cursor, min(rec.start, end), _reason(previous)))
        cursor = max(cursor, rec.until)
        previous = rec
    lost = previous is not None and not previous.end_reason  # a tab closed or lost: said however short the loss
    if end > cursor + 0.5 or (lost and end > cursor):
        gaps.append(Gap(cursor, end, _reason(previous)))
    return gaps


def _reason(previous: Recording | None) -> str:
    if previous is None:
        return "l'opérateur n'avait pas encore partagé son écran"
    stamp = f"{datetime.fromtimestamp(previous.until):%H:%M:%S}"
    if previous.end_reason:
        return f"partage arrêté à {stamp} ({previous.end_reason})"
    return f"partage interrompu à {stamp} : page de l'opérateur fermée ou perdue, la suite n'a pas été reçue"


class _Decoder:
    """Frames of one recording at `fps`, scaled and padded to `size`, read in order."""

    def __init__(self, rec: Recording, size: tuple[int, int], fps: int) -> None:
        self.rec, self.size, self.fps = rec, size, fps
        w, h = size
        self.process = subprocess.Popen(
            [tool("ffmpeg"), "-hide_banner", "-loglevel", "quiet", "-i", str(rec.path), "-an",
             "-vf", f"fps={fps},scale={w}:{h}:force_original_aspect_ratio=decrease,"
                    f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=gray",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.index = -1
        self.frame: Image.Image | None = None
        self.exhausted = False

    def at(self, moment: float) -> Image.Image | None:
        """The recording's picture at `moment` (its last frame once the stream has ended: a still screen sends no
        new frames), None before its first frame."""
        wanted = int((moment - self.rec.start) * self.fps)
        size = self.size[0] * self.size[1] * 3
        while self.index < wanted and not self.exhausted:
            assert self.process.stdout is not None
            data = self.process.stdout.read(size)
            if len(data) < size:
                self.exhausted = True
                break
            self.frame = Image.frombytes("RGB", self.size, data)
            self.index += 1
        return self.frame

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def encode_shared_screen(recordings: list[Recording], out_path: Path, *, t0: float, end: float,
                         timeline: Timeline, stills: dict[str, float] | None = None, stills_dir: Path | None = None,
                         fps: int = 10) -> SharedScreenVideo | None:
    """The captioned MP4 of [t0, end] from `recordings`; None when none of them can be decoded. `stills` names
    moments whose picture is also saved as PNG in `stills_dir` (a step's screenshot) when a recording covers it."""
    readable = [(r, s) for r in sorted(recordings, key=lambda r: r.start) if (s := probe_size(r.path))]
    if not readable:
        return None
    size = output_size(*readable[0][1])
    recs = [r for r, _ in readable]
    gaps = find_gaps(recs, t0, end)
    last_frame = t0 + (max(1, round((end - t0) * fps)) - 1) / fps  # as encode_captioned counts frames
    wanted = sorted(((min(moment, last_frame), name) for name, moment in (stills or {}).items()), reverse=True)
    saved: dict[str, Path] = {}
    decoders: dict[int, _Decoder] = {}
    waiting = placeholder(size, ["En attente du partage d'écran de l'opérateur"])
    gap_pictures: dict[int, Image.Image] = {}

    def picture(index: int, moment: float) -> Image.Image:
        for n, rec in enumerate(recs):
            if rec.start <= moment < rec.until:
                decoder = decoders.get(n)
                if decoder is None:
                    for other in decoders.values():  # recordings are in time order: earlier ones are done
                        other.close()
                    decoder = decoders[n] = _Decoder(rec, size, fps)
                frame = decoder.at(moment)
                image = frame if frame is not None else waiting
                _take_stills(moment, image if frame is not None else None)
                return image
        gap = next((i for i, g in enumerate(gaps) if g.start <= moment < g.end), None)
        if gap is None:
            return waiting
        if gap not in gap_pictures:
            g = gaps[gap]
            gap_pictures[gap] = placeholder(size, [
                "Pas d'image de l'écran du LGC sous test", g.reason,
                f"de {datetime.fromtimestamp(g.start):%H:%M:%S} à {datetime.fromtimestamp(g.end):%H:%M:%S}"])
        _take_stills(moment, None)
        return gap_pictures[gap]

    def _take_stills(moment: float, image: Image.Image | None) -> None:
        while wanted and wanted[-1][0] <= moment + 1 / fps:
            _, name = wanted.pop()
            if image is not None and stills_dir is not None:
                stills_dir.mkdir(parents=True, exist_ok=True)
                path = stills_dir / f"{name}.png"
                image.save(path)
                saved[name] = path

    try:
        encode_captioned(out_path, size=size, fps=fps, t0=t0, end=end, pictures=picture, timeline=timeline)
    finally:
        for decoder in decoders.values():
            decoder.close()
    return SharedScreenVideo(out_path, size, gaps, saved)
