"""A guided run's visual proof from the operator's shared screen: the captioned video of the whole run and one
picture per step, each saying where it comes from; the run's metadata says whose screen it is, when it was
captured, and what is missing. Nothing is taken from the bench's own browser."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from proofs.file_names import file_slug
from proofs_video.encoding import Timeline
from proofs_video.shared_screen import Recording, encode_shared_screen, find_gaps

from .runtime import RunRecorder, Step
from .screen_share import SOURCES, WHOSE, Picture, ScreenShare

VIDEO = Path("video") / "run.mp4"


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds") if t else None


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


class SharedScreenProof:
    """Same hooks as the bench's screen recorder (caption, condition, stop), fed by the operator's uploads."""

    def __init__(self, share: ScreenShare, rec: RunRecorder, *, fps: int = 10) -> None:
        self.share, self.rec, self.fps = share, rec, fps
        self.timeline = Timeline()
        self.t0 = time.time()

    def caption(self, text: str) -> None:
        self.timeline.caption(text)

    def condition(self, text: str) -> None:
        self.timeline.condition(text)

    def stop(self) -> Path | None:
        """Ends the capture (the page is asked to stop, its last segments awaited), encodes the video, gives each
        step its picture and writes what the capture covers into the run's metadata."""
        end = time.time()
        began = time.monotonic()
        self.share.finish()
        recordings = []
        for capture in self.share.captures:
            path = self.share.capture_file(capture)
            if path is not None and capture.covered_until > capture.started:
                recordings.append(Recording(path, capture.started, min(capture.covered_until, end),
                                            capture.end_reason if capture.ended else ""))
        stills = {}  # per step: the recording at the operator's last confirmation, else at the step's end
        for step in self.rec.steps:
            moment = self._confirmed_at(step) or _epoch(step.ended)
            if moment is not None:
                stills[f"{step.n:02d}-{file_slug(step.text)}"] = moment
        video = None
        if recordings:
            video = encode_shared_screen(recordings, self.rec.dir / VIDEO, t0=self.t0, end=end,
                                         timeline=self.timeline, stills=stills,
                                         stills_dir=self.share.dir / "images-video", fps=self.fps)
        self._step_pictures(video.stills if video else {})
        gaps = video.gaps if video else find_gaps([], self.t0, end)
        self.rec.meta["ecran"] = {
            "source": "partage d'écran de l'opérateur",
            "qui": WHOSE,
            "debut_enregistrement": _iso(self.t0), "fin_enregistrement": _iso(end),
            "partages": [{"n": c.n, "debut": _iso(c.started), "fin": _iso(c.ended),
                          "couvert_jusqu_a": _iso(c.covered_until), "surface": c.surface, "libelle": c.label,
                          "format": c.mime, "segments": len(c.segments),
                          "fin_raison": c.end_reason or ("jamais terminé : page fermée ou perdue" if not c.ended
                                                         else ""),
                          **({"horloge": c.clock_note} if c.clock_note else {})} for c in self.share.captures],
            "lacunes": [{"debut": _iso(g.start), "fin": _iso(g.end), "raison": g.reason} for g in gaps],
            "refus": [{"a": _iso(r["at"]), "raison": r["raison"]} for r in self.share.refusals],
            # waiting for the page's last segments, then decoding, captioning and encoding
            "duree_traitement_s": round(time.monotonic() - began, 2),
            "duree_video_s": round(end - self.t0, 2) if video else None,
        }
        if video is None:
            reasons = [r["raison"] for r in self.share.refusals]
            (self.rec.dir / "video").mkdir(exist_ok=True)
            (self.rec.dir / "video" / "ABSENT.txt").write_text(
                "Vidéo absente : l'opérateur n'a pas partagé l'écran du LGC"
                + (f" (refus : {'; '.join(reasons)})" if reasons else "")
                + ". Les captures d'étape sont celles qu'il a téléversées, s'il y en a.\n", encoding="utf-8")
        return video.out_path if video else None

    def _confirmed_at(self, step: Step) -> float | None:
        """When the operator last confirmed or answered an instruction of this step."""
        times = [c["at"] for c in self.share.confirmations if c["step"] == step.n]
        return max(times) if times else None

    def _uploaded_picture(self, step: Step) -> Picture | None:
        """The last picture the page sent with an answer for this step (its own grab, or the operator's file)."""
        mine = [p for p in self.share.pictures if p.step == step.n]
        return max(mine, key=lambda p: p.at) if mine else None

    def _step_pictures(self, stills: dict[str, Path]) -> None:
        """Each step's picture, best first: the one the operator page grabbed from the shared track when the
        operator confirmed; the recording's frame at that instant (a browser without track grabs, or a lost
        upload); the picture the operator chose as a file (no sharing); the recording at the step's end (steps
        the operator had nothing to do in)."""
        shots = self.rec.dir / "screenshots"
        shots.mkdir(exist_ok=True)
        for step in self.rec.steps:
            name = f"{step.n:02d}-{file_slug(step.text)}"
            uploaded = self._uploaded_picture(step)
            confirmed = self._confirmed_at(step) is not None
            if uploaded is not None and uploaded.method == "piste":
                source, path = uploaded.source, uploaded.path
            elif name in stills:
                source, path = ("confirmation" if confirmed else "video"), stills[name]
            elif uploaded is not None:
                source, path = uploaded.source, uploaded.path
            else:
                step.screenshot = None
                step.screenshot_source = "aucune image de l'écran du LGC pour cette étape (pas de partage à ce moment)"
                continue
            target = shots / (name + path.suffix)
            shutil.copyfile(path, target)
            step.screenshot = str(target.relative_to(self.rec.dir))
            step.screenshot_source = SOURCES[source]
