"""Build and verify proof bundles.

A bundle is a pure function of a scenario run directory (see README.md for the contract): the same run
gives byte-identical files and zip, so a bundle can be rebuilt and compared. It holds every file of the
run, readable journals, `index.html` (offline, for the ANS reviewer), the Convergence export and
`manifest.json`, which lists every other file with its size and SHA-256 so tampering is detectable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

import jinja2

from scenarios.requirements import CatalogueError, check_ids

from . import convergence as conv
from .journal_view import load_journal, render_text

FORMAT = "segur-bench/proof-bundle/1"
MANIFEST = "manifest.json"
INDEX = "index.html"
VIDEO = "video/run.mp4"
HAR = "network.har"
_RESERVED = {MANIFEST, INDEX, conv.CSV_NAME, conv.XLSX_NAME}
_TEMPLATES = Path(__file__).parent / "templates"
_STORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".mp4", ".webm", ".zip", ".xlsx", ".gz"}  # compressed
_VIDEO_SUFFIXES = {".mp4", ".webm", ".mkv", ".mov"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
_CHUNK = 1024 * 1024


class BundleError(Exception):
    """The run directory cannot be turned into a bundle; the message (French) says why."""


@dataclass
class Run:
    dir: Path
    meta: dict
    steps: list[dict]
    timings: dict | None
    verdicts: list[dict] | None
    started: datetime
    notes: list[dict] = field(default_factory=list)  # what is absent, and why (manifest "absents")


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX, relative to the bundle root
    size: int
    sha256: str
    nature: str
    description: str
    ref: str | None = None  # REF_PREUVE when the file is a proof of the Convergence deposit

    def as_dict(self) -> dict:
        d = {"path": self.path, "size": self.size, "sha256": self.sha256, "nature": self.nature,
             "description": self.description}
        if self.ref:
            d["ref_preuve"] = self.ref
        return d


# -- run directory -----------------------------------------------------------------------------------------


def _read_json(path: Path, expected: type, what: str) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{what} illisible ({path.name}) : {exc}") from None
    if not isinstance(value, expected):
        kind = "un objet JSON" if expected is dict else "une liste JSON"
        raise BundleError(f"{what} ({path.name}) doit contenir {kind}")
    return value


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise BundleError(f"dossier d'exécution invalide : {run_dir / 'run.json'} introuvable")
    meta = _read_json(run_dir / "run.json", dict, "métadonnées de l'exécution")
    if not isinstance(meta.get("requirement_id"), str) or not meta["requirement_id"].strip():
        raise BundleError("run.json : « requirement_id » (identifiant de l'exigence) manquant")
    ids = meta.setdefault("requirement_ids", [meta["requirement_id"]])
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids) \
            or ids[0] != meta["requirement_id"]:
        raise BundleError("run.json : « requirement_ids » doit être la liste des exigences prouvées, "
                          "« requirement_id » en tête")
    try:
        check_ids(ids, "run.json")
    except CatalogueError as exc:
        raise BundleError(str(exc)) from None
    started = _instant(meta.get("started"))
    if started is None:
        raise BundleError("run.json : « started » manquant ou non ISO-8601 (il date le bundle et son nom)")

    def optional(name: str, expected: type, what: str) -> Any:
        path = run_dir / name
        if not path.is_file():
            notes.append({"path": name, "raison": f"{what} non fourni(e) par l'exécution"})
            return None
        return _read_json(path, expected, what)

    notes: list[dict] = []
    steps = optional("steps.json", list, "étapes du scénario") or []
    timings = optional("timings.json", dict, "mesures de réactivité de l'interface")
    verdicts = optional("verdicts.json", list, "verdicts des assertions")
    if not (run_dir / VIDEO).is_file():
        notes.append({"path": VIDEO, "raison": "vidéo absente : l'enregistrement a échoué ou n'a pas été produit"})
    for gap in _screen_list(_screen(meta), "lacunes"):  # a guided run's shared screen: what the video cannot show
        notes.append({"path": VIDEO, "raison": f"pas d'image de l'écran du LGC de {_clock(gap.get('debut'))} "
                                               f"à {_clock(gap.get('fin'))} : {gap.get('raison')}"})
    if not (run_dir / HAR).is_file():
        notes.append({"path": HAR, "raison": "capture HAR du trafic réseau non produite"})
    for step in steps:
        shot = step.get("screenshot") if isinstance(step, dict) else None
        if shot and (_safe_relpath(shot) is None or not (run_dir / shot).is_file()):
            notes.append({"path": str(shot), "raison": f"capture de l'étape {step.get('n', '?')} introuvable"})
    return Run(run_dir, meta, [s for s in steps if isinstance(s, dict)], timings,
               [v for v in verdicts if isinstance(v, dict)] if verdicts is not None else None, started, notes)


def bundle_name(requirement_id: str, started: datetime) -> str:
    """`LGC.DMP-UX.10.01_20261125-090000`: requirement id made file-safe, then the run's start (UTC)."""
    return f"{conv.safe_requirement_id(requirement_id)}_{started.astimezone(UTC):%Y%m%d-%H%M%S}"


def _safe_relpath(value: object) -> PurePosixPath | None:
    """A relative path that stays inside its root, or None (the runner's files are not trusted blindly)."""
    if not isinstance(value, str) or not value or "\\" in value or "\x00" in value:
        return None
    p = PurePosixPath(value)
    if p.is_absolute() or any(part in ("", ".", "..") for part in p.parts):
        return None
    return p


def _run_files(run: Run, exclude: Path) -> list[PurePosixPath]:
    """Every regular file of the run (not hidden, not a symlink, not the output folder), sorted."""
    exclude = exclude.resolve()
    found = []
    for root, dirs, files in os.walk(run.dir):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (root_path / d).is_symlink()
                         and (root_path / d).resolve() != exclude)
        for name in files:
            path = root_path / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            found.append(PurePosixPath(path.relative_to(run.dir).as_posix()))
    return sorted(found)


# -- descriptions ------------------------------------------------------------------------------------------


_STATUS = {"passed": "réussie", "failed": "échouée", "skipped": "non exécutée", "pending": "non exécutée"}
_OUTCOME = {"passed": "réussi", "failed": "échoué"}
_FIXED_DESCRIPTIONS = {
    "run.json": "Métadonnées de l'exécution : exigence, scénario, personas, versions, horaires, condition réseau",
    "steps.json": "Étapes du scénario avec horodatage, statut et capture associée",
    "timings.json": "Mesures de réactivité de l'interface pendant les appels aux services",
    "verdicts.json": "Verdicts des assertions vérifiées sur les journaux des services simulés",
    HAR: "Capture HAR 1.2 du trafic réseau entre le LGC et les services",
    INDEX: "Page de synthèse pour le relecteur, consultable hors ligne",
    conv.CSV_NAME: "Tableau des preuves pour le dépôt Convergence (CSV UTF-8 avec BOM, séparateur « ; »)",
    conv.XLSX_NAME: "Tableau des preuves pour le dépôt Convergence (classeur Excel)",
}


def _service_title(service: str) -> str:
    try:  # the registry knows the services' French titles; a vendor's extra journal keeps its file name
        from simulators.registry import SERVICES
    except Exception:
        return service
    info = SERVICES.get(service)
    return info.title if info else service


def _nature(path: PurePosixPath) -> str:
    suffix = path.suffix.lower()
    if suffix in _VIDEO_SUFFIXES:
        return conv.NATURE_VIDEO
    if suffix in _IMAGE_SUFFIXES:
        return conv.NATURE_SCREENSHOT
    if path.parts[0] == "journals" or suffix in (".har", ".log", ".jsonl"):
        return conv.NATURE_LOG
    return conv.NATURE_FILE


def _step_label(step: Mapping) -> str:
    text = " ".join(str(step.get(k) or "").strip() for k in ("keyword", "text")).strip()
    status = _STATUS.get(str(step.get("status")), str(step.get("status") or "statut inconnu"))
    return f"Étape {step.get('n', '?')} — {text} ({status})"


def _description(path: PurePosixPath, run: Run, shots: Mapping[str, Mapping]) -> str:
    key = path.as_posix()
    if key in _FIXED_DESCRIPTIONS:
        return _FIXED_DESCRIPTIONS[key]
    if key in shots:
        source = shots[key].get("screenshot_source")
        return f"Capture d'écran — {_step_label(shots[key])}" + (f" — source : {source}" if source else "")
    nature = _nature(path)
    if nature == conv.NATURE_VIDEO:
        condition = run.meta.get("network_condition")
        captions = ("légendée de l'étape en cours" + (f" et de la condition réseau ({condition})" if condition else ""))
        screen = _screen(run.meta)
        if "partages" in screen:  # a guided run: the operator's shared screen, with its holes
            spans = ", ".join(f"de {_clock(c.get('debut'))} à {_clock(c.get('couvert_jusqu_a'))}"
                              for c in _screen_list(screen, "partages"))
            gaps = "; ".join(f"de {_clock(g.get('debut'))} à {_clock(g.get('fin'))} ({g.get('raison')})"
                             for g in _screen_list(screen, "lacunes"))
            return (f"Vidéo de l'exécution complète : {screen.get('qui')} (capté {spans or 'jamais'}), {captions}"
                    + (f" ; sans image de l'écran du LGC {gaps}" if gaps else ""))
        return f"Vidéo plein écran de l'exécution complète ({screen.get('qui') or 'navigateur du banc'}), {captions}"
    if nature == conv.NATURE_SCREENSHOT:
        return "Capture d'écran complémentaire de l'exécution"
    if path.parts[0] == "journals" and len(path.parts) == 2:
        title = _service_title(path.stem)
        if path.suffix == ".jsonl":
            return f"Journal brut des échanges avec le service simulé {title} (JSON Lines, corps complets)"
        if path.suffix in (".txt", ".html"):
            form = "texte" if path.suffix == ".txt" else "HTML"
            return (f"Journal lisible ({form}) des échanges avec {title} : horodatage, durée, latence injectée, "
                    "défauts appliqués, requêtes et réponses indentées")
    return "Fichier produit par l'exécution du scénario"


def _screen(meta: Mapping) -> dict:
    """Whose screen the pictures show (run.json "ecran"), as the runner wrote it."""
    screen = meta.get("ecran")
    return screen if isinstance(screen, dict) else {}


def _screen_list(screen: Mapping, key: str) -> list[dict]:
    """The entries of a list of `ecran` (shares, gaps) that are objects; anything else is ignored."""
    value = screen.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _clock(value: object) -> str:
    dt = _instant(value)
    return f"{dt.astimezone(UTC):%H:%M:%S} UTC" if dt is not None else "—"


def _deposit_order(path: PurePosixPath, step_rank: Mapping[str, int]) -> tuple | None:
    """Sort key of a Convergence proof, or None when the file is not deposited (index, manifest, metadata)."""
    key, nature = path.as_posix(), _nature(path)
    if nature == conv.NATURE_VIDEO:
        return (0, key)
    if nature == conv.NATURE_SCREENSHOT:
        return (1, step_rank.get(key, 10**6), key)
    if path.parts[0] == "journals" and path.suffix in (".txt", ".jsonl"):
        return (2, path.stem, path.suffix != ".txt")  # readable journal first, then its raw source
    if key == HAR:
        return (3,)
    if key == "verdicts.json":
        return (4,)
    return None


# -- build -------------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _env() -> jinja2.Environment:
    # Default (lenient) Undefined: the runner's JSON may omit optional keys; autoescape: every value is
    # text from the run or the LGC under test, never markup.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["url"] = lambda p: quote(str(p))  # relative link to a bundle file; '/' kept
    env.filters["ms"] = _display_ms
    env.filters["when"] = _display_instant
    env.filters["filesize"] = _filesize
    return env


def _display_ms(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:.1f} ms".replace(".", ",")  # French decimal comma


def _display_instant(value: object) -> str:
    dt = _instant(value)
    if dt is None:
        return str(value or "—")
    return f"{dt:%d/%m/%Y %H:%M:%S},{dt.microsecond // 1000:03d} UTC"


def _filesize(size: int) -> str:
    if size < 1024:
        return f"{size} o"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} Kio".replace(".", ",")
    return f"{size / 1024 / 1024:.1f} Mio".replace(".", ",")


def _duration_ms(start: object, end: object) -> float | None:
    a, b = _instant(start), _instant(end)
    return (b - a).total_seconds() * 1000.0 if a and b else None


def build_bundle(run_dir: Path, out_dir: Path) -> Path:
    """Build the bundle of a run: returns `out_dir/<name>.zip`; `out_dir/<name>/` holds the same files."""
    run = load_run(Path(run_dir))
    out_dir = Path(out_dir)
    if out_dir.resolve() == run.dir.resolve():
        raise BundleError("le dossier de sortie doit être différent du dossier d'exécution")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = bundle_name(run.meta["requirement_id"], run.started)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        root = staging / name
        root.mkdir()
        _assemble(run, root, out_dir)
        zip_path = staging / f"{name}.zip"
        _write_zip(root, zip_path, run.started)
        # Only now replace a previous bundle of the same run: a failed build leaves the old one in place.
        final_dir, final_zip = out_dir / name, out_dir / f"{name}.zip"
        if final_dir.exists():
            if not (final_dir / MANIFEST).is_file():
                raise BundleError(f"{final_dir} existe déjà et n'est pas un bundle : il n'est pas remplacé")
            shutil.rmtree(final_dir)
        root.rename(final_dir)
        zip_path.replace(final_zip)
        return final_zip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _assemble(run: Run, root: Path, out_dir: Path) -> None:
    sources = _run_files(run, exclude=out_dir)
    journals = [p for p in sources if p.parts[0] == "journals" and len(p.parts) == 2 and p.suffix == ".jsonl"]
    generated = {p.with_suffix(s).as_posix() for p in journals for s in (".txt", ".html")} | _RESERVED
    clash = sorted(p.as_posix() for p in sources if p.as_posix() in generated)
    if clash:
        raise BundleError(f"le dossier d'exécution contient des noms réservés au bundle : {', '.join(clash)}")

    for rel in sources:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.dir / rel, target)

    env = _env()
    views: list[dict] = []
    for rel in journals:
        journal = load_journal(root / rel)
        title = _service_title(journal.service)
        txt, html = rel.with_suffix(".txt"), rel.with_suffix(".html")
        heading = f"{run.meta['requirement_id']} — {run.meta.get('scenario') or ''}".rstrip(" —")
        (root / txt).write_text(render_text(journal, title=heading), encoding="utf-8")
        (root / html).write_text(env.get_template("journal.html").render(
            journal=journal, title=title, summary=journal.summary(), views=journal.views(), heading=heading,
            raw=rel.name, index_link="../" + INDEX), encoding="utf-8")
        views.append({"journal": journal, "title": title, "summary": journal.summary(), "txt": txt.as_posix(),
                      "html": html.as_posix(), "jsonl": rel.as_posix()})

    shots: dict[str, Mapping] = {}
    step_rank: dict[str, int] = {}
    for rank, step in enumerate(run.steps):
        shot = _safe_relpath(step.get("screenshot"))
        if shot is not None and (root / shot).is_file():
            shots.setdefault(shot.as_posix(), step)
            step_rank.setdefault(shot.as_posix(), rank)

    requirement = run.meta["requirement_id"]
    hashes: dict[str, str] = {}
    entries = _describe(root, run, shots, hashes)
    deposit = sorted((e for e in entries if _deposit_order(PurePosixPath(e.path), step_rank) is not None),
                     key=lambda e: _deposit_order(PurePosixPath(e.path), step_rank))
    refs = {e.path: conv.proof_ref(requirement, n) for n, e in enumerate(deposit, start=1)}
    # One row per requirement proven and proof file: Convergence files proofs requirement by requirement.
    rows = [conv.ProofRow(req, conv.proof_ref(req, n), e.nature, e.path, e.description)
            for req in run.meta["requirement_ids"] for n, e in enumerate(deposit, start=1)]

    conv.write_csv(rows, root / conv.CSV_NAME)
    xlsx = conv.write_xlsx(rows, root / conv.XLSX_NAME, when=run.started)
    if xlsx is None:
        run.notes.append({"path": conv.XLSX_NAME, "raison": "openpyxl non installé : export CSV seulement"})

    index = _render_index(env, run, root, views, _describe(root, run, shots, hashes), shots, rows)
    (root / INDEX).write_text(index, encoding="utf-8")

    entries = [FileEntry(e.path, e.size, e.sha256, e.nature, e.description, refs.get(e.path))
               for e in _describe(root, run, shots, hashes)]
    manifest = {
        "format": FORMAT,
        "bundle": root.name,
        **{k: run.meta.get(k) for k in ("requirement_id", "requirement_ids", "scenario", "feature", "personas",
                                        "bench_version",
                                        "lgc", "started", "ended", "driver", "network_condition", "outcome",
                                        "ecran")},
        "absents": run.notes,
        "files": [e.as_dict() for e in entries],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _describe(root: Path, run: Run, shots: Mapping[str, Mapping], hashes: dict[str, str]) -> list[FileEntry]:
    """Entries of every file now in the bundle but the manifest. `hashes` caches digests between calls:
    files are never rewritten once in the bundle, and a video is worth hashing only once."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if rel.as_posix() == MANIFEST:
            continue
        digest = hashes.get(rel.as_posix()) or hashes.setdefault(rel.as_posix(), _sha256_file(path))
        entries.append(FileEntry(rel.as_posix(), path.stat().st_size, digest, _nature(rel),
                                 _description(rel, run, shots)))
    return entries


def _render_index(env: jinja2.Environment, run: Run, root: Path, journals: list[dict], entries: list[FileEntry],
                  shots: Mapping[str, Mapping], rows: list[conv.ProofRow]) -> str:
    meta = run.meta
    steps = []
    for step in run.steps:
        shot = _safe_relpath(step.get("screenshot"))
        status = str(step.get("status") or "")
        steps.append({
            "n": step.get("n", ""), "keyword": step.get("keyword") or "", "text": step.get("text") or "",
            "started": step.get("started"), "duration": _duration_ms(step.get("started"), step.get("ended")),
            "status": _STATUS.get(status, status or "inconnu"), "css": status if status in _STATUS else "unknown",
            "screenshot": shot.as_posix() if shot is not None and shot.as_posix() in shots else None,
            "screenshot_source": step.get("screenshot_source"),
            "error": step.get("error"),
        })
    verdicts = run.verdicts
    sizes = {e.path: e for e in entries}
    lgc = meta.get("lgc") if isinstance(meta.get("lgc"), dict) else {}
    return env.get_template("index.html").render(
        meta=meta, lgc=lgc, screen=_screen(meta),
        outcome=_OUTCOME.get(str(meta.get("outcome")), str(meta.get("outcome") or "inconnu")),
        outcome_css=str(meta.get("outcome")) if meta.get("outcome") in _OUTCOME else "unknown",
        duration=_duration_ms(meta.get("started"), meta.get("ended")),
        personas=[p for p in meta.get("personas") or [] if isinstance(p, dict)],
        video=VIDEO if (root / VIDEO).is_file() else None,
        video_note=next((n["raison"] for n in run.notes if n["path"] == VIDEO), None),
        steps=steps, verdicts=verdicts,
        verdicts_failed=sum(1 for v in verdicts or [] if not v.get("ok")),
        timings=run.timings, journals=journals, har=HAR if (root / HAR).is_file() else None,
        rows=[{"row": r, "entry": sizes[r.file]} for r in rows], notes=run.notes,
        files=[sizes[p] for p in sorted(sizes) if p != INDEX],
        csv=conv.CSV_NAME, xlsx=conv.XLSX_NAME if (root / conv.XLSX_NAME).is_file() else None, manifest=MANIFEST,
        bundle=root.name, format=FORMAT,
    )


def _write_zip(root: Path, zip_path: Path, when: datetime) -> None:
    """Deterministic zip: sorted entries under one top folder, fixed timestamps and permissions."""
    stamp = conv.zip_time(when)
    top = root.name
    names: list[tuple[str, Path | None]] = [(f"{top}/", None)]
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        names.append((f"{top}/{rel}/", None) if path.is_dir() else (f"{top}/{rel}", path))
    names.sort(key=lambda n: n[0])
    with zipfile.ZipFile(zip_path, "w", allowZip64=True) as zf:
        for arcname, path in names:
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.create_system = 3  # Unix, whatever OS builds it: same bytes everywhere
            if path is None:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
                continue
            info.external_attr = 0o100644 << 16
            info.compress_type = (zipfile.ZIP_STORED if path.suffix.lower() in _STORED_SUFFIXES
                                  else zipfile.ZIP_DEFLATED)
            info.file_size = path.stat().st_size
            with path.open("rb") as src, zf.open(info, "w", force_zip64=info.file_size > 2**31) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


# -- verify ------------------------------------------------------------------------------------------------


class _Source:
    """The files of a bundle, whether a folder or a zip: relative path -> opener."""

    def __init__(self, files: dict[str, Callable[[], IO[bytes]]], problems: list[str]) -> None:
        self.files = files
        self.problems = problems


def _dir_source(path: Path) -> _Source:
    root = path.parent if path.is_file() else path  # accept the folder or its manifest.json
    files: dict[str, Callable[[], IO[bytes]]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() or p.is_symlink():
            files[p.relative_to(root).as_posix()] = (lambda q=p: q.open("rb"))
    return _Source(files, [])


def _zip_source(zf: zipfile.ZipFile) -> _Source:
    problems: list[str] = []
    infos = [i for i in zf.infolist() if not i.is_dir()]
    tops = {i.filename.split("/", 1)[0] for i in zf.infolist()}
    if len(tops) != 1:
        problems.append(f"l'archive doit contenir un seul dossier racine (trouvé : {', '.join(sorted(tops))})")
    files: dict[str, Callable[[], IO[bytes]]] = {}
    for info in infos:
        rel = info.filename.partition("/")[2]
        if _safe_relpath(rel) is None:
            problems.append(f"chemin refusé dans l'archive : {info.filename!r}")
            continue
        if rel in files:
            problems.append(f"entrée en double dans l'archive : {info.filename}")
            continue
        files[rel] = (lambda i=info: zf.open(i))
    return _Source(files, problems)


def verify_bundle(path: Path | str) -> list[str]:
    """Problems found in a bundle (zip, folder, or its manifest.json), in French; empty when intact."""
    path = Path(path)
    if not path.exists():
        return [f"bundle introuvable : {path}"]
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                return _verify(_zip_source(zf))
        except (zipfile.BadZipFile, OSError) as exc:
            return [f"archive zip illisible : {exc}"]
    if path.is_file() and path.name != MANIFEST:
        return [f"ni une archive zip, ni un dossier de bundle : {path}"]
    return _verify(_dir_source(path))


def _hash(opener: Callable[[], IO[bytes]]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with opener() as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _verify(source: _Source) -> list[str]:
    problems = list(source.problems)
    if MANIFEST not in source.files:
        return [*problems, f"manifeste absent : {MANIFEST} introuvable"]
    try:
        with source.files[MANIFEST]() as fh:
            manifest = json.loads(fh.read().decode("utf-8"))
        listed = manifest["files"]
        if not isinstance(listed, list):
            raise TypeError("« files » n'est pas une liste")
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, OSError) as exc:
        return [*problems, f"manifeste illisible : {exc}"]
    if manifest.get("format") != FORMAT:
        problems.append(f"format de manifeste inattendu : {manifest.get('format')!r} (attendu {FORMAT})")

    seen: set[str] = set()
    for item in listed:
        rel = item.get("path") if isinstance(item, dict) else None
        if _safe_relpath(rel) is None:
            problems.append(f"entrée de manifeste invalide : {item!r}")
            continue
        if rel in seen:
            problems.append(f"fichier listé deux fois dans le manifeste : {rel}")
            continue
        seen.add(rel)
        opener = source.files.get(rel)
        if opener is None:
            problems.append(f"fichier manquant : {rel}")
            continue
        try:
            size, digest = _hash(opener)
        except (zipfile.BadZipFile, OSError) as exc:  # e.g. "Bad CRC-32": bytes changed inside the zip
            problems.append(f"fichier corrompu : {rel} ({exc})")
            continue
        if digest != item.get("sha256"):
            sizes = f", taille {item.get('size')} → {size} octets" if size != item.get("size") else ""
            problems.append(f"fichier modifié : {rel} (SHA-256 attendu {item.get('sha256')}, obtenu {digest}{sizes})")
        elif size != item.get("size"):
            problems.append(f"taille incohérente : {rel} ({item.get('size')} annoncés, {size} octets)")
    for rel in sorted(set(source.files) - seen - {MANIFEST}):
        problems.append(f"fichier non listé dans le manifeste : {rel}")
    return problems


def count_listed(path: Path | str) -> int:
    """Number of files the manifest lists (plus the manifest itself), for messages."""
    path = Path(path)
    try:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/" + MANIFEST))
                manifest = json.loads(zf.read(name))
        else:
            root = path.parent if path.is_file() else path
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        return len(manifest["files"]) + 1
    except (StopIteration, OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return 0


# -- CLI entry points --------------------------------------------------------------------------------------


def main_verify(path: Path | str) -> int:
    """`segur-bench bundle verify PATH`: 0 when intact, 1 otherwise."""
    problems = verify_bundle(path)
    if not problems:
        print(f"bundle intact ({count_listed(path)} fichiers)")
        return 0
    print(f"bundle NON intact : {len(problems)} problème(s)")
    for problem in problems:
        print(f"  - {problem}")
    return 1


def main_build(run_dir: Path | str, out_dir: Path | str) -> int:
    """`segur-bench bundle build RUN_DIR`: builds the bundle, prints where it is; 1 on error."""
    try:
        zip_path = build_bundle(Path(run_dir), Path(out_dir))
    except (BundleError, OSError) as exc:
        print(f"échec de la construction du bundle : {exc}", file=sys.stderr)
        return 1
    manifest = json.loads((zip_path.with_suffix("") / MANIFEST).read_text(encoding="utf-8"))
    print(f"bundle créé : {zip_path}")
    print(f"  dossier   : {zip_path.with_suffix('')}")
    print(f"  fichiers  : {len(manifest['files']) + 1} (manifeste compris)")
    print(f"  SHA-256 de l'archive : {_sha256_file(zip_path)}")
    for note in manifest.get("absents") or []:
        print(f"  attention : {note['path']} — {note['raison']}")
    return 0

