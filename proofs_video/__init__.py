"""Proof videos of scenario runs: captioned MP4 H.264 recorded from Chromium's DevTools screencast."""

from proofs_video.recorder import ScreenRecorder, VideoError, ffprobe_duration

__all__ = ["ScreenRecorder", "VideoError", "ffprobe_duration"]
