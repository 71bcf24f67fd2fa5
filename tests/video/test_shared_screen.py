"""The video of a guided run from an operator's shared screen: recordings made by ffmpeg itself (not by our
code) stand for what a browser uploads; the encoded MP4 is read back frame by frame with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from proofs_video.encoding import Timeline
from proofs_video.shared_screen import Recording, encode_shared_screen, find_gaps, output_size

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is installed by scripts/setup.sh")


def webm(path: Path, colour: str, seconds: float, size: str = "640x400", *, truncate: float = 0) -> Path:
    """A VP8 WebM of one colour, as MediaRecorder would send; `truncate` cuts that share of its bytes off the end
    (a tab closed mid-segment)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s={size}:r=10",
                    "-t", str(seconds), "-c:v", "libvpx", "-b:v", "300k", str(path)], check=True)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * (1 - truncate))])
    return path


def frame_at(video: Path, second: float) -> Image.Image:
    out = video.with_name(f"frame-{second:.1f}.png")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", str(second), "-i", str(video), "-frames:v", "1", str(out)],
                   check=True)
    with Image.open(out) as image:
        return image.convert("RGB")


def mean(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(image.crop(box)).mean)


def close_to(colour: tuple[float, ...], expected: tuple[int, int, int], tolerance: float = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def test_two_shares_with_a_gap_make_one_video_that_says_where_the_screen_is_missing(tmp_path: Path) -> None:
    t0 = time.time() - 20  # the run started 20 s ago
    red = Recording(webm(tmp_path / "a.webm", "red", 6), t0 + 2, t0 + 8)  # shared after 2 s, for 6 s
    blue = Recording(webm(tmp_path / "b.webm", "blue", 6, "1280x800"), t0 + 12, t0 + 18, "l'opérateur a arrêté")
    timeline = Timeline()
    timeline.caption("Étape un", at=t0)
    timeline.caption("Étape deux", at=t0 + 10)
    timeline.condition("latence 3 s", at=t0 + 10)
    video = encode_shared_screen([blue, red], tmp_path / "run.mp4", t0=t0, end=t0 + 20, timeline=timeline,
                                 stills={"05-rouge": t0 + 5, "10-trou": t0 + 10, "15-bleu": t0 + 15},
                                 stills_dir=tmp_path / "stills")
    assert video is not None
    width, height = video.size
    assert (width, height) == (640, 400)  # the first recording's size; the second is scaled into it

    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=width,height,codec_name",
                            "-of", "default=nw=1", str(video.out_path)], capture_output=True, text=True, check=True)
    facts = dict(line.split("=", 1) for line in probe.stdout.split())
    assert facts["codec_name"] == "h264" and int(facts["width"]) == 640 and int(facts["height"]) > 400
    assert abs(float(facts["duration"]) - 20) < 0.5  # lasts the run, not the recordings

    picture = (0, 0, width, height)
    grey = (90, 90, 90)
    assert close_to(mean(frame_at(video.out_path, 1), picture), grey)  # before the first share
    assert close_to(mean(frame_at(video.out_path, 5), picture), (255, 0, 0), 40)
    assert close_to(mean(frame_at(video.out_path, 10), picture), grey)  # between the shares
    middle_blue = frame_at(video.out_path, 15)
    assert close_to(mean(middle_blue, (80, 0, 560, 400)), (0, 0, 255), 40)
    assert close_to(mean(frame_at(video.out_path, 19.5), picture), grey)  # after the operator stopped

    band = middle_blue.crop((0, height, width, middle_blue.height))
    assert ImageStat.Stat(band.convert("L")).mean[0] < 80  # the caption band: dark, under the picture…
    assert band.convert("L").getextrema()[1] > 200  # …with light text on it

    assert [(round(g.start - t0), round(g.end - t0)) for g in video.gaps] == [(0, 2), (8, 12), (18, 20)]
    assert "pas encore partagé" in video.gaps[0].reason
    assert "interrompu" in video.gaps[1].reason and "arrêté" in video.gaps[2].reason
    assert sorted(video.stills) == ["05-rouge", "15-bleu"]  # no still where nothing was shared
    with Image.open(video.stills["05-rouge"]) as still:
        assert close_to(mean(still.convert("RGB"), (0, 0, *still.size)), (255, 0, 0), 40)


def test_a_truncated_recording_keeps_what_was_uploaded(tmp_path: Path) -> None:
    t0 = time.time() - 10
    cut = Recording(webm(tmp_path / "cut.webm", "green", 8, truncate=0.4), t0, t0 + 8)
    video = encode_shared_screen([cut], tmp_path / "run.mp4", t0=t0, end=t0 + 10, timeline=Timeline())
    assert video is not None
    assert close_to(mean(frame_at(video.out_path, 1), (0, 0, 640, 400)), (0, 128, 0), 40)


def test_nothing_decodable_gives_no_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.webm"
    junk.write_bytes(b"\x1aE\xdf\xa3 not really a webm")
    assert encode_shared_screen([Recording(junk, 0, 5)], tmp_path / "run.mp4", t0=0, end=5,
                                timeline=Timeline()) is None
    assert not (tmp_path / "run.mp4").exists()


def test_gaps_and_sizes() -> None:
    assert find_gaps([], 0, 10)[0].reason == "l'opérateur n'avait pas encore partagé son écran"
    assert find_gaps([Recording(Path("x"), 0, 10)], 0, 10) == []
    assert output_size(3840, 2160) == (1600, 900)
    assert output_size(1365, 767) == (1364, 766)
