"""Drivers written by users (issue 18): `--driver module:Class` loads a class from outside the package, the
vocabulary is declared in one place, and a missing or failing method names the step and the method."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from scenarios.driver_playwright import ReferenceLgcDriver
from scenarios.driver_plugin import DriverError, GuardedDriver, load_driver_class, missing_methods, step_vocabulary
from scenarios.driver_protocol import LgcDriver

ROOT = Path(__file__).resolve().parents[1]


def test_the_protocol_declares_exactly_the_steps_vocabulary_with_the_reference_signatures() -> None:
    declared = {n for n, f in inspect.getmembers(LgcDriver, inspect.isfunction) if not n.startswith("_")}
    assert declared == set(step_vocabulary())
    for name in declared:
        ours = inspect.signature(getattr(LgcDriver, name))
        ref = inspect.signature(getattr(ReferenceLgcDriver, name))
        assert list(ours.parameters) == list(ref.parameters)[:len(ours.parameters)], name
        assert getattr(LgcDriver, name).__doc__, f"{name}: say what it must do"
    assert missing_methods(ReferenceLgcDriver) == []


def test_loading_errors_say_what_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DriverError, match=r"paquet\.module:Classe"):
        load_driver_class("pas-un-pilote")
    with pytest.raises(DriverError, match="PYTHONPATH"):
        load_driver_class("module_absent_xyz:Pilote")
    (tmp_path / "pilote_casse.py").write_text("raise RuntimeError('boum')\n", encoding="utf-8")
    (tmp_path / "pilote_vide.py").write_text("class Autre:\n    pass\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DriverError, match="RuntimeError: boum"):
        load_driver_class("pilote_casse:Pilote")
    with pytest.raises(DriverError, match="pas de classe Pilote"):
        load_driver_class("pilote_vide:Pilote")
    assert "login" in missing_methods(load_driver_class("pilote_vide:Autre"))


def test_a_missing_or_failing_method_names_the_step_and_the_method() -> None:
    class Partial:
        def login(self, national_id: str) -> None:
            raise TimeoutError("bouton introuvable")

    rec = SimpleNamespace(steps=[SimpleNamespace(keyword="Quand", text="le médecin enregistre le consentement")])
    driver = GuardedDriver(Partial(), "mon_pilote:Partial", rec)  # type: ignore[arg-type]
    with pytest.raises(DriverError, match=r"n'a pas de méthode record_consent, nécessaire à l'étape « Quand le "
                                          r"médecin enregistre le consentement »"):
        driver.record_consent()
    with pytest.raises(DriverError, match=r"a échoué dans login .* TimeoutError: bouton introuvable"):
        driver.login("899700366240")


def test_the_template_imports_and_says_what_is_left_to_write() -> None:
    cls = load_driver_class("scenarios.driver_template:PiloteMonLgc")
    driver = cls(page=None, lgc_url="https://lgc.example.test/", sims=None, rec=None)
    with pytest.raises(NotImplementedError, match="à écrire"):
        driver.open_patient("BOUCHER")
    assert "record_consent" in missing_methods(cls)


def test_the_cli_refuses_a_driver_it_cannot_load_before_starting_anything(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "segur_bench", "run", "SC.DMP/CONF.03", "--driver",
                             "module_absent_xyz:Pilote", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "module_absent_xyz" in result.stderr and "PYTHONPATH" in result.stderr
    assert not (tmp_path / "junit.xml").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--driver", "guided", "--operator-listen", "8790"], "HOST:PORT expected"),
    (["--operator-listen", "0.0.0.0:8790"], "for the guided driver"),
])
def test_the_cli_refuses_a_bad_operator_page_address_before_starting_anything(tmp_path: Path, args: list[str],
                                                                              message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "segur_bench", "run", "SC.DMP/CONF.03", *args, "--out",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "junit.xml").exists()


@pytest.mark.timeout(600)
def test_a_driver_that_fails_to_start_leaves_no_reference_lgc_running(tmp_path: Path) -> None:
    """The scenario fails before its first step; the LGC, browser context and operator page started for it stop."""
    drivers = tmp_path / "qa_repo"
    drivers.mkdir()
    (drivers / "pilote_casse.py").write_text(
        "from scenarios.driver_playwright import ReferenceLgcDriver\n\n\n"
        "class PiloteCasse(ReferenceLgcDriver):\n"
        "    def __init__(self, page, lgc_url, sims, rec):\n"
        "        raise RuntimeError('connexion au LGC impossible')\n", encoding="utf-8")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "segur_bench", "run", "SC.DMP/CONF.03", "--driver",
                             "pilote_casse:PiloteCasse", "--out", str(out)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(drivers)))
    assert result.returncode != 0 and "connexion au LGC impossible" in result.stdout + result.stderr
    left = subprocess.run(["pgrep", "-f", f"reference_lgc --config {out}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "reference LGC still running after its scenario failed to start"


@pytest.mark.timeout(600)
def test_a_driver_from_a_module_outside_the_package_plays_a_scenario(tmp_path: Path) -> None:
    """A QA team's driver (here: the reference driver, extended to count its calls) in its own directory."""
    drivers = tmp_path / "qa_repo"
    drivers.mkdir()
    (drivers / "pilote_qa.py").write_text(
        "from scenarios.driver_playwright import ReferenceLgcDriver\n\n\n"
        "class PiloteQa(ReferenceLgcDriver):\n"
        "    def __init__(self, page, lgc_url, sims, rec):\n"
        "        super().__init__(page, lgc_url, sims, rec)\n"
        "        rec.meta['pilote_qa'] = 'chargé'\n", encoding="utf-8")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(drivers))
    # a short scenario (the point is the driver found outside the package, not the scenario)
    result = subprocess.run([sys.executable, "-m", "segur_bench", "run", "SC.MSS/CONF.04", "--driver",
                             "pilote_qa:PiloteQa", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (bundle,) = sorted((out / "bundles").glob("SC.MSS-CONF.04_*.zip"))
    with zipfile.ZipFile(bundle) as z:
        run = json.loads(z.read(next(n for n in z.namelist() if n.endswith("/run.json"))))
    assert run["driver"] == "pilote_qa:PiloteQa" and run["outcome"] == "passed" and run["pilote_qa"] == "chargé"


def test_the_cli_finds_a_driver_module_in_the_current_directory(tmp_path: Path) -> None:
    """The installed command (not `python -m`, which puts the directory on sys.path itself) looks there too, as the
    scenarios do: the module is found, and the missing class is what it reports."""
    (tmp_path / "pilote_ici.py").write_text("class Autre:\n    pass\n", encoding="utf-8")
    command = Path(sys.executable).with_name("segur-bench")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(command), "run", "SC.DMP/CONF.03", "--driver", "pilote_ici:Pilote", "--out",
                             str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode != 0 and "pilote_ici n'a pas de classe Pilote" in result.stderr, result.stderr
