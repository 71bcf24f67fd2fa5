"""The CI templates of docs/ci/ (issue 22): valid YAML; every segur-bench and pytest command in them is one the CLI
and the plugin accept; the bench is started detached before the suite and stopped whatever happened; the results
are kept. (The same sequence runs for real in tests/test_pytest_plugin.py: up --detach, the suite attached, down.)"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from segur_bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "docs" / "ci"


def parse_cli(line: str) -> click.Context:
    """Parse a `segur-bench …` command line as the CLI would (no run): UsageError when it would refuse it."""
    args = shlex.split(line.replace("|| true", ""))
    assert Path(args[0]).name == "segur-bench", line
    ctx = click.Context(main, info_name="segur-bench")  # the templates give no group option (--config)
    name, command, rest = main.resolve_command(ctx, args[1:])
    assert command is not None and name is not None, line
    return command.make_context(name, rest, parent=ctx)


def gitlab() -> tuple[list[str], list[str], list[str], dict, dict]:
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["segur-bench"]
    return job["before_script"], job["script"], job["after_script"], job["artifacts"], job["variables"]


def github() -> tuple[list[str], list[str], list[str], dict, dict]:
    job = yaml.safe_load((CI / "github-actions.yml").read_text())["jobs"]["regression"]
    before, script, always, paths = [], [], [], {}
    seen_suite = False
    for step in job["steps"]:
        lines = [x for x in step.get("run", "").splitlines() if x.strip()]
        if step.get("if") == "always()":
            always += lines
            if "with" in step:
                paths = {"paths": step["with"]["path"].split()}
        elif "pytest" in step.get("run", "") or seen_suite:
            seen_suite = True
            script += lines
        else:
            before += lines
    return before, script, always, paths, job["env"]


@pytest.mark.parametrize("read", [gitlab, github], ids=["gitlab", "github"])
def test_a_ci_template_starts_detached_runs_the_suite_keeps_results_and_always_stops(read, tmp_path: Path) -> None:
    before, script, always, artifacts, env = read()
    commands = [line.strip() for line in [*before, *script, *always] if "segur-bench " in line
                and line.strip().split()[0].endswith("segur-bench")]
    for line in commands:
        parse_cli(line)  # a wrong option would stop the job
    up = [c for c in before if "segur-bench up" in c]
    assert up and "--detach" in up[0], "the bench starts in the background, before the suite"
    assert any(c.strip().endswith("segur-bench status") for c in before)
    assert any("segur-bench down" in c for c in always), "stopped whatever happened"
    suite = [c for c in script if c.strip().startswith("pytest")]
    assert suite and "--alluredir=allure-results" in suite[0] and "--junitxml=junit.xml" in suite[0]
    # the suite's command line as pytest (with the plugin and Allure) reads it: collected, not run
    args = [a.replace("$SUITE", env["SUITE"]) for a in shlex.split(suite[0])[1:]]
    args = [a for a in args if not a.startswith(("--junitxml", "--alluredir"))]  # nothing written by a dry run
    collected = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p",
                                "no:cacheprovider", "--alluredir=" + str(tmp_path / "allure")], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
    assert collected.returncode == 0 and "5 tests collected" in collected.stdout, collected.stdout + collected.stderr
    # attached to the bench's console, running the example suite of this repository
    assert env["SEGUR_BENCH_URL"] == "http://127.0.0.1:8090" and (ROOT / env["SUITE"] / "conftest.py").is_file()
    kept = " ".join(artifacts["paths"])
    for part in ("allure-results", "segur-bench-results", "out/scenarios/bundles", "junit.xml"):
        assert part in kept, part


def test_the_documented_console_url_is_the_default_console_port() -> None:
    from segur_bench.config import DEFAULT_CONSOLE_PORT

    assert DEFAULT_CONSOLE_PORT == 8090
