"""`segur-bench run --parallel N`: what it refuses before starting anything, how it deals the scenarios to its
workers, and the one JUnit file it leaves from the workers' (hand-written JUnit files here). The runs themselves
are played in parallel by tests/test_scenario_runs.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from segur_bench.run import _balanced, _merge_junit, features

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("args", "config", "message"), [
    (["--driver", "guided", "--operator", "auto"], "", "one after another"),
    (["--against", "https://lgc.example.test", "--driver", "guided"], "", "one after another"),
    ([], "tls = false\n", "needs the bench's TLS ports"),
])
def test_parallel_runs_refuse_what_they_cannot_tell_apart(tmp_path: Path, args: list[str], config: str,
                                                          message: str) -> None:
    cmd = [sys.executable, "-m", "segur_bench"]
    if config:
        (tmp_path / "segur-bench.toml").write_text(config, encoding="utf-8")
        cmd += ["--config", str(tmp_path / "segur-bench.toml")]
    result = subprocess.run([*cmd, "run", "--all", "--parallel", "2", *args, "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "out" / "junit.xml").exists()


def test_every_scenario_goes_to_one_worker_and_the_loads_are_close() -> None:
    chosen = features()
    groups = _balanced(chosen, 3)
    dealt = [f for g in groups for f in g]
    assert sorted(f.path.name for f in dealt) == sorted(f.path.name for f in chosen)  # each once
    weight = [sum(f.path.read_text(encoding="utf-8").count("\n") for f in g) for g in groups]
    biggest = max(f.path.read_text(encoding="utf-8").count("\n") for f in chosen)
    assert max(weight) - min(weight) <= biggest  # greedy, longest first: within one feature of each other
    order = [f.path for f in chosen]
    assert all([order.index(f.path) for f in g] == sorted(order.index(f.path) for f in g) for g in groups)
    assert len(_balanced(chosen[:2], 4)) == 2  # never an idle worker with nothing to play


def test_the_workers_junit_files_are_merged_into_one(tmp_path: Path) -> None:
    (tmp_path / "junit-poste-1.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="2" failures="0" '
        'errors="0"><testcase name="a"/><testcase name="b"/></testsuite></testsuites>', encoding="utf-8")
    (tmp_path / "junit-poste-2.xml").write_text(
        '<testsuite name="pytest" tests="1" failures="1" errors="0"><testcase name="c"><failure message="x"/>'
        '</testcase></testsuite>', encoding="utf-8")
    _merge_junit([tmp_path / "junit-poste-1.xml", tmp_path / "junit-poste-2.xml", tmp_path / "absent.xml"],
                 tmp_path / "junit.xml")
    root = etree.parse(str(tmp_path / "junit.xml")).getroot()
    assert root.tag == "testsuites" and [s.get("failures") for s in root] == ["0", "1"]
    assert [c.get("name") for c in root.iter("testcase")] == ["a", "b", "c"]
