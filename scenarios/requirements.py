"""The requirement catalogue: every id of the DSR (seeds 001 and 004), read from requirements.toml.

Plus the one finer REM id the ANS names outside the DSR: LGC.DMP/UX.10.01, "le scénario associé à l'exigence
LGC.DMP/UX.10.01" (seed 000, FAQ of February 2026), which refines the DSR's LGC.DMP/UX.10 (its `parent`).

A scenario tag (`@exigence=ID`), a run's requirement id and a Convergence row must name an id of this catalogue:
a deposit with an id the DSR does not define would be rejected. Where the seeds give one text per feature row and
several ids, the title is the row's wording (see ../shared/docs/rem-coverage.md for how per-id readings were made).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOGUE = Path(__file__).with_name("requirements.toml")
SERVICES = ("insi", "apcv", "dmp", "on", "mss", "psc", "annuaire")
SEEDS = ("000", "001", "004")
CLASSES = ("a", "b", "c")


class CatalogueError(ValueError):
    """requirements.toml is malformed, or an id is not in it."""


@dataclass(frozen=True)
class Requirement:
    id: str
    chapter: str  # the DSR chapter (e.g. "3.2.4")
    row: str  # the feature row of the chapter's table, as the seed numbers it ("" when the id is in prose only)
    title: str  # short French title, from the seed's wording
    services: tuple[str, ...]  # national services its wording involves (empty: none)
    seeds: tuple[str, ...]  # "001" (current DSR) and/or "004" (earlier draft)
    klass: str  # a: testable by the bench, b: local/UI only, c: third-party certification (rem-coverage.md)
    parent: str = ""  # for a REM id finer than the DSR's (seed 000), the DSR id it refines

    @property
    def current(self) -> bool:
        """In the current DSR (seed 001) or named by the ANS since (000); False for an id only in the earlier
        draft (004)."""
        return "001" in self.seeds or "000" in self.seeds


def _requirement(entry: object, where: str) -> Requirement:
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: not a table")
    # TOML reads an unquoted `ligne = 2.10` as the float 2.1: every scalar must be a string, every list of strings
    for name, kind in (("id", str), ("chapitre", str), ("ligne", str), ("titre", str), ("classe", str),
                       ("parent", str), ("services", list), ("sources", list)):
        if name in entry and not isinstance(entry[name], kind):
            raise CatalogueError(f"{where}: {name} must be a {'string' if kind is str else 'list'}")
        if kind is list and not all(isinstance(v, str) for v in entry.get(name, ())):
            raise CatalogueError(f"{where}: {name} must list strings")
    try:
        req = Requirement(id=entry["id"], chapter=entry["chapitre"], row=entry.get("ligne", ""),
                          title=entry["titre"], services=tuple(entry.get("services", ())),
                          seeds=tuple(entry["sources"]), klass=entry["classe"], parent=entry.get("parent", ""))
    except KeyError as exc:
        raise CatalogueError(f"{where}: missing field {exc.args[0]!r}") from None
    if not req.id or not req.title:
        raise CatalogueError(f"{where}: empty id or titre")
    if unknown := set(req.services) - set(SERVICES):
        raise CatalogueError(f"{req.id}: unknown service(s) {sorted(unknown)}; expected among {SERVICES}")
    if not req.seeds or set(req.seeds) - set(SEEDS):
        raise CatalogueError(f"{req.id}: sources must be among {SEEDS}")
    if req.klass not in CLASSES:
        raise CatalogueError(f"{req.id}: classe must be one of {CLASSES}")
    if ("000" in req.seeds) != bool(req.parent):
        raise CatalogueError(f"{req.id}: an id of seed 000 names the DSR id it refines (parent), and only it")
    return req


@cache
def catalogue(path: Path = CATALOGUE) -> dict[str, Requirement]:
    """id -> Requirement, in the catalogue's order."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from None
    entries = data.get("exigence", [])
    if not isinstance(entries, list):
        raise CatalogueError(f"{path}: exigence must be an array of tables ([[exigence]])")
    out: dict[str, Requirement] = {}
    for n, entry in enumerate(entries, start=1):
        req = _requirement(entry, f"{path.name}, exigence #{n}")
        if req.id in out:
            raise CatalogueError(f"{req.id}: listed twice in {path.name}")
        out[req.id] = req
    for req in out.values():
        if req.parent and req.parent not in out:
            raise CatalogueError(f"{req.id}: parent {req.parent} is not in the catalogue")
    return out


def unknown_ids(ids: Iterable[str]) -> list[str]:
    """The ids that are not in the catalogue, in the order given."""
    known = catalogue()
    return [i for i in ids if i not in known]


def check_ids(ids: Iterable[str], where: str) -> None:
    """Raise CatalogueError naming `where` when an id is not in the catalogue."""
    unknown = unknown_ids(ids)
    if unknown:
        raise CatalogueError(f"{where}: {', '.join(unknown)} n'est pas un identifiant d'exigence du DSR "
                             f"(catalogue {CATALOGUE.name}); un dépôt Convergence le refuserait")


FEATURES = Path(__file__).with_name("features")
_TAG = re.compile(r"@exigence=(\S+)")


def feature_ids(path: Path) -> tuple[str, ...]:
    """The requirement ids a feature file's tags name, in file order, each once."""
    return tuple(dict.fromkeys(_TAG.findall(path.read_text(encoding="utf-8"))))


def proven_by(features_dir: Path = FEATURES) -> dict[str, list[str]]:
    """requirement id -> the feature files whose tags name it (only ids some feature names)."""
    out: dict[str, list[str]] = {}
    for path in sorted(features_dir.glob("*.feature")):
        for rid in feature_ids(path):
            out.setdefault(rid, []).append(path.name)
    return out


def _feature_title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("Fonctionnalité"):
            return line.split(":", 1)[1].strip()
    return path.stem


def scenario_table(features_dir: Path = FEATURES) -> str:
    """The Markdown table of scenarios/README.md: each feature, the ids it proves with their catalogue titles."""
    known = catalogue()
    lines = ["| feature | exigences prouvées | fonctionnalité |", "|---|---|---|"]
    for path in sorted(features_dir.glob("*.feature")):
        ids = "<br>".join(f"{rid} — {known[rid].title}" if rid in known else f"{rid} — (hors catalogue)"
                          for rid in feature_ids(path))
        lines.append(f"| `{path.name}` | {ids} | {_feature_title(path)} |")
    return "\n".join(lines) + "\n"
