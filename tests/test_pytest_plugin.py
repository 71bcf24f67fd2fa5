"""The pytest plugin as a QA team uses it (issue 22): small suites run in a subprocess (pytester), attached to a
bench started with `up --detach` (by its console's URL) and self-started; the example suite a team copies."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segur_bench.pytest_plugin.self_start import write_config

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "qa-suite"


@pytest.fixture(scope="module", autouse=True)
def _httpx_loaded() -> None:
    """Load httpx's whole connection stack before any pytester fixture: pytester drops the modules imported during a
    test, and a re-imported httpcore raises exception classes httpx no longer maps (httpcore.ConnectError escaping
    as itself)."""
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:9/", timeout=1)


@pytest.fixture(scope="module")
def attached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A bench as a CI job starts it: `up --detach` (INSi, Annuaire santé and the console), `down` at the end."""
    config = write_config(tmp_path_factory.mktemp("bench"))  # every port free, as the plugin picks them
    settings = tomllib.loads(config.read_text())
    console, ports = settings["console_port"], settings["ports"]
    base = [sys.executable, "-m", "segur_bench", "--config", str(config)]
    up = subprocess.run([*base, "up", "--only", "insi,annuaire", "--console", "--detach", "--wait-timeout", "60"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield {"url": f"http://127.0.0.1:{console}", "insi": f"http://127.0.0.1:{ports['insi']}",
               "annuaire": f"http://127.0.0.1:{ports['annuaire']}"}
    finally:
        subprocess.run([*base, "down"], cwd=ROOT, capture_output=True, timeout=60)


SUITE = '''
import httpx
import pytest

KEY = {"ESANTE-API-KEY": "segur-bench-annuaire"}


def search(segur_bench, family):
    return httpx.get(segur_bench.url("annuaire") + "/Practitioner", params={"family": family}, headers=KEY)


@pytest.mark.rem("SC.MSS/CONF.20")
def test_one(segur_bench):
    assert search(segur_bench, "MARTIN").status_code == 200
    urls = [e["url"] for e in segur_bench.journal("annuaire")]
    assert len(urls) == 1 and "family=MARTIN" in urls[0], urls


def test_two(segur_bench):
    search(segur_bench, "DUPONT")
    urls = [e["url"] for e in segur_bench.journal("annuaire", operation="Practitioner.search")]
    assert len(urls) == 1 and "family=DUPONT" in urls[0], urls


def test_incident_applies_to_this_test(segur_bench):
    with segur_bench.incident("insi-indisponible") as applied:
        assert list(applied) == ["insi"]
        answer = httpx.post(segur_bench.url("insi"), content=b"<x/>",
                            headers={"Content-Type": "application/soap+xml"})
        assert answer.status_code == 500 and b"siram_40" in answer.content


def test_incident_cleared_when_the_block_fails(segur_bench):
    with segur_bench.incident("insi-indisponible"):
        raise RuntimeError("a failure inside the incident")


def test_tls_with_the_bench_ca_fetched_from_a_remote_bench(segur_bench):
    import ssl
    from segur_bench.pytest_plugin import SegurBench

    remote = SegurBench({**segur_bench.description, "ca": None})  # as on another machine: no local CA file
    ca = remote.ca_file
    assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    answer = httpx.get(segur_bench.url("annuaire", tls=True) + "/metadata",
                       verify=ssl.create_default_context(cafile=str(ca)))
    assert answer.status_code == 200


def test_fails_with_its_exchanges(segur_bench):
    search(segur_bench, "FAILING")
    assert False, "deliberate"
'''


def test_an_attached_suite_gets_per_test_journals_incidents_and_a_har_on_failure(
        pytester: pytest.Pytester, attached: dict) -> None:
    pytester.makepyfile(test_suite=SUITE)
    results = pytester.path / "results"
    run = pytester.runpytest_subprocess(f"--segur-bench-url={attached['url']}", f"--segur-bench-results={results}",
                                        "--junitxml=junit.xml", "-p", "no:cacheprovider", timeout=120)
    run.assert_outcomes(passed=4, failed=2)
    out = run.stdout.str()
    # the failing test's report names its HAR; the file holds that test's exchange, and only it
    har_path = next(results.glob("echecs/*test_fails_with_its_exchanges.har"))
    assert f"HAR: {har_path}" in out
    entries = json.loads(har_path.read_text())["log"]["entries"]
    assert [e["request"]["url"].split("?")[1] for e in entries] == ["family=FAILING"]
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert props["segur_bench_har"] == str(har_path)
    # the incident's rules were removed when its block raised: INSi has no rule left
    assert httpx.get(attached["insi"] + "/_bench/faults").json()["rules"] == []
    # current run of the simulators given back; the passing test with an id is in the Convergence export
    assert httpx.get(attached["annuaire"] + "/_bench/run").json().get("run") is None
    rows = list(csv.reader((results / "convergence.csv").read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert [(r[0], r[2]) for r in rows[1:]] == [("SC.MSS/CONF.20", "log")]
    assert (results / rows[1][3]).is_file() and "test_one" in rows[1][4]


def test_an_unknown_requirement_id_stops_the_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ids='''
import pytest

@pytest.mark.rem("LGC.DMP/UX.10.01")
def test_known():
    pass

@pytest.mark.rem("LGC.INVENTE.99")
def test_unknown():
    pass
''')
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*test_ids.py::test_unknown: LGC.INVENTE.99 n'est pas un identifiant d'exigence*"])
    assert "test_known" not in run.stderr.str()


FEATURE = '''# language: fr
Fonctionnalité: Annuaire
  @exigence=SC.MSS/UX.41
  Scénario: Une recherche qui échoue
    Étant donné le banc
    Quand le LGC cherche "ALLURE"
    Alors il ne trouve personne
'''

STEPS = '''
import httpx
from pytest_bdd import given, parsers, scenarios, then, when

scenarios("annuaire.feature")


@given("le banc", target_fixture="bench")
def bench(segur_bench):
    return segur_bench


@when(parsers.parse('le LGC cherche "{family}"'), target_fixture="answer")
def search(bench, family):
    return httpx.get(bench.url("annuaire") + "/Practitioner", params={"family": family},
                     headers={"ESANTE-API-KEY": "segur-bench-annuaire"})


@then("il ne trouve personne")
def nobody(answer):
    assert answer.json()["total"] == 1, "deliberate failure"
'''


def test_a_failing_bdd_scenario_gets_its_har_and_requirement_in_allure(pytester: pytest.Pytester,
                                                                         attached: dict) -> None:
    pytester.makefile(".feature", annuaire=FEATURE)
    pytester.makepyfile(test_bdd=STEPS)
    allure_dir = pytester.path / "allure-results"
    run = pytester.runpytest_subprocess(f"--segur-bench-url={attached['url']}", f"--alluredir={allure_dir}",
                                        f"--segur-bench-results={pytester.path / 'results'}",
                                        "-p", "no:cacheprovider", timeout=120)
    run.assert_outcomes(failed=1)
    result = json.loads(next(allure_dir.glob("*-result.json")).read_text())
    assert {"name": "exigence", "value": "SC.MSS/UX.41"} in result["labels"]
    attached_files = {a["name"]: allure_dir / a["source"] for a in result.get("attachments", [])}
    har = attached_files["segur-bench: échanges du test (HAR)"]
    entries = json.loads(har.read_text())["log"]["entries"]
    assert len(entries) == 1 and "family=ALLURE" in entries[0]["request"]["url"]


def test_the_example_suite_passes_against_an_attached_bench(pytester: pytest.Pytester, attached: dict) -> None:
    for path in EXAMPLE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = pytester.path / path.relative_to(EXAMPLE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    run = pytester.runpytest_subprocess(f"--segur-bench-url={attached['url']}", "-p", "no:cacheprovider",
                                        timeout=180)
    run.assert_outcomes(passed=5)
    rows = (pytester.path / "segur-bench-results" / "convergence.csv").read_text(encoding="utf-8-sig")
    assert "SC.MSS/CONF.20" in rows and "SC.MSS/UX.41" in rows


@pytest.mark.timeout(240)
def test_a_self_started_bench_serves_the_session_then_stops(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_self='''
import httpx, json, pathlib

def test_search(segur_bench):
    assert segur_bench.source == "self-started"
    r = httpx.get(segur_bench.url("annuaire") + "/Practitioner", params={"family": "MARTIN"},
                  headers={"ESANTE-API-KEY": "segur-bench-annuaire"})
    assert r.status_code == 200
    assert len(segur_bench.journal("annuaire")) == 1
    with segur_bench.incident("insi-indisponible"):
        assert segur_bench.control("insi", "GET", "/faults").json()["rules"]
    pathlib.Path("bench.txt").write_text(json.dumps(segur_bench.description))
''')
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", timeout=220)
    run.assert_outcomes(passed=1)
    described = json.loads((pytester.path / "bench.txt").read_text())
    data_dir = Path(described["data_dir"])
    assert not (data_dir / "bench.json").exists(), "down removes the run-state file"
    for ep in described["services"].values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(ep["control"] + "/_bench/health", timeout=1)
