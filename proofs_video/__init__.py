"""Proof videos of scenario runs: captioned MP4 H.264, from Chromium's DevTools screencast (the bench's browser)
or from the screen an operator shared (guided runs)."""

from proofs_video.encoding import VideoError, ffprobe_duration
from proofs_video.recorder import ScreenRecorder

__all__ = ["ScreenRecorder", "VideoError", "ffprobe_duration"]
