"""The requirement catalogue (scenarios/requirements.toml) against the DSR seeds' raw text (issue 17).

Seeds 001 (current DSR-MDV-LGC-Va2) and 004 (its earlier draft) and the audit table rem-coverage.md live outside the
repository (../shared, or $SEGUR_BENCH_SHARED); the checks that read them are skipped when they are absent. The seed
side is extracted here with its own regexes and the TOML read with tomllib, independently of the loader; the loader
itself is checked at the end.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from scenarios.requirements import CATALOGUE, CatalogueError, catalogue, check_ids, unknown_ids

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEGUR_BENCH_SHARED", ROOT.parent / "shared"))

# Id shapes seen in the seeds: an upper-case prefix, "."- or "/"-separated segments, a number; optional BIS/TER
# (001 writes "SC.DMP/UX.14.BIS" but "SC.SSI/GEN.02 BIS"). Examples: SC.INS.01, SC.INS/PSC.50, SC.DMP/ALI/PROG.02,
# LGC.DMP/UX.10, SENTINELLE.19, LABEL.06 (once "Label.15"), TBB.INS.02, RESPOP.01, INS/va1.08. Deliberately wider
# than the requirement prefixes, so that référentiel ids are caught too and must be excluded by name below.
ID_RE = re.compile(r"(?<![\w./-])[A-Z][A-Za-z]+(?:[./][A-Za-z][A-Za-z0-9]*)*[./_]\d+(?:[.-]\d+)*"
                   r"(?:\.BIS| BIS|\.TER| TER)?(?![\w-])")

# Strings of seeds 001/004 with an id shape that are not requirement ids of this DSR.
NOT_REQUIREMENTS = {
    "ECO.2.1.3", "ECO.2.1.5",  # Référentiel socle MSSanté #2 (clients de messagerie), cited by 001 §3.2.2
    "EX_2.1-1020", "EX_2.1-1030", "EX_2.1-1040",  # guide d'intégration DMP SEL-MP-037, cited by 001 §3.2.2
    "TD.3.2",  # a DMP transaction (document retrieval) in 001's dashboard model (§3.2.8)
    "XDM/1.0",  # the MSSanté subject format "XDM/1.0/DDM+…" (001 §3.2.2)
}
# Ids the coverage map names as not REM ids of this DSR, with the seed that holds them: seminar notes (002), FAQ of
# other dispositifs (003). The scenario id of LGC.DMP/UX.10 in seed 000 is the catalogue's one entry from elsewhere
# (checked on its own below).
OTHER_DOCUMENT_IDS = {
    "002": ("LABEL.01", "LGC.CSE.03", "LGC.MDV.02", "SC.MSS/UX.05.BIS", "SC.MSS/UX.10", "SC.DMP/UX.14.TER",
            "SENTINELLE.18", "TBB.INS.01", "VACC/NOTE.04", "DEPISTAGE.01", "DEPISTAGE.02", "LGO.OFF.04"),
    "003": ("ANN.1.1.1", "ANN.2.1.2"),
}
SERVICE_NAMES = {"INSi": "insi", "ApCV": "apcv", "DMP": "dmp", "ON": "on", "MSSanté": "mss", "PSC": "psc",
                 "Annuaire santé": "annuaire"}
ENGLISH = {"the", "with", "and", "when", "from", "into", "which", "without", "should", "must", "only", "shown",
           "send", "record", "user", "inferred", "stated", "per"}


def _seed(prefix: str) -> str:
    found = sorted((SHARED / "seeds").glob(f"{prefix}_*.txt"))
    if not found:
        pytest.skip(f"seed {prefix} not found under {SHARED / 'seeds'} (set SEGUR_BENCH_SHARED)")
    return found[0].read_text(encoding="utf-8")


def _ids(text: str) -> list[str]:
    """Id-shaped strings of a text, first occurrence order, LABEL.15's "Label.15" spelling folded."""
    out: dict[str, None] = {}
    for m in ID_RE.finditer(text):
        out[re.sub(r"^Label\.", "LABEL.", m.group(0))] = None
    return list(out)


def _sections(text: str, heading: str, end: str) -> list[tuple[str, str]]:
    """(chapter, body) of each numbered section until the `end` heading; table-of-contents lines (they hold a tab
    before the page number) are not headings."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if "\t" in line and not out:
            continue
        if re.match(end, line):
            break
        if m := re.match(heading, line):
            out.append((m.group(1), []))
        elif out:
            out[-1][1].append(line)
    return [(chapter, "\n".join(lines)) for chapter, lines in out]


@pytest.fixture(scope="module")
def seeds() -> dict[str, str]:
    return {"001": _seed("001"), "004": _seed("004")}


@pytest.fixture(scope="module")
def sections(seeds: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    return {"001": _sections(seeds["001"], r"(3\.2\.\d+)\.? ", r"4\. MODALITES"),
            "004": _sections(seeds["004"], r"\s*(2\.2\.\d+) ", r"3 EXIGENCES")}


@pytest.fixture(scope="module")
def seed_ids(seeds: dict[str, str]) -> dict[str, list[str]]:
    return {name: [i for i in _ids(text) if i not in NOT_REQUIREMENTS] for name, text in seeds.items()}


@pytest.fixture(scope="module")
def all_entries() -> list[dict]:
    return tomllib.loads(CATALOGUE.read_text(encoding="utf-8"))["exigence"]


@pytest.fixture(scope="module")
def entries(all_entries: list[dict]) -> list[dict]:
    """The DSR's entries (seeds 001/004): all but seed 000's LGC.DMP/UX.10.01."""
    return [e for e in all_entries if e["sources"] != ["000"]]


@pytest.fixture(scope="module")
def coverage() -> dict[str, list[str]]:
    """rem-coverage.md's table: id -> [id, src, service(s), summary, proof, class, covered?, where]."""
    path = SHARED / "docs" / "rem-coverage.md"
    if not path.exists():
        pytest.skip(f"{path} not found (set SEGUR_BENCH_SHARED)")
    table = path.read_text(encoding="utf-8").split("## Table", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| id |")]
    assert len({r[0] for r in rows}) == len(rows), "an id is listed twice in rem-coverage.md"
    return {r[0]: r for r in rows}


def _table_rows_001(sections: dict[str, list[tuple[str, str]]]) -> dict[str, tuple[str, str]]:
    """id -> (chapter, row) of its first citation in 001's feature tables, in table order. A row starts with
    "N.M<TAB>" and continues on lines starting with a tab; the vague-1 table (3.2.11) has no row numbers."""
    first: dict[str, tuple[str, str]] = {}
    for chapter, body in sections["001"]:
        row = ""
        for line in body.splitlines():
            if m := re.match(r"(\d+\.\d+)\t", line):
                row = m.group(1)
            elif not (line.startswith("\t") or (chapter == "3.2.11" and "\t" in line)):
                continue
            for i in _ids(line):
                if i not in NOT_REQUIREMENTS:
                    first.setdefault(i, (chapter, row))
    return first


# 1. Every catalogue id is in the seeds, and its sources say exactly which.

def test_every_catalogue_id_is_written_in_the_seeds_its_sources_name(
        entries: list[dict], seeds: dict[str, str], seed_ids: dict[str, list[str]]) -> None:
    for e in entries:
        spellings = (e["id"], "Label.15") if e["id"] == "LABEL.15" else (e["id"],)
        assert any(s in seeds["001"] or s in seeds["004"] for s in spellings), f"{e['id']} is in no seed"
        holders = [name for name in ("001", "004") if e["id"] in seed_ids[name]]
        assert e["sources"] == holders, f"{e['id']}: sources {e['sources']}, but the seeds listing it are {holders}"


# 2. Every requirement id of seeds 001 and 004 is in the catalogue, and nothing else is.

def test_the_catalogue_holds_exactly_the_ids_of_seeds_001_and_004(
        entries: list[dict], seed_ids: dict[str, list[str]]) -> None:
    listed = [e["id"] for e in entries]
    assert len(listed) == len(set(listed)), [i for i, n in Counter(listed).items() if n > 1]
    in_seeds = set(seed_ids["001"]) | set(seed_ids["004"])
    assert sorted(in_seeds - set(listed)) == [], "ids of the seeds missing from the catalogue"
    assert sorted(set(listed) - in_seeds) == [], "catalogue ids that no seed defines"


def test_the_exclusions_are_real_strings_of_the_seeds(seeds: dict[str, str], entries: list[dict]) -> None:
    both = seeds["001"] + seeds["004"]
    assert {s for s in NOT_REQUIREMENTS if s not in both} == set(), "stale exclusion"
    assert NOT_REQUIREMENTS.isdisjoint(e["id"] for e in entries)
    # SC.SSI/GEN.02 (draft) is only a prefix of 001's "SC.SSI/GEN.02 BIS": the id shape takes the suffix
    assert "SC.SSI/GEN.02 BIS" in _ids(seeds["001"]) and "SC.SSI/GEN.02" not in _ids(seeds["001"])


def test_ids_of_other_documents_are_not_requirements(seeds: dict[str, str], entries: list[dict]) -> None:
    listed = {e["id"] for e in entries}
    for prefix, ids in OTHER_DOCUMENT_IDS.items():
        text = _seed(prefix)
        for i in ids:
            assert i in text, f"{i} is not in seed {prefix}"
            assert i not in _ids(seeds["001"]) + _ids(seeds["004"]) and i not in listed, i


def test_the_one_entry_from_elsewhere_is_seed_000s_refinement_of_lgc_dmp_ux_10(all_entries: list[dict]) -> None:
    (entry,) = [e for e in all_entries if e["sources"] == ["000"]]
    # "… associé à l'exigence LGC.DMP/UX.10.01 ?" (FAQ of February 2026; a no-break space may precede the id)
    assert entry["id"] == "LGC.DMP/UX.10.01" and re.search(r"exigence\s+LGC\.DMP/UX\.10\.01", _seed("000"))
    parent = catalogue()[entry["parent"]]
    assert parent.id == "LGC.DMP/UX.10" and parent.current and parent.klass == entry["classe"] == "a"
    # listed right after the id it refines, with its chapter
    ids = [e["id"] for e in all_entries]
    assert ids.index(entry["id"]) == ids.index(parent.id) + 1 and entry["chapitre"] == parent.chapter


# Order, chapter and row, read from the seeds' tables.

def test_order_chapter_and_row_follow_the_seeds(
        entries: list[dict], sections: dict[str, list[tuple[str, str]]], seed_ids: dict[str, list[str]]) -> None:
    rows_001 = _table_rows_001(sections)
    assert set(rows_001) == set(seed_ids["001"]), "an id of 001 is cited outside its feature tables"
    chapter_004: dict[str, str] = {}
    for chapter, body in sections["004"]:
        for i in _ids(body):
            chapter_004.setdefault(i, chapter)
    assert set(chapter_004) == set(seed_ids["004"]), "an id of 004 is cited outside §2.2"
    draft_only = [i for i in seed_ids["004"] if i not in rows_001]
    assert [e["id"] for e in entries] == list(rows_001) + draft_only
    for e in entries:
        chapter, row = rows_001.get(e["id"]) or (chapter_004[e["id"]], "")
        assert (e["chapitre"], e["ligne"]) == (chapter, row), e["id"]
        if row:
            assert chapter == "3.2." + row.split(".")[0], e["id"]


# 4. Counts, and agreement with the coverage audit.

def test_counts_per_seed_and_class_agree_with_the_coverage_audit(
        entries: list[dict], coverage: dict[str, list[str]]) -> None:
    assert len(coverage) == len(entries) == 255
    current = [e for e in entries if "001" in e["sources"]]
    draft = [e for e in entries if "004" in e["sources"]]
    draft_only = [e for e in entries if e["sources"] == ["004"]]
    vague1 = [e for e in entries if e["chapitre"] == "3.2.11"]
    assert (len(current), len(draft), len(draft_only), len(vague1)) == (202, 129, 53, 57)

    def classes(es: list[dict]) -> tuple[int, int, int, int]:
        n = Counter(e["classe"] for e in es)
        return len(es), n["a"], n["b"], n["c"]

    # "N ids; class a A, b B, c C" lines of the audit's Counts section
    counts = (SHARED / "docs" / "rem-coverage.md").read_text(encoding="utf-8").split("## Counts", 1)[1]

    def stated(label: str) -> tuple[int, int, int, int]:
        m = re.search(re.escape(label) + r".*?— (\d+) ids; class a (\d+), b (\d+), c (\d+)", counts)
        assert m, label
        n, a, b, c = (int(g) for g in m.groups())
        return n, a, b, c

    assert classes(entries) == stated("**All ids (001 ∪ 004)**") == (255, 154, 93, 8)
    assert classes(current) == stated("**Current DSR (001) ids**") == (202, 126, 70, 6)
    assert classes(draft_only) == stated("**Draft-only (004) ids**") == (53, 28, 23, 2)
    perimeter = [e for e in current if e["chapitre"] != "3.2.11"]
    assert classes(perimeter) == stated("**Current DSR, vague-2 perimeter only") == (145, 84, 55, 6)
    # class a: the wording involves a national service (so it names one)
    assert all(e["services"] for e in entries if e["classe"] == "a")


def test_sources_class_and_services_are_those_of_the_coverage_audit(
        entries: list[dict], coverage: dict[str, list[str]]) -> None:
    for e in entries:
        row = coverage[e["id"]]
        assert e["sources"] == {"001": ["001"], "004": ["004"], "both": ["001", "004"]}[row[1]], e["id"]
        assert e["classe"] == row[5], e["id"]
        names = set() if row[2].startswith("none") else {re.sub(r"\s*\(.*\)", "", s).strip() for s in row[2].split(",")}
        assert set(e["services"]) == {SERVICE_NAMES[n] for n in names}, e["id"]
        assert len(e["services"]) == len(set(e["services"])), e["id"]


# 5. Titles: short French wording of the seed.

def test_titles_are_short_french_wording_of_the_seed(
        entries: list[dict], sections: dict[str, list[tuple[str, str]]], coverage: dict[str, list[str]]) -> None:
    def words(text: str) -> set[str]:
        return set(re.findall(r"\w+", text.lower()))

    for e in entries:
        title = e["titre"]
        assert title.strip() == title and 0 < len(title) <= 120 and "\n" not in title, e["id"]
        assert not words(title) & ENGLISH, f"{e['id']}: English in {title!r}"
        assert title.lower() != coverage[e["id"]][3].lower()
        # the text of every section of the id's seeds that lists it (LABEL.15 is cited in 3.2.8 and 3.2.10)
        text = " ".join(body for seed in e["sources"] for _, body in sections[seed] if e["id"] in _ids(body))
        assert text, e["id"]
        vocabulary = words(text)
        long_words = [w for w in re.findall(r"\w+", title.lower()) if len(w) >= 4]
        missing = [w for w in long_words if w not in vocabulary]
        assert len(missing) <= len(long_words) // 5, f"{e['id']}: {missing} not in the seed's text ({title!r})"


# 3. The loader.

def _write(tmp_path: Path, *tables: dict[str, object]) -> Path:
    def value(v: object) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return f'"{v}"' if isinstance(v, str) else str(v)

    path = tmp_path / "requirements.toml"
    path.write_text("\n".join("[[exigence]]\n" + "\n".join(f"{k} = {value(v)}" for k, v in t.items()) + "\n"
                              for t in tables), encoding="utf-8")
    return path


GOOD = {"id": "SC.DMP/UX.13", "chapitre": "3.2.3", "ligne": "3.3", "titre": "Connaissance sans clic",
        "services": ["dmp"], "sources": ["001"], "classe": "a"}


def test_the_loader_reads_every_entry_as_written(all_entries: list[dict]) -> None:
    loaded = catalogue()
    assert list(loaded) == [e["id"] for e in all_entries]
    for e in all_entries:
        r = loaded[e["id"]]
        assert (r.chapter, r.row, r.title, list(r.services), list(r.seeds), r.klass) == (
            e["chapitre"], e["ligne"], e["titre"], e["services"], e["sources"], e["classe"])


def test_a_well_formed_file_loads(tmp_path: Path) -> None:
    req = catalogue(_write(tmp_path, GOOD))["SC.DMP/UX.13"]
    assert (req.row, req.services, req.seeds, req.klass, req.current) == ("3.3", ("dmp",), ("001",), "a", True)


@pytest.mark.parametrize(("change", "message"), [
    ({"services": ["dmp", "sesam"]}, "unknown service"),
    ({"services": ["DMP"]}, "unknown service"),
    ({"classe": "d"}, "classe"),
    ({"sources": ["002"]}, "sources"),
    ({"sources": []}, "sources"),
    ({"titre": ""}, "empty"),
    ({"ligne": 2.10}, "ligne must be a string"),
    ({"services": "dmp"}, "services must be a list"),
    ({"sources": [1]}, "sources must list strings"),
])
def test_a_bad_value_is_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        catalogue(_write(tmp_path, GOOD | change))


def test_a_missing_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="missing field 'classe'"):
        catalogue(_write(tmp_path, {k: v for k, v in GOOD.items() if k != "classe"}))


def test_a_duplicate_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="listed twice"):
        catalogue(_write(tmp_path, GOOD, GOOD | {"titre": "Autre"}))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError):
        catalogue(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[exigence]]\nid = "SC.DMP/UX.13\n', encoding="utf-8")
    with pytest.raises(CatalogueError):
        catalogue(bad)


def test_unknown_ids_and_check_ids() -> None:
    # the two former feature tags that were groupings, not REM ids (see rem-coverage.md)
    tags = ["LGC.DMP/UX.10.01", "SC.DMP/UX.13", "SC.DMP/ALI/PROG", "SC.ORDN/CONF.04", "SC.INS/SENTINELLE"]
    assert unknown_ids(tags) == ["SC.DMP/ALI/PROG", "SC.INS/SENTINELLE"]
    assert unknown_ids(["LGC.DMP/UX.10", "SC.SSI/GEN.02 BIS", "LABEL.15", "INS/va1.08"]) == []
    assert unknown_ids(["Label.15", "SC.SSI/GEN.02.BIS"]) == ["Label.15", "SC.SSI/GEN.02.BIS"]
    check_ids(["SC.DMP/UX.13", "SENTINELLE.02"], "LGC_DMP_UX_13.feature")
    with pytest.raises(CatalogueError, match=r"SC_DMP_ALI_PROG\.feature: SC\.DMP/ALI/PROG n'est pas"):
        check_ids(["SC.DMP/ALI/PROG.02", "SC.DMP/ALI/PROG"], "SC_DMP_ALI_PROG.feature")


def test_current_tells_the_ids_of_the_current_dsr() -> None:
    cat = catalogue()
    assert cat["SC.DMP/UX.13"].current and cat["SENTINELLE.02"].current  # 001 only; both seeds
    assert not cat["SC.DMP/UX.10"].current and not cat["SC.SSI/GEN.18"].current  # draft only
    assert cat["LGC.DMP/UX.10.01"].current  # seed 000 refines a current id
    assert sum(r.current for r in cat.values()) == 202 + 1
