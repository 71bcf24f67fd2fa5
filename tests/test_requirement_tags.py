"""Scenario tags, run metadata and Convergence rows name ids of the requirement catalogue (issue 17)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios.requirements import CatalogueError, catalogue, check_ids, feature_ids, proven_by, scenario_table

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ROOT / "scenarios" / "features"


def test_every_feature_tag_is_a_catalogue_id():
    for path in FEATURES.glob("*.feature"):
        ids = feature_ids(path)
        assert ids, f"{path.name} proves no requirement"
        check_ids(ids, path.name)


def test_an_unknown_tag_fails_the_collection():
    from scenarios.conftest import pytest_bdd_apply_tag

    assert pytest_bdd_apply_tag("exigence=SC.DMP/UX.13", None) is True
    assert pytest_bdd_apply_tag("autre", None) is None
    for bad in ("exigence=SC.INS/SENTINELLE", "exigence=SC.DMP/ALI/PROG", "exigence=SC.DMP/UX.999"):
        with pytest.raises(pytest.UsageError, match="n'est pas un identifiant d'exigence du DSR"):
            pytest_bdd_apply_tag(bad, None)


def test_a_feature_with_an_unknown_tag_is_refused_at_collection(tmp_path: Path):
    """The real thing: pytest collecting a feature file whose tag is not a DSR id stops with the reason."""
    features = tmp_path / "features"
    features.mkdir()
    text = (FEATURES / "SC_ORDN_CONF_04.feature").read_text(encoding="utf-8")
    (features / "X.feature").write_text(text.replace("@exigence=SC.ORDN/CONF.04", "@exigence=SC.ORDN/CONF.99"),
                                        encoding="utf-8")
    (tmp_path / "conftest.py").write_text("from scenarios.conftest import pytest_bdd_apply_tag  # noqa: F401\n",
                                          encoding="utf-8")
    (tmp_path / "test_x.py").write_text("from pytest_bdd import scenarios\nscenarios('features')\n",
                                        encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), str(tmp_path)], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode != 0
    assert "SC.ORDN/CONF.99 n'est pas un identifiant d'exigence du DSR" in result.stdout + result.stderr


def test_check_ids_names_the_culprit():
    with pytest.raises(CatalogueError, match=r"SC\.FAUX\.01"):
        check_ids(["SC.DMP/UX.13", "SC.FAUX.01"], "run.json")


def test_scenarios_readme_table_is_generated_from_the_catalogue():
    readme = (ROOT / "scenarios" / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- table des scénarios : segur-bench requirements --markdown -->", "<!-- fin de la table -->"
    assert start in readme and end in readme, "scenarios/README.md lost its generated table's markers"
    current = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert current == scenario_table().strip(), "regenerate it: segur-bench requirements --markdown"


def test_requirements_command_lists_covered_and_missing():
    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "segur_bench", "requirements", *args], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    covered = json.loads(cli("--covered", "--json"))
    proofs = proven_by()
    assert {r["id"] for r in covered} == {i for i in proofs if i in catalogue()}
    assert all(r["scenarios"] for r in covered)
    missing = json.loads(cli("--missing", "--service", "dmp", "--json"))
    assert missing and all(not r["scenarios"] and "dmp" in r["services"] for r in missing)
    assert "SC.DMP/UX.13" not in {r["id"] for r in missing}
    text = cli("--service", "dmp")
    assert re.search(r"SC\.DMP/UX\.13 .* SC_DMP_UX_13_46\.feature", text)
    assert "exigence(s), dont" in text


def test_the_primary_id_is_the_first_tag_even_when_another_id_is_its_prefix():
    from scenarios.conftest import _in_file_order

    path = FEATURES / "LGC_DMP_UX_10_01.feature"
    ids = list(feature_ids(path))
    assert ids[:2] == ["LGC.DMP/UX.10.01", "LGC.DMP/UX.10"]
    assert _in_file_order(str(path), sorted(ids))[:2] == ["LGC.DMP/UX.10.01", "LGC.DMP/UX.10"]
