"""`segur-bench run` as a user runs it: every REM scenario against the reference LGC (on two parallel workers), then
the flagship's proof bundle opened and checked (video, one screenshot per step, 3-s latency on INSi and ON,
hashes); the guided driver with an automated operator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

ROOT = Path(__file__).resolve().parents[1]


def segur(*args: str, timeout: int = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segur_bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def all_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenarios")
    # Two workers at once against one set of simulators, as a QA farm would: the runs must not see each other's
    # state, clock or incidents (and the suite is shorter by a few minutes).
    result = segur("run", "--all", "--parallel", "2", "--out", str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "[poste-2]" in result.stdout and (out / "logs" / "poste-2.log").is_file()
    return out


@pytest.mark.timeout(1200)
def test_every_scenario_passes_and_leaves_a_valid_bundle(all_runs: Path) -> None:
    zips = sorted((all_runs / "bundles").glob("*.zip"))
    # one bundle per scenario run (an outline's examples are runs), named by its primary id: the scenario's own
    # first tag, else its feature's
    requirements = sorted(z.name.rsplit("_", 1)[0] for z in zips)
    assert requirements == sorted([
        "LGC.DMP-UX.10.01", "LGC.DMP-UX.10.01", "SC.INS.05", "SC.DMP-ALI-PROG.06", "SC.ORDN-CONF.04",
        "SC.ORDN-CONF.04", "SC.DMP-UX.13", "SC.DMP-CONF.09.BIS", "SC.DMP-CONF.06", "SC.DMP-CONF.06.BIS",
        "SC.DMP-UX.51", "SC.DMP-UX.14.BIS", "SC.DMP-CONF.03", "SC.DMP-ALI-PROG.03", "SC.DMP-HISTO.03",
        "SC.CDA-DD.05", "SC.DMP-CONF.16", "SC.DMP-UX.14", "SC.DMP-UX.14", "SC.ORDN-CONF.06", "SC.MSS-CONF.21",
        "SC.PSC.01", "SC.MSS-CONF.20", "SC.MSS-UX.25", "SC.MSS-CONF.10", "SC.PSC.13", "SC.PSC.13",
        "LGC.MDV.06", "SC.INS-PSC.50", "SC.INS.13", "SC.INS.14", "SC.MSS-CONF.04", "LGC.CSE.12"])
    for z in zips:
        check = segur("bundle", "verify", str(z), timeout=60)
        assert check.returncode == 0 and "bundle intact" in check.stdout, (z, check.stdout, check.stderr)
        with zipfile.ZipFile(z) as bundle:
            run = json.loads(bundle.read(next(n for n in bundle.namelist() if n.endswith("/run.json"))))
            verdicts = json.loads(bundle.read(next(n for n in bundle.namelist() if n.endswith("/verdicts.json"))))
        # a DMP / CDA requirement is judged from what the DMP received (its journal or state), not only the screen
        if any(i.startswith(("SC.DMP/", "SC.CDA/")) for i in run["requirement_ids"]):
            assert any(v["ok"] and "DMP" in v["source"] and "écran" not in v["source"] for v in verdicts), z.name
        # and every scenario by what some service received, not by the screen alone
        assert any(v["ok"] and v["source"] and "écran" not in v["source"] for v in verdicts), z.name
    junit = (all_runs / "junit.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit
    assert junit.count('name="proof_bundle"') == len(zips)  # each test case points at its bundle
    results = list((all_runs / "allure-results").glob("*-result.json"))
    assert results and any(a.get("name", "").startswith("Paquet de preuves")
                           for r in results for a in json.loads(r.read_text()).get("attachments", []))


@pytest.mark.timeout(1200)
def test_the_flagship_bundle_holds_what_a_reviewer_needs(all_runs: Path, tmp_path: Path) -> None:
    bundle = sorted((all_runs / "bundles").glob("LGC.DMP-UX.10.01_*.zip"))[0]
    with zipfile.ZipFile(bundle) as z:
        z.extractall(tmp_path)
    root = next(tmp_path.iterdir())
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["requirement_id"] == "LGC.DMP/UX.10.01"
    assert manifest["requirement_ids"][:2] == ["LGC.DMP/UX.10.01", "LGC.DMP/UX.10"] and "SC.APCV.01" in \
        manifest["requirement_ids"]
    # Convergence: one row per requirement proven and proof file, each id of the DSR catalogue.
    with (root / "convergence.csv").open(encoding="utf-8-sig") as f:
        cells = [line.split(";")[0] for line in f.read().splitlines()[1:]]
    assert set(cells) == set(manifest["requirement_ids"]) and len(cells) % len(manifest["requirement_ids"]) == 0
    steps = json.loads((root / "steps.json").read_text())
    shots = sorted(p.name for p in (root / "screenshots").glob("*.png"))
    assert len(shots) == len(steps) >= 15 and all(s["status"] == "passed" for s in steps)
    # Video: an MP4 that plays (ffprobe reads a positive duration).
    video = root / "video" / "run.mp4"
    assert video.exists(), (root / "video").iterdir()
    probe = subprocess.run([shutil.which("ffprobe") or "ffprobe", "-v", "error", "-show_entries",
                            "format=duration:stream=codec_name", "-of", "json", str(video)],
                           capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    assert float(info["format"]["duration"]) > 10 and info["streams"][0]["codec_name"] == "h264"
    # 3 s of latency on INSi and ON: in the HAR of the network layer (HTTPS: the TLS connection that carried the
    # exchange, joined on the port the simulator journals), or in the simulators' journals.
    delays: dict[str, list[float]] = {"insi": [], "on": []}
    har = root / "network.har"
    log = json.loads(har.read_text())["log"] if har.exists() else {}
    turns = {c["upstream_port"]: [t["_injected_ms"] for t in c["turns"]]
             for c in log.get("_connections", []) if c.get("kind") == "tls" and "upstream_port" in c}
    for e in log.get("entries", []):
        if e.get("_service") in delays:
            delays[e["_service"]].append(float(e.get("_injected_ms") or 0))
    tls_seen = 0
    for service in delays:
        for line in (root / "journals" / f"{service}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            delays[service].append(float(entry.get("waited_ms") or 0))
            if entry.get("tls"):
                tls_seen += 1
                assert entry["tls"]["client_cert"]["sha256"], entry["tls"]  # who connected, in the proof
                delays[service] += turns.get(int(entry["client"].rsplit(":", 1)[1]), [])
    assert max(delays["insi"]) >= 3000 and max(delays["on"]) >= 3000, delays
    assert tls_seen, "the flagship runs over HTTPS"
    assert "Empreinte SHA-256" in (root / "journals" / "insi.txt").read_text()
    timings = json.loads((root / "timings.json").read_text())
    assert timings["actions"] and timings["max_ms"] < 2000  # a blocked UI would wait for the 3-s call
    # Tampering is caught.
    shot = root / "screenshots" / shots[0]
    shot.write_bytes(shot.read_bytes()[:-1] + b"\x00")
    check = segur("bundle", "verify", str(root), timeout=60)
    assert check.returncode != 0 and shots[0] in check.stdout + check.stderr


def frame(video: Path, second: float, out: Path) -> Image.Image:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{max(0.0, second):.2f}", "-i", str(video), "-frames:v", "1",
                    str(out)], check=True)
    with Image.open(out) as image:
        return image.convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two pictures (0-255), compared at a small common size."""
    size = (160, 100)
    return sum(ImageStat.Stat(ImageChops.difference(a.resize(size), b.resize(size))).mean) / 3


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


NAVY = (0, 0, 145)  # the reference LGC's header bar and buttons (--bleu); the operator page has none


def navy_share(image: Image.Image) -> float:
    """Share of the picture in the reference LGC's blue."""
    data = image.resize((image.width // 4, image.height // 4), Image.Resampling.NEAREST).tobytes()
    pixels = [data[i:i + 3] for i in range(0, len(data), 3)]
    return sum(1 for p in pixels if all(abs(a - b) < 30 for a, b in zip(p, NAVY, strict=True))) / len(pixels)


@pytest.mark.timeout(900)
def test_guided_run_films_the_lgc_the_operator_shared(tmp_path: Path) -> None:
    """The automated operator shares the reference LGC's tab from the operator page and drives the LGC in it: the
    bundle's video and step pictures come from that shared screen, not from the operator page."""
    # A short scenario with actions, questions and steps judged from the journals only (the flagship's two runs
    # under 3 s of latency cost a minute and a half more, and prove nothing more about the shared screen)
    result = segur("run", "SC.MSS/CONF.21", "--driver", "guided", "--operator", "auto", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    bundles = sorted((tmp_path / "bundles").glob("SC.MSS-CONF.21_*.zip"))
    assert len(bundles) == 1
    root = bundles[0].with_suffix("")
    run = json.loads((root / "run.json").read_text(encoding="utf-8"))
    steps = json.loads((root / "steps.json").read_text(encoding="utf-8"))
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert run["driver"] == "guided" and run["outcome"] == "passed"
    screen = run["ecran"]
    assert screen["qui"].startswith("écran du LGC sous test") and screen == manifest["ecran"]
    (capture,) = screen["partages"]
    assert capture["surface"] == "browser" and capture["fin_raison"] == "fin de l'exécution"
    assert capture["segments"] >= 3  # the recording arrives in pieces, assembled into one video
    # before the automated operator clicks "Partager", a moment without the LGC's screen, said as such; it ends
    # before the scenario's first step (how long the run's set-up takes depends on the machine's load: up to 30 s
    # seen on a loaded 2-core CI)
    assert all(g["raison"] == "l'opérateur n'avait pas encore partagé son écran" for g in screen["lacunes"])
    assert all(epoch(g["fin"]) <= epoch(steps[0]["started"]) + 0.5 for g in screen["lacunes"]), screen["lacunes"]

    video = root / "video" / "run.mp4"
    duration = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                     "default=nw=1:nk=1", str(video)], capture_output=True, text=True,
                                    check=True).stdout)
    t0, t1 = epoch(screen["debut_enregistrement"]), epoch(screen["fin_enregistrement"])
    assert abs(duration - (t1 - t0)) < 0.5  # the video lasts the recording, which spans every step
    assert t0 <= epoch(steps[0]["started"]) and t1 >= epoch(steps[-1]["ended"])

    grabbed, at_end = "image de l'écran partagé, prise par la page", "image extraite de la vidéo"
    for step in steps:  # one picture per step, from the shared screen, each saying so
        assert step["screenshot"], step
        assert step["screenshot_source"].startswith((grabbed, at_end)), step
    confirmed = [s for s in steps if s["screenshot_source"].startswith(grabbed)]
    assert len(confirmed) >= 5  # the operator's actions and answers
    assert any(s["screenshot_source"].startswith(at_end) for s in steps)  # steps judged from the journals only

    # The picture the operator page took at a confirmation is the LGC (its blue header bar or buttons; the
    # operator page has none), and the video shows the same screen around that instant.
    run_dir = next(d for d in (tmp_path / "runs").iterdir() if d.name == run["run_id"])
    state = json.loads((run_dir / ".partage-ecran" / "etat.json").read_text(encoding="utf-8"))
    clicked = {c["step"]: c["at"] for c in state["confirmations"]}  # the last confirmation of each step
    for step in confirmed[1:]:  # after the login page
        with Image.open(root / step["screenshot"]) as shot:
            picture = shot.convert("RGB")
        assert navy_share(picture) > 0.002, step["text"]
        # the page's grab and the recording are two paths from one shared track: under CI load (software
        # rendering, 2 cores) they were seen up to a second apart
        around = [frame(video, clicked[step["n"]] - t0 + dt, tmp_path / "f.png")
                  for dt in (-1.5, -1, -0.5, 0, 0.5, 1)]
        closest = min(difference(f.crop((0, 0, picture.width, picture.height)), picture) for f in around)
        assert closest < 6, (step["text"], closest)
    moving = around[-1]
    assert navy_share(moving.crop((0, 0, picture.width, picture.height))) > 0.002
    band = moving.crop((0, picture.height, moving.width, moving.height)).convert("L")
    assert band.height >= 40 and ImageStat.Stat(band).mean[0] < 80 and band.getextrema()[1] > 200  # captions

    index = (root / "index.html").read_text(encoding="utf-8")
    assert "Écran filmé" in index and "partagé par l&#39;opérateur" in index
    csv = (root / "convergence.csv").read_text(encoding="utf-8-sig")
    assert "partagé par l'opérateur" in csv
    assert subprocess.run([sys.executable, "-m", "segur_bench", "bundle", "verify", str(bundles[0])], cwd=ROOT,
                          capture_output=True, timeout=60).returncode == 0


@pytest.mark.timeout(600)
def test_guided_driver_plays_a_dmp_scenario_and_survives_a_closed_operator_tab(tmp_path: Path) -> None:
    """An operator's answers and actions suffice for a DMP scenario too; the verdicts still come from the DMP. The
    operator page is closed after the third instruction: the run goes on (answered directly), the bundle keeps
    the part of the shared screen that was uploaded and says what is missing."""
    result = segur("run", "SC.DMP/CONF.03", "--driver", "guided", "--operator", "auto", "--out", str(tmp_path),
                   env={"SEGUR_BENCH_AUTO_OPERATOR_CLOSE_AFTER": "3"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "page de l'opérateur fermée après la consigne 3" in result.stdout + result.stderr
    (bundle,) = sorted((tmp_path / "bundles").glob("SC.DMP-CONF.03_*.zip"))
    root = bundle.with_suffix("")
    with zipfile.ZipFile(bundle) as z:
        run = json.loads(z.read(next(n for n in z.namelist() if n.endswith("/run.json"))))
        verdicts = json.loads(z.read(next(n for n in z.namelist() if n.endswith("/verdicts.json"))))
        manifest = json.loads(z.read(next(n for n in z.namelist() if n.endswith("/manifest.json"))))
        steps = json.loads(z.read(next(n for n in z.namelist() if n.endswith("/steps.json"))))
    assert run["driver"] == "guided" and run["outcome"] == "passed"
    assert any("DMPNotAuthor" in v["assertion"] and v["source"] == "journal DMP" for v in verdicts)

    (capture,) = run["ecran"]["partages"]
    assert capture["fin"] is None and capture["fin_raison"].startswith("jamais terminé")
    assert capture["segments"] >= 1  # what was uploaded before the tab closed is kept…
    *before, gap = run["ecran"]["lacunes"]  # before the share (a moment), then from the closed tab to the end
    assert all("pas encore partagé" in g["raison"] for g in before)
    assert "interrompu" in gap["raison"] and gap["fin"] == run["ecran"]["fin_enregistrement"]
    assert epoch(gap["fin"]) - epoch(gap["debut"]) > 5
    assert any(a["path"] == "video/run.mp4" and "pas d'image de l'écran du LGC" in a["raison"]
               for a in manifest["absents"])  # …and what is missing is said
    assert steps[0]["screenshot"] and steps[0]["screenshot_source"].startswith("image de l'écran partagé")
    late = [s for s in steps if epoch(s["started"]) > epoch(gap["debut"]) + 1]
    assert late and all(s["screenshot"] is None and s["screenshot_source"].startswith("aucune image")
                        for s in late)
    video = root / "video" / "run.mp4"
    t0 = epoch(run["ecran"]["debut_enregistrement"])
    last = frame(video, epoch(gap["fin"]) - t0 - 1, tmp_path / "last.png")
    grey = ImageStat.Stat(last.crop((0, 0, last.width, 200))).mean
    assert all(abs(c - 90) < 20 for c in grey)  # the gap's placeholder, not the operator page nor the LGC
    first = frame(video, epoch(steps[0]["ended"]) - t0 - 0.3, tmp_path / "first.png")
    assert navy_share(first) > 0.002 or difference(first, Image.new("RGB", first.size, (90, 90, 90))) > 20
