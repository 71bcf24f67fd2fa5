"""Proof bundles built from a realistic LGC.DMP/UX.10.01 run: layout, manifest, index.html, Convergence export,
and tamper detection. Hashes and links are checked independently of the code under test (hashlib, lxml)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import lxml.html
import pytest
from runfixture import PDF_BYTES, REQUIREMENT, STEPS, ZIP_BYTES, png, write_run

from proofs import build_bundle, main_build, main_verify, verify_bundle

NAME = "LGC.DMP-UX.10.01_20261125-090000"
NATURES = {"vidéo", "capture d'écran", "log", "fichier"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("bundle")
    zip_path = build_bundle(write_run(base / "run"), base / "out")
    return zip_path, zip_path.with_suffix("")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


# -- layout and manifest -------------------------------------------------------------------------------------


def test_zip_is_named_after_the_requirement_with_one_top_folder_and_sorted_entries(built: tuple[Path, Path]) -> None:
    zip_path, root = built
    assert zip_path.name == f"{NAME}.zip"
    assert root.is_dir() and root.parent == zip_path.parent
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        contents = {n.removeprefix(f"{NAME}/"): zf.read(n) for n in names if not n.endswith("/")}
    assert all(n == f"{NAME}/" or n.startswith(f"{NAME}/") for n in names)
    assert names == sorted(names)
    assert f"{NAME}/manifest.json" in names
    assert contents == _files(root)  # the kept folder is exactly what the zip holds


def test_manifest_lists_every_file_with_its_sha256(built: tuple[Path, Path]) -> None:
    _, root = built
    manifest = _manifest(root)
    files = _files(root)
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, data in files.items():
        if path == "manifest.json":
            continue
        assert listed[path]["sha256"] == _sha256(data), path
        assert listed[path]["size"] == len(data), path
        assert listed[path]["nature"] in NATURES
        assert listed[path]["description"]
    assert listed["video/run.mp4"]["nature"] == "vidéo"
    assert listed["screenshots/01-lecture-apcv.png"]["nature"] == "capture d'écran"
    assert "Étape 1" in listed["screenshots/01-lecture-apcv.png"]["description"]
    assert listed["journals/insi.txt"]["nature"] == "log"
    assert listed["network.har"]["nature"] == "log"
    run = json.loads(files["run.json"])
    for key in ("requirement_id", "scenario", "personas", "bench_version", "lgc", "started", "ended", "driver",
                "network_condition", "outcome"):
        assert manifest[key] == run[key], key
    assert manifest["absents"] == []


def test_same_run_gives_the_same_bundle_bytes(built: tuple[Path, Path], tmp_path: Path) -> None:
    zip_path, _ = built
    again = build_bundle(write_run(tmp_path / "run"), tmp_path / "out")
    assert again.read_bytes() == zip_path.read_bytes()


def test_rebuilding_into_the_same_folder_replaces_the_previous_bundle(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    first = build_bundle(run, tmp_path / "out")
    (first.with_suffix("") / "stale.txt").write_text("reste d'un ancien bundle")
    second = build_bundle(run, tmp_path / "out")
    assert second == first
    assert not (second.with_suffix("") / "stale.txt").exists()
    assert verify_bundle(second) == [] and verify_bundle(second.with_suffix("")) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [NAME, f"{NAME}.zip"]  # no staging left


# -- index.html ----------------------------------------------------------------------------------------------


class _Balance(HTMLParser):
    """Checks that every non-void element is closed, in order: lxml.html alone would repair anything."""

    VOID: ClassVar[set[str]] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                                "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> at {self.getpos()} while open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def _check_page(page: Path, root: Path) -> lxml.html.HtmlElement:
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    balance = _Balance()
    balance.feed(text)
    balance.close()
    assert balance.errors == [] and balance.stack == [], (balance.errors, balance.stack)
    doc = lxml.html.fromstring(text)
    assert doc.get("lang") == "fr"
    assert not doc.xpath("//script | //link | //iframe | //object | //base")  # nothing to fetch, nothing to run
    refs = [(el.tag, attr, el.get(attr)) for el in doc.iter() if isinstance(el.tag, str)
            for attr in ("src", "href", "poster", "srcset") if el.get(attr) is not None]
    assert refs
    for tag, attr, ref in refs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc and not ref.startswith("/"), (tag, attr, ref)
        target = (page.parent / unquote(parts.path)).resolve()
        assert target.is_relative_to(root.resolve()), ref
        assert target.is_file(), f"{page.name}: {tag}@{attr}={ref} does not exist"
    for style in doc.xpath("//style/text() | //@style"):
        assert "url(" not in style and "@import" not in style
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    return doc


def test_index_is_well_formed_offline_and_links_only_to_bundle_files(built: tuple[Path, Path]) -> None:
    _, root = built
    doc = _check_page(root / "index.html", root)
    assert doc.xpath("//video/@src") == ["video/run.mp4"]
    thumbs = doc.xpath("//img/@src")
    assert [unquote(t) for t in thumbs] == [f"screenshots/{name}" for _, _, name, _ in STEPS]
    hrefs = {unquote(h) for h in doc.xpath("//a/@href")}
    assert {"manifest.json", "network.har", "convergence.csv", "convergence.xlsx", "journals/insi.html",
            "journals/insi.txt", "journals/insi.jsonl"} <= hrefs
    text = doc.text_content()
    for expected in (REQUIREMENT, "latence 3 s", "RÉUSSI", "CLÉRICO Côme", "143110095083713", "INSi appelé avant ON",
                     "ouvrir la liste des patients", "12,3 ms"):
        assert expected in text, expected


def test_index_escapes_what_comes_from_the_run(built: tuple[Path, Path]) -> None:
    _, root = built
    raw = (root / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in raw
    assert "&lt;script&gt;alert(" in raw
    doc = lxml.html.fromstring(raw)
    assert "le médecin rédige l'ordonnance <script>alert('x')</script>" in doc.text_content()


def test_journal_pages_are_well_formed_and_offline(built: tuple[Path, Path]) -> None:
    _, root = built
    for page in sorted((root / "journals").glob("*.html")):
        _check_page(page, root)


def test_index_summarises_each_service_journal(built: tuple[Path, Path]) -> None:
    _, root = built
    doc = lxml.html.fromstring((root / "index.html").read_bytes())
    rows = {r.xpath("string(td[1])"): r for r in doc.xpath("//h2[.='Journaux des services simulés']"
                                                            "/following-sibling::table[1]/tbody/tr")}
    mss = next(r for title, r in rows.items() if title.startswith("MSSanté"))
    assert mss.xpath("string(td[2])").startswith("3")
    assert "sans réponse" in mss.xpath("string(td[2])")
    assert "SMTP DATA × 1" in mss.xpath("string(td[3])")
    assert mss.xpath("string(td[6])") == "6000,0 ms"  # total injected latency


# -- pretty journals -----------------------------------------------------------------------------------------


def test_pretty_insi_journal_indents_the_soap_xml_and_shows_timings_and_faults(built: tuple[Path, Path]) -> None:
    _, root = built
    raw = (root / "journals" / "insi.jsonl").read_text(encoding="utf-8")
    assert "\n  <soap:Body>" not in raw  # the wire body is on one line: indentation is the view's work
    text = (root / "journals" / "insi.txt").read_text(encoding="utf-8")
    assert "\n  <soap:Body>\n    <ins:RECSANSVITALE>\n      <ins:NomNaissance>CLÉRICO</ins:NomNaissance>" in text
    assert "\n      <CR>\n        <CodeCR>00</CodeCR>" in text
    assert "2026-11-25T09:00:05.100Z" in text
    assert "3012.481 ms" in text
    assert "Latence injectée (mesurée) : 3000.400 ms" in text
    assert "latence fixe de 3000 ms" in text and "incident latence-3s" in text
    assert "POST http://127.0.0.1:8101/lps/ServiceIdentiteCertifiee HTTP/1.1" in text
    html = lxml.html.fromstring((root / "journals" / "insi.html").read_bytes())
    assert "<ins:Prenom>Côme</ins:Prenom>" in html.xpath("string(//pre[contains(., 'RECSANSVITALE')])")


def test_pretty_journals_summarise_binary_content_by_size_and_sha256(built: tuple[Path, Path]) -> None:
    _, root = built
    dmp = (root / "journals" / "dmp.txt").read_text(encoding="utf-8")
    assert "── partie 1/2 (application/xop+xml) ──" in dmp
    assert '\n      <xds:Document id="doc1">' in dmp  # XML part of the MTOM package indented
    assert f"{len(PDF_BYTES)} octets, type application/pdf, SHA-256 {_sha256(PDF_BYTES)}" in dmp
    mss = (root / "journals" / "mss.txt").read_text(encoding="utf-8")
    assert "Subject: XDM/1.0/DDM+Ordonnance CLERICO Côme 19431110" in mss
    assert f"{len(ZIP_BYTES)} octets, type application/zip, SHA-256 {_sha256(ZIP_BYTES)}" in mss
    assert "Commande" in mss and "SMTP QUIT" in mss and "aucune réponse" in mss
    on = (root / "journals" / "on.txt").read_text(encoding="utf-8")
    assert f"type image/png, SHA-256 {_sha256(png((0, 0, 0), (21, 21)))}" in on
    assert '"statut": "enregistree"' in on  # JSON indented
    psc = (root / "journals" / "psc.txt").read_text(encoding="utf-8")
    assert "redirect_uri = http://localhost/cb" in psc


# -- Convergence export --------------------------------------------------------------------------------------


def _expected_proofs() -> list[str]:
    journals = [f"journals/{s}.{ext}" for s in ("dmp", "insi", "mss", "on", "psc") for ext in ("txt", "jsonl")]
    return ["video/run.mp4", *(f"screenshots/{name}" for _, _, name, _ in STEPS), *journals, "network.har",
            "verdicts.json"]


def test_convergence_csv_has_one_row_per_proof_for_french_excel(built: tuple[Path, Path]) -> None:
    _, root = built
    data = (root / "convergence.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert rows[0] == ["SEGUR_REM", "REF_PREUVE", "NATPREUVE", "FICHIER", "DESCRIPTION"]
    body = rows[1:]
    assert [r[3] for r in body] == _expected_proofs()
    assert {r[0] for r in body} == {REQUIREMENT}
    assert [r[1] for r in body] == [f"LGC.DMP-UX.10.01-P{n:02d}" for n in range(1, len(body) + 1)]
    natures = {r[3]: r[2] for r in body}
    assert natures["video/run.mp4"] == "vidéo"
    assert natures["screenshots/01-lecture-apcv.png"] == "capture d'écran"
    assert natures["journals/insi.txt"] == natures["network.har"] == "log"
    assert natures["verdicts.json"] == "fichier"
    assert all(r[4] for r in body)
    assert all((root / r[3]).is_file() for r in body)
    refs = {f["path"]: f.get("ref_preuve") for f in _manifest(root)["files"]}
    assert all(refs[r[3]] == r[1] for r in body)


def test_convergence_xlsx_opens_with_openpyxl_and_matches_the_csv(built: tuple[Path, Path]) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    _, root = built
    ws = openpyxl.load_workbook(root / "convergence.xlsx", read_only=True).active
    cells = [[c if c is not None else "" for c in row] for row in ws.iter_rows(values_only=True)]
    csv_rows = list(csv.reader(io.StringIO((root / "convergence.csv").read_text(encoding="utf-8-sig"), newline=""),
                               delimiter=";"))
    assert cells == csv_rows


# -- degraded runs -------------------------------------------------------------------------------------------


def test_missing_video_and_har_are_stated_not_hidden(tmp_path: Path) -> None:
    zip_path = build_bundle(write_run(tmp_path / "run", video=False, har=False), tmp_path / "out")
    root = zip_path.with_suffix("")
    absent = {a["path"]: a["raison"] for a in _manifest(root)["absents"]}
    assert "vidéo absente" in absent["video/run.mp4"]
    assert "network.har" in absent
    doc = _check_page(root / "index.html", root)
    assert not doc.xpath("//video")
    assert "vidéo absente" in doc.text_content()
    rows = (root / "convergence.csv").read_text(encoding="utf-8-sig")
    assert ";vidéo;" not in rows and "network.har" not in rows
    assert verify_bundle(zip_path) == []


def test_screenshot_paths_leaving_the_run_folder_are_refused(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (tmp_path / "secret.png").write_bytes(png((1, 2, 3)))
    steps = json.loads((run / "steps.json").read_text(encoding="utf-8"))
    steps[0]["screenshot"] = "../secret.png"
    (run / "steps.json").write_text(json.dumps(steps), encoding="utf-8")
    root = build_bundle(run, tmp_path / "out").with_suffix("")
    assert not any("secret" in p for p in _files(root))
    assert any(a["path"] == "../secret.png" for a in _manifest(root)["absents"])
    _check_page(root / "index.html", root)


def test_main_build_reports_success_and_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_build(write_run(tmp_path / "run"), tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert f"{NAME}.zip" in out and "SHA-256" in out
    assert main_build(tmp_path / "nowhere", tmp_path / "out2") == 1
    assert "run.json" in capsys.readouterr().err


# -- verification --------------------------------------------------------------------------------------------


def _tampered_zip(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """Copy of a bundle zip with some members replaced (bytes), removed (None) or added — a consistent zip,
    as a person editing the archive would produce, so the CRC check of zipfile alone cannot catch it."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            rel = info.filename.removeprefix(f"{NAME}/")
            if rel in change:
                data = change.pop(rel)
                if data is not None:
                    zout.writestr(info.filename, data)
                continue
            zout.writestr(info, zin.read(info))
        for rel, data in change.items():
            zout.writestr(f"{NAME}/{rel}", data)
    return dst


def _flip(data: bytes, at: int = 40) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


SHOT = "screenshots/03-ordonnance.png"


def test_intact_bundle_verifies_as_zip_and_folder(built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    zip_path, root = built
    assert verify_bundle(zip_path) == []
    assert verify_bundle(root) == []
    assert verify_bundle(root / "manifest.json") == []
    assert main_verify(zip_path) == 0
    assert capsys.readouterr().out.strip() == f"bundle intact ({len(_files(root))} fichiers)"


@pytest.mark.parametrize("form", ["folder", "zip"])
def test_one_modified_byte_of_a_screenshot_is_caught(built: tuple[Path, Path], tmp_path: Path, form: str) -> None:
    zip_path, root = built
    original = (root / SHOT).read_bytes()
    if form == "folder":
        target = tmp_path / NAME
        shutil.copytree(root, target)
        (target / SHOT).write_bytes(_flip(original))
    else:
        target = _tampered_zip(zip_path, tmp_path / "t.zip", {SHOT: _flip(original)})
    problems = verify_bundle(target)
    assert len(problems) == 1
    assert problems[0].startswith(f"fichier modifié : {SHOT}")
    assert _sha256(original) in problems[0]


def test_a_byte_changed_in_place_inside_the_zip_is_caught(built: tuple[Path, Path], tmp_path: Path) -> None:
    zip_path, root = built
    data = zip_path.read_bytes()
    png_bytes = (root / SHOT).read_bytes()  # PNG members are stored, so their bytes are in the archive as they are
    at = data.index(png_bytes) + 60
    target = tmp_path / "raw.zip"
    target.write_bytes(_flip(data, at))
    problems = verify_bundle(target)
    assert problems and SHOT in problems[0]


@pytest.mark.parametrize("form", ["folder", "zip"])
def test_deleted_file_is_caught(built: tuple[Path, Path], tmp_path: Path, form: str) -> None:
    zip_path, root = built
    if form == "folder":
        target = tmp_path / NAME
        shutil.copytree(root, target)
        (target / "journals" / "dmp.jsonl").unlink()
    else:
        target = _tampered_zip(zip_path, tmp_path / "t.zip", {"journals/dmp.jsonl": None})
    assert verify_bundle(target) == ["fichier manquant : journals/dmp.jsonl"]


@pytest.mark.parametrize("form", ["folder", "zip"])
def test_added_unlisted_file_is_caught(built: tuple[Path, Path], tmp_path: Path, form: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    zip_path, root = built
    if form == "folder":
        target = tmp_path / NAME
        shutil.copytree(root, target)
        (target / "screenshots" / "99-ajout.png").write_bytes(png((9, 9, 9)))
    else:
        target = _tampered_zip(zip_path, tmp_path / "t.zip", {"screenshots/99-ajout.png": png((9, 9, 9))})
    assert verify_bundle(target) == ["fichier non listé dans le manifeste : screenshots/99-ajout.png"]
    assert main_verify(target) == 1
    out = capsys.readouterr().out
    assert "NON intact" in out and "99-ajout.png" in out


def test_manifest_edits_and_broken_inputs_are_reported(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, root = built
    target = tmp_path / NAME
    shutil.copytree(root, target)
    (target / "manifest.json").unlink()
    assert verify_bundle(target) == ["manifeste absent : manifest.json introuvable"]
    (target / "manifest.json").write_text("{pas du json", encoding="utf-8")
    assert verify_bundle(target)[0].startswith("manifeste illisible")
    assert verify_bundle(tmp_path / "absent.zip") == [f"bundle introuvable : {tmp_path / 'absent.zip'}"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr(f"{NAME}/manifest.json", json.dumps({"format": "segur-bench/proof-bundle/1", "files": [
            {"path": "../../etc/passwd", "size": 1, "sha256": "0"}]}))
        zf.writestr(f"{NAME}/../x", b"x")
    problems = verify_bundle(evil)
    assert any("chemin refusé" in p for p in problems)
    assert any("entrée de manifeste invalide" in p for p in problems)


def test_a_guided_runs_shared_screen_and_its_gaps_are_said_everywhere(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    meta["driver"] = "guided"
    meta["ecran"] = {
        "source": "partage d'écran de l'opérateur",
        "qui": "écran du LGC sous test, partagé par l'opérateur depuis son navigateur",
        "partages": [{"n": 1, "debut": "2026-11-25T09:00:02Z", "fin": None,
                      "couvert_jusqu_a": "2026-11-25T09:00:40Z", "surface": "window",
                      "fin_raison": "jamais terminé : page fermée ou perdue"}],
        "lacunes": [{"debut": "2026-11-25T09:00:40Z", "fin": "2026-11-25T09:01:02Z",
                     "raison": "partage interrompu à 09:00:40"}],
    }
    (run / "run.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    steps = json.loads((run / "steps.json").read_text(encoding="utf-8"))
    steps[0]["screenshot_source"] = "image téléversée par l'opérateur"
    (run / "steps.json").write_text(json.dumps(steps, ensure_ascii=False), encoding="utf-8")
    root = build_bundle(run, tmp_path / "out").with_suffix("")
    manifest = _manifest(root)
    assert manifest["ecran"] == meta["ecran"]
    assert any(a["path"] == "video/run.mp4" and "de 09:00:40 UTC à 09:01:02 UTC" in a["raison"]
               for a in manifest["absents"])
    rows = (root / "convergence.csv").read_text(encoding="utf-8-sig")
    assert "partagé par l'opérateur depuis son navigateur (capté de 09:00:02 UTC à 09:00:40 UTC)" in rows
    assert "sans image de l'écran du LGC de 09:00:40 UTC à 09:01:02 UTC (partage interrompu à 09:00:40)" in rows
    assert "source : image téléversée par l'opérateur" in rows
    text = _check_page(root / "index.html", root).text_content()
    assert "Écran filmé" in text and "surface « window »" in text and "image téléversée par l'opérateur" in text


def test_a_malformed_screen_record_does_not_stop_the_bundle(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    meta["ecran"] = {"qui": "x", "partages": "pas une liste", "lacunes": [3, None, {"raison": "r"}]}
    (run / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    root = build_bundle(run, tmp_path / "out").with_suffix("")
    assert sum("pas d'image de l'écran du LGC" in a["raison"] for a in _manifest(root)["absents"]) == 1
    _check_page(root / "index.html", root)
