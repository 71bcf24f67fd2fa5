"""Full-run proof video of a Playwright (sync API) Chromium page: CDP screencast → captioned MP4 H.264.

Frames come from the Chrome DevTools Protocol screencast (``Page.startScreencast``), not from Playwright's
``record_video_dir``: that one needs Playwright's own ffmpeg build at a revision-specific path, can only start
with a new context, only finalises the file when the context closes and gives VP9 webm that would need a
second encode for captions anyway.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import inspect
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from playwright.sync_api import CDPSession, Frame, Page

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_INSTALL_HINT = "apt-get install -y ffmpeg"

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class VideoError(RuntimeError):
    """The proof video cannot be produced (message in French and English, with the fix)."""


def _tool(name: str) -> str:
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
        [_tool("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise VideoError(f"ffprobe a échoué / ffprobe failed on {path}: {result.stderr.strip()}")
    return float(result.stdout.strip())


def _font(size: int, *, mono: bool = False) -> _Font:
    # DejaVu (Debian fonts-dejavu-core, pulled in by chromium) covers French accents; Pillow draws it directly,
    # so no fontconfig/drawtext dependency on the ffmpeg side.
    candidate = FONT_DIR / ("DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf")
    if candidate.is_file():
        return ImageFont.truetype(str(candidate), size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: _Font, width: float) -> str:
    """Text shortened with an ellipsis so that it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


CDP_TIMEOUT_MS = 10_000  # per CDP command: a screencast command answers in milliseconds

@dataclass(frozen=True)
class _Shot:
    timestamp: float  # wall-clock seconds (epoch) of the frame swap in the browser
    path: Path


class ScreenRecorder:
    """Records ``page`` from :meth:`start` to :meth:`stop` into an MP4 H.264 at a constant frame rate.

    Each output frame is the page with a caption band under it: current step (:meth:`caption`), injected network
    condition (:meth:`condition`) and the wall clock of that frame. Frames are only delivered while the test thread is
    inside a Playwright call (``page.wait_for_timeout`` rather than ``time.sleep``); gaps are filled by repeating
    the last frame, so the video lasts as long as the run did.
    """

    def __init__(self, page: Page, out_path: Path, *, fps: int = 10, width: int | None = None,
                 height: int | None = None) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.page = page
        self.out_path = Path(out_path)
        self.fps = fps
        self._width = width
        self._height = height
        self._cdp: CDPSession | None = None
        self._tmp: Path | None = None
        self._shots: list[_Shot] = []
        self._steps: list[tuple[float, str]] = []
        self._conditions: list[tuple[float, str]] = []
        self._t0 = 0.0
        self._end: float | None = None
        self._stopping = False

    # -- timeline -------------------------------------------------------------------------------------------------

    def caption(self, text: str) -> None:
        """From now on the banner shows ``text`` as the current step."""
        self._steps.append((time.time(), text))

    def condition(self, text: str) -> None:
        """From now on the banner shows ``Réseau : <text>`` (e.g. ``"latence 3 s"``)."""
        self._conditions.append((time.time(), text))

    # -- recording ------------------------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        assert self._width and self._height, "size is known once started"
        return self._width, self._height

    def start(self) -> Self:
        if self._cdp is not None or self._end is not None:
            raise VideoError("enregistrement déjà démarré / recorder already started")
        _tool("ffmpeg")  # fail before the scenario runs, not after
        from playwright.sync_api import Error

        if self._width is None or self._height is None:
            viewport = self.page.viewport_size or self.page.evaluate("({width: innerWidth, height: innerHeight})")
            self._width = self._width or viewport["width"]
            self._height = self._height or viewport["height"]
        # yuv420p needs even dimensions.
        self._width, self._height = self._width - self._width % 2, self._height - self._height % 2
        try:
            self._cdp = self.page.context.new_cdp_session(self.page)
        except Error as error:
            raise VideoError(f"le screencast CDP exige Chromium / CDP screencast needs Chromium: {error}") from error
        self._tmp = Path(tempfile.mkdtemp(prefix="segur-video-"))
        self._t0 = time.time()
        self._cdp.on("Page.screencastFrame", self._on_frame)
        self.page.on("framenavigated", self._on_navigated)
        self._start_screencast()
        return self

    def _start_screencast(self) -> None:
        assert self._cdp is not None
        self._cdp.send("Page.startScreencast", {
            "format": "jpeg", "quality": 80, "maxWidth": self._width, "maxHeight": self._height, "everyNthFrame": 1,
        })

    def _on_navigated(self, frame: Frame) -> None:
        # Chromium keeps the screencast across navigations (even cross-site renderer swaps, checked with 156);
        # restarting is cheap insurance for other versions: "Screencast is already active" means all is well.
        if frame.parent_frame is not None or self._stopping:
            return
        self._send_from_handler("Page.startScreencast", {
            "format": "jpeg", "quality": 80, "maxWidth": self._width, "maxHeight": self._height, "everyNthFrame": 1,
        })

    def _send_from_handler(self, method: str, params: dict[str, Any]) -> None:
        """A CDP command sent from an event handler without waiting for its answer.

        Event handlers run in Playwright's dispatcher; a synchronous `send` there has to switch greenlets
        while the scenario's own call (e.g. `Page.stopScreencast`) may be waiting, and that interleaving can
        hang both for good. The async session under the sync one takes the command as a task on the
        driver's loop, which is running: nothing waits, errors (page closing) are dropped."""
        impl = getattr(self._cdp, "_impl_obj", None)
        if impl is None:  # another Playwright layout: the plain synchronous call
            from playwright.sync_api import Error

            with contextlib.suppress(Error):
                self._cdp.send(method, params)  # type: ignore[union-attr]
            return
        # Newer Playwright's send() takes a timeout (ms), older ones do not.
        timeout = (CDP_TIMEOUT_MS,) if "timeout" in inspect.signature(impl.send).parameters else ()
        task = asyncio.ensure_future(impl.send(method, params, *timeout))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieve it: no "never retrieved"

    def _on_frame(self, params: dict[str, Any]) -> None:
        if self._stopping or self._cdp is None or self._tmp is None:
            return
        received = time.time()
        swap = params.get("metadata", {}).get("timestamp")
        # The swap time is when the pixels were on screen; events can wait in the driver's queue long after that.
        timestamp = swap if isinstance(swap, int | float) and abs(received - swap) < 5 else received
        timestamp = max(timestamp, self._t0)
        slot = math.ceil((timestamp - self._t0) * self.fps)
        if self._shots and math.ceil((self._shots[-1].timestamp - self._t0) * self.fps) == slot:
            # Only the last frame of an output slot is ever shown: overwrite, so a 60 fps animation keeps <= fps
            # files per second on disk.
            path = self._shots.pop().path
        else:
            path = self._tmp / f"{len(self._shots):07d}.jpg"
        path.write_bytes(base64.b64decode(params["data"]))
        self._shots.append(_Shot(timestamp, path))
        self._send_from_handler("Page.screencastFrameAck", {"sessionId": params["sessionId"]})

    def stop(self) -> Path:
        """Ends the recording and encodes the MP4; returns its path."""
        if self._end is not None:
            return self.out_path
        if self._cdp is None:
            raise VideoError("enregistrement non démarré / recorder not started")
        from playwright.sync_api import Error

        self._end = time.time()
        self._stopping = True
        self.page.remove_listener("framenavigated", self._on_navigated)
        with contextlib.suppress(Error):  # the page or context may already be closed: keep what was recorded
            try:
                self._cdp.send("Page.stopScreencast", timeout=CDP_TIMEOUT_MS)  # a wedged browser can't hold us
            except TypeError:  # older Playwright: no timeout parameter
                self._cdp.send("Page.stopScreencast")
        # No CDPSession.detach(): it takes no timeout and was seen waiting forever (guided runs, Chromium 156,
        # Playwright 1.65); the session ends with its page, which the caller closes next.
        try:
            self._encode()
        finally:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
        return self.out_path

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.stop()
            return
        # A failing scenario's video is the most useful proof, but never hide the scenario's own error.
        with contextlib.suppress(Exception):
            self.stop()

    # -- encoding -------------------------------------------------------------------------------------------------

    def _encode(self) -> None:
        assert self._end is not None
        ffmpeg = _tool("ffmpeg")
        width, height = _Banner(*self.size).frame_size  # the page, then the caption band under it
        frame_count = max(1, round((self._end - self._t0) * self.fps))
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out_path.with_name(self.out_path.stem + ".part.mp4")
        command = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(self.fps),
            "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-g", str(2 * self.fps),  # a keyframe every 2 s: reviewers seek in proofs
            "-movflags", "+faststart",
            "-metadata", f"creation_time={datetime.fromtimestamp(self._t0, UTC).isoformat()}",
            str(partial),
        ]
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
            assert process.stdin is not None
            try:
                for image in self._frames(frame_count):
                    process.stdin.write(image.tobytes())
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
        os.replace(partial, self.out_path)

    def _frames(self, count: int) -> Iterator[Image.Image]:
        """RGB images of the output frames, one source JPEG decoded at a time."""
        width, height = self.size
        shots = sorted(self._shots, key=lambda shot: shot.timestamp)
        times = [shot.timestamp for shot in shots]
        step_times = [t for t, _ in self._steps]
        condition_times = [t for t, _ in self._conditions]
        banner = _Banner(width, height)
        current: tuple[int, Image.Image] | None = None
        for index in range(count):
            moment = self._t0 + index / self.fps
            shot = bisect.bisect_right(times, moment) - 1
            if current is None or current[0] != shot:
                current = (shot, self._load(shots[shot].path) if shot >= 0 else Image.new("RGB", self.size, "gray"))
            step = bisect.bisect_right(step_times, moment) - 1
            condition = bisect.bisect_right(condition_times, moment) - 1
            yield banner.draw(
                current[1],
                self._steps[step][1] if step >= 0 else "",
                self._conditions[condition][1] if condition >= 0 else "",
                moment,
            )

    def _load(self, path: Path) -> Image.Image:
        with Image.open(path) as source:
            image = source.convert("RGB")
        if image.size == self.size:
            return image
        # Viewport changed or device scale factor: fit without distortion, like Playwright's own pad.
        image.thumbnail(self.size)
        canvas = Image.new("RGB", self.size, "gray")
        canvas.paste(image, (0, 0))
        return canvas


class _Banner:
    """Caption band in its own rows under the page: the whole viewport stays visible (nothing of the LGC's screen
    is covered), the frame grows by the band's height (even, as yuv420p wants)."""

    def __init__(self, width: int, height: int) -> None:
        self.size = max(11, round(height / 32))
        self.font = _font(self.size)
        self.mono = _font(self.size, mono=True)
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
        draw.text((self.pad, top), _fit(draw, f"Étape : {step or '—'}", self.font, text_width), font=self.font,
                  fill="white")
        draw.text((self.width - self.pad - clock_width, top), clock, font=self.mono, fill="white")
        draw.text((self.pad, top + self.line), _fit(draw, f"Réseau : {condition or '—'}", self.font, text_width),
                  font=self.font, fill=(255, 214, 10))
        return image
