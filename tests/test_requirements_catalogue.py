"""The requirement catalogue (scenarios/requirements.toml) against the seeds' own text (issue 17).

The seeds are read here with a pattern of the id shapes they use, independently of the catalogue: every id the
DSR (001) or its draft (004) writes must be in the catalogue, and the catalogue must hold nothing else (bar the one
finer REM id of seed 000)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from scenarios.requirements import CatalogueError, Requirement, catalogue, check_ids, unknown_ids

# The seeds live beside the project (../shared/seeds), or where SEGUR_BENCH_SEEDS says.
SEEDS = Path(os.environ.get("SEGUR_BENCH_SEEDS") or Path(__file__).resolve().parents[2] / "shared" / "seeds")
FILES = {"000": "000_7792418d01b7d46f.txt", "001": "001_8498080f65240fa4.txt", "004": "004_8410010fd72df26d.txt"}
# The prefixes of the DSR's ids (vague-2 SC./LGC./SENTINELLE./LABEL./TBB./RESPOP. and vague-1 INS/… DOC/… ERGO/…),
# then a two-digit number, optionally .BIS/.TER (001 also writes "SC.SSI/GEN.02 BIS") or a sub-number.
ID = re.compile(r"(?<![A-Za-z0-9./_-])((?:SC|LGC|SENTINELLE|LABEL|Label|TBB|RESPOP|INS|DOC|BIO|DMP|MSS|ANN|PORT|ERGO)"
                r"(?:[./][A-Za-z0-9]+)*?[./](?:va1\.)?\d{2}(?:[. ](?:BIS|TER)|\.\d{2})?)(?![A-Za-z0-9])")


def _text(seed: str) -> str:
    return (SEEDS / FILES[seed]).read_text(encoding="utf-8")


def _ids_in(seed: str) -> set[str]:
    # 001 writes LABEL.15 once as "Label.15": the same id (coverage map, caveats).
    return {"LABEL.15" if found == "Label.15" else found for found in ID.findall(_text(seed))}


needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="the seeds (../shared/seeds) are not on this machine")


@needs_seeds
def test_every_id_of_the_dsr_and_its_draft_is_in_the_catalogue_and_nothing_else():
    cat = catalogue()
    in_seeds = _ids_in("001") | _ids_in("004")
    assert sorted(in_seeds - set(cat)) == []  # none dropped
    invented = sorted(i for i, r in cat.items() if i not in in_seeds and r.seeds != ("000",))
    assert invented == []


@needs_seeds
@pytest.mark.parametrize("seed", ["001", "004"])
def test_sources_say_exactly_which_seeds_write_each_id(seed: str):
    found = _ids_in(seed)
    wrong = [i for i, r in catalogue().items() if (seed in r.seeds) != (i in found)]
    assert wrong == []


@needs_seeds
def test_the_seed_000_id_is_named_there_and_refines_a_dsr_id():
    (req,) = [r for r in catalogue().values() if "000" in r.seeds]
    # "… associé à l’exigence LGC.DMP/UX.10.01 ?" (the seed puts a no-break space before the id)
    assert req.id == "LGC.DMP/UX.10.01" and re.search(r"exigence\s+LGC\.DMP/UX\.10\.01", _text("000"))
    assert req.parent == "LGC.DMP/UX.10" and "001" in catalogue()[req.parent].seeds and req.current


@needs_seeds
def test_titles_are_french_words_of_the_seed():
    for req in catalogue().values():
        assert 0 < len(req.title) <= 120, req.id
        text = " ".join(_text(s) for s in req.seeds)
        words = [w for w in re.findall(r"[A-Za-zÀ-ÿ’']{5,}", req.title.rstrip(" …"))]
        assert words, req.id
        absent = [w for w in words if w.lower() not in text.lower()]
        assert len(absent) <= len(words) // 4, (req.id, req.title, absent)  # the seed's wording, not a summary


@needs_seeds
def test_counts_and_fields():
    cat = catalogue()
    assert len(cat) == len(_ids_in("001") | _ids_in("004")) + 1
    assert {r.klass for r in cat.values()} == {"a", "b", "c"}
    assert all(r.chapter.startswith("3.2.") for r in cat.values() if "001" in r.seeds)
    assert cat["SC.DMP/UX.14.BIS"].current is not False
    assert [r.id for r in cat.values() if not r.current] and all(r.seeds == ("004",) for r in cat.values()
                                                                   if not r.current)
    assert "dmp" in cat["SC.DMP/UX.13"].services and cat["SC.DMP/UX.13"].klass == "a"


def _load(tmp_path: Path, body: str) -> dict[str, Requirement]:
    path = tmp_path / "c.toml"
    path.write_text(body, encoding="utf-8")
    return catalogue.__wrapped__(path)


ENTRY = '[[exigence]]\nid = "X.01"\nchapitre = "3.2.1"\ntitre = "t"\nsources = ["001"]\nclasse = "a"\n'


@pytest.mark.parametrize(("extra", "says"), [
    ('services = ["fax"]\n', "unknown service"),
    ('classe = "z"\n', None),
])
def test_the_loader_refuses_what_it_does_not_know(tmp_path: Path, extra: str, says: str | None):
    body = ENTRY + extra if says else ENTRY.replace('classe = "a"', 'classe = "z"')
    with pytest.raises(CatalogueError, match=says or "classe"):
        _load(tmp_path, body)


def test_the_loader_refuses_duplicates_bad_sources_and_orphans(tmp_path: Path):
    with pytest.raises(CatalogueError, match="twice"):
        _load(tmp_path, ENTRY + "\n" + ENTRY)
    with pytest.raises(CatalogueError, match="sources"):
        _load(tmp_path, ENTRY.replace('["001"]', '["002"]'))
    with pytest.raises(CatalogueError, match="parent"):
        _load(tmp_path, ENTRY.replace('["001"]', '["000"]'))
    with pytest.raises(CatalogueError, match="missing field 'titre'"):
        _load(tmp_path, ENTRY.replace('titre = "t"\n', ""))
    assert list(_load(tmp_path, ENTRY)) == ["X.01"]


def test_unknown_ids_and_check_ids():
    assert unknown_ids(["SC.DMP/UX.13", "SC.INS/SENTINELLE", "LGC.DMP/UX.10.01"]) == ["SC.INS/SENTINELLE"]
    with pytest.raises(CatalogueError, match=r"SC\.INS/SENTINELLE n'est pas un identifiant"):
        check_ids(["SC.INS/SENTINELLE"], "x.feature")
