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
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from PIL import Image

from proofs_video.encoding import Timeline, VideoError, encode_captioned, tool

if TYPE_CHECKING:
    from playwright.sync_api import CDPSession, Frame, Page

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
        self.timeline = Timeline()
        self._t0 = 0.0
        self._end: float | None = None
        self._stopping = False

    # -- timeline -------------------------------------------------------------------------------------------------

    def caption(self, text: str) -> None:
        """From now on the banner shows ``text`` as the current step."""
        self.timeline.caption(text)

    def condition(self, text: str) -> None:
        """From now on the banner shows ``Réseau : <text>`` (e.g. ``"latence 3 s"``)."""
        self.timeline.condition(text)

    # -- recording ------------------------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        assert self._width and self._height, "size is known once started"
        return self._width, self._height

    def start(self) -> Self:
        if self._cdp is not None or self._end is not None:
            raise VideoError("enregistrement déjà démarré / recorder already started")
        tool("ffmpeg")  # fail before the scenario runs, not after
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
        encode_captioned(self.out_path, size=self.size, fps=self.fps, t0=self._t0, end=self._end,
                         pictures=self._pictures(), timeline=self.timeline)

    def _pictures(self) -> Iterator[Image.Image]:
        """The page at each output frame (the last screencast frame before it), one source JPEG decoded at a time."""
        shots = sorted(self._shots, key=lambda shot: shot.timestamp)
        times = [shot.timestamp for shot in shots]
        current: tuple[int, Image.Image] | None = None
        index = 0
        while True:
            moment = self._t0 + index / self.fps
            shot = bisect.bisect_right(times, moment) - 1
            if current is None or current[0] != shot:
                current = (shot, self._load(shots[shot].path) if shot >= 0 else Image.new("RGB", self.size, "gray"))
            yield current[1]
            index += 1

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


