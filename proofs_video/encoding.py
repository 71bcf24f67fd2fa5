"""What every proof video shares, whatever its pictures come from (the bench's Chromium screencast, or the screen an
operator shared): the caption band under the picture (step, network condition, clock) and the MP4 H.264 encode at
a constant frame rate."""

from __future__ import annotations

import bisect
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_INSTALL_HINT = "apt-get install -y ffmpeg"

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class VideoError(RuntimeError):
    """The proof video cannot be produced (message in French and English, with the fix)."""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise VideoError(
            f"{name} introuvable : la vidéo de preuve ne peut pas être encodée ; "
            f"installez-le avec « {_INSTALL_HINT} ». "
            f"/ {name} not found: the proof video cannot be encoded; install it with `{_INSTALL_HINT}`."
        )
    return path


def ffprobe_duration(path: Path) -> float:
    """Duration in seconds of a media file, as ffprobe reads its container."""
    result = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise VideoError(f"ffprobe a échoué / ffprobe failed on {path}: {result.stderr.strip()}")
    return float(result.stdout.strip())


def font(size: int, *, mono: bool = False) -> _Font:
    # DejaVu (Debian fonts-dejavu-core, pulled in by chromium) covers French accents; Pillow draws it directly,
    # so no fontconfig/drawtext dependency on the ffmpeg side.
    candidate = FONT_DIR / ("DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf")
    if candidate.is_file():
        return ImageFont.truetype(str(candidate), size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def fit(draw: ImageDraw.ImageDraw, text: str, face: _Font, width: float) -> str:
    """Text shortened with an ellipsis so that it fits in ``width`` pixels."""
    if draw.textlength(text, font=face) <= width:
        return text
    while text and draw.textlength(text + "…", font=face) > width:
        text = text[:-1]
    return text + "…"


@dataclass
class Timeline:
    """The captions of a run as they changed: the current step and the injected network condition, each with the
    wall-clock time (epoch seconds) it started."""

    steps: list[tuple[float, str]] = field(default_factory=list)
    conditions: list[tuple[float, str]] = field(default_factory=list)

    def caption(self, text: str, at: float | None = None) -> None:
        self.steps.append((time.time() if at is None else at, text))

    def condition(self, text: str, at: float | None = None) -> None:
        self.conditions.append((time.time() if at is None else at, text))

    def at(self, moment: float) -> tuple[str, str]:
        """(step, condition) shown at ``moment``."""
        return _latest(self.steps, moment), _latest(self.conditions, moment)


def _latest(changes: list[tuple[float, str]], moment: float) -> str:
    index = bisect.bisect_right([t for t, _ in changes], moment) - 1
    return changes[index][1] if index >= 0 else ""


class CaptionBand:
    """Caption band in its own rows under the picture: the whole picture stays visible (nothing of the LGC's screen
    is covered), the frame grows by the band's height (even, as yuv420p wants)."""

    def __init__(self, width: int, height: int) -> None:
        self.size = max(11, round(height / 32))
        self.font = font(self.size)
        self.mono = font(self.size, mono=True)
        self.pad = max(4, self.size // 2)
        self.line = round(self.size * 1.3)
        band = 2 * self.line + 2 * self.pad
        band += band % 2 + (height % 2)  # total height even
        self.box = (0, height, width, height + band)
        self.width = width
        self.frame_size = (width + width % 2, height + band)

    def draw(self, frame: Image.Image, step: str, condition: str, moment: float) -> Image.Image:
        image = Image.new("RGB", self.frame_size, (24, 24, 24))
        image.paste(frame, (0, 0))
        draw = ImageDraw.Draw(image)
        stamp = datetime.fromtimestamp(moment)
        clock = f"{stamp:%H:%M:%S}.{stamp.microsecond // 100_000}"
        clock_width = draw.textlength(clock, font=self.mono)
        top = self.box[1] + self.pad
        text_width = self.width - 3 * self.pad - clock_width
        draw.text((self.pad, top), fit(draw, f"Étape : {step or '—'}", self.font, text_width), font=self.font,
                  fill="white")
        draw.text((self.width - self.pad - clock_width, top), clock, font=self.mono, fill="white")
        draw.text((self.pad, top + self.line), fit(draw, f"Réseau : {condition or '—'}", self.font, text_width),
                  font=self.font, fill=(255, 214, 10))
        return image


def placeholder(size: tuple[int, int], lines: list[str]) -> Image.Image:
    """A grey picture with a centred French message: what a frame shows when there is nothing to show (no capture
    yet, a gap in a shared screen)."""
    image = Image.new("RGB", size, (90, 90, 90))
    draw = ImageDraw.Draw(image)
    face = font(max(14, size[1] // 28))
    y = size[1] // 2 - len(lines) * face.size
    for line in lines:
        line = fit(draw, line, face, size[0] - 40)
        draw.text(((size[0] - draw.textlength(line, font=face)) / 2, y), line, font=face, fill="white")
        y += round(face.size * 1.5)
    return image


def encode_captioned(out_path: Path, *, size: tuple[int, int], fps: int, t0: float, end: float,
                     pictures: Iterator[Image.Image] | Callable[[int, float], Image.Image],
                     timeline: Timeline) -> Path:
    """Encodes frames ``t0 + i/fps`` (i < round((end - t0) * fps)) to an MP4 H.264 at ``out_path``, each picture
    (``size``) with the caption band of its moment under it. ``pictures`` gives the pictures in order (an iterator)
    or on demand (a function of the frame index and its moment). The file appears whole or not at all."""
    ffmpeg = tool("ffmpeg")
    band = CaptionBand(*size)
    width, height = band.frame_size
    count = max(1, round((end - t0) * fps))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.stem + ".part.mp4")
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps),
        "-i", "pipe:0",
        "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-g", str(2 * fps),  # a keyframe every 2 s: reviewers seek in proofs
        "-movflags", "+faststart",
        "-metadata", f"creation_time={datetime.fromtimestamp(t0, UTC).isoformat()}",
        str(partial),
    ]
    source = pictures if callable(pictures) else None
    stream = None if callable(pictures) else iter(pictures)
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
        assert process.stdin is not None
        try:
            for index in range(count):
                moment = t0 + index / fps
                picture = source(index, moment) if source is not None else next(stream)  # type: ignore[arg-type]
                step, condition = timeline.at(moment)
                process.stdin.write(band.draw(picture, step, condition, moment).tobytes())
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died: its return code and stderr say why
        finally:
            returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            partial.unlink(missing_ok=True)
            raise VideoError(f"échec de l'encodage ffmpeg / ffmpeg encoding failed ({returncode}): "
                             f"{stderr.read().decode(errors='replace').strip()[-2000:]}")
    os.replace(partial, out_path)
    return out_path
