"""The segur-bench command line, driven with click's CliRunner against a real echo simulator.

The CLI only targets the services of simulators.registry.SERVICES, so the echo simulator is reached by
pointing [urls] insi of a settings file at it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from core_support import INCIDENTS_DIR, add_rule, assert_valid_har, wait_for_entries

from segur_bench.cli import main
from simulators.registry import SERVICES


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            paths += _command_paths(cmd, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = _command_paths(main)
INCIDENT_NAMES = sorted(p.stem for p in INCIDENTS_DIR.glob("*.toml"))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No settings file or environment from the developer's machine leaks into the tests."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGUR_BENCH_CONFIG", raising=False)
    monkeypatch.delenv("SEGUR_BENCH_INCIDENTS", raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_config(tmp_path: Path, url: str, **extra: str) -> Path:
    path = tmp_path / "segur-bench.toml"
    lines = [f'incidents_dir = "{INCIDENTS_DIR}"', *(f"{k} = {v}" for k, v in extra.items()), "[urls]",
             f'insi = "{url}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path, server) -> Path:
    return write_config(tmp_path, server.url)


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def invoke(runner: CliRunner, config: Path | None, *args: str) -> Result:
    argv = (["--config", str(config)] if config else []) + list(args)
    return runner.invoke(main, argv)


def assert_fails(result: Result, fragment: str) -> str:
    """Non-zero exit, no traceback, exactly one 'Error:' line that contains `fragment`."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    return errors[0]


# --------------------------------------------------------------------------------------------- help


def test_every_command_is_discovered():
    assert {" ".join(p) for p in COMMANDS} >= {"", "up", "sim", "incident", "incident list", "incident apply",
                                                 "incident clear", "journal", "journal export"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "main")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(runner, path, flag):
    result = runner.invoke(main, [*path, flag])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert " ".join(["main", *path]) in result.output.splitlines()[0]


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.output


# --------------------------------------------------------------------------------------------- incident list


def test_incident_list(runner):
    result = invoke(runner, None, "incident", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["incident", "title", "services"]
    for name in INCIDENT_NAMES:
        row = next(line for line in lines if line.startswith(name + " "))
        assert row.split()[-1] in ("*", "dmp", "insi", "on")
    assert "Latence réseau de 3 secondes sur tous les services" in result.stdout
    assert "Téléservice INSi indisponible" in result.stdout


def test_incident_list_from_settings_and_invalid_profiles(runner, tmp_path):
    incidents = tmp_path / "incidents"
    incidents.mkdir()
    (incidents / "ok.toml").write_text('title = "Tout va bien"\n[[rule]]\nservice = "dmp"\neffect = {type="drop"}\n',
                                       encoding="utf-8")
    (incidents / "ko.toml").write_text('title = "Sans règle"\n', encoding="utf-8")
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'incidents_dir = "{incidents}"\n', encoding="utf-8")
    result = invoke(runner, cfg, "incident", "list")
    assert result.exit_code == 0, result.output
    assert "Tout va bien" in result.stdout
    assert "(invalid: " in result.stdout and "at least one [[rule]]" in result.stdout
    assert "latence-3s" not in result.stdout


def test_incident_list_empty_directory(runner, tmp_path):
    cfg = tmp_path / "s.toml"
    (tmp_path / "empty").mkdir()
    cfg.write_text(f'incidents_dir = "{tmp_path / "empty"}"\n', encoding="utf-8")
    assert_fails(invoke(runner, cfg, "incident", "list"), "no incident profile in")


# --------------------------------------------------------------------------------------------- incident apply/clear


def test_incident_apply_and_clear(runner, config, client):
    result = invoke(runner, config, "incident", "apply", "latence-3s", "--service", "insi")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "insi: latence 3000 ms",
        "incident latence-3s (Latence réseau de 3 secondes sur tous les services) applied to 1 simulator(s)",
    ]
    (rule,) = client.get("/_bench/faults").json()["rules"]
    assert rule["incident"] == "latence-3s" and rule["effect"] == {"type": "latency", "ms": 3000}

    again = invoke(runner, config, "incident", "apply", "latence-3s", "-s", "insi")
    assert again.exit_code == 0
    assert len(client.get("/_bench/faults").json()["rules"]) == 1  # replaced, not stacked

    add_rule(client, effect={"type": "drop"}, operation="none")
    cleared = invoke(runner, config, "incident", "clear", "latence-3s", "--service", "insi")
    assert cleared.exit_code == 0, cleared.output
    assert cleared.stdout.strip() == "insi: 1 rule(s) removed"
    assert [r.get("incident") for r in client.get("/_bench/faults").json()["rules"]] == [None]

    everything = invoke(runner, config, "incident", "clear", "-s", "insi")
    assert everything.exit_code == 0
    assert everything.stdout.strip() == "insi: 1 rule(s) removed"
    assert client.get("/_bench/faults").json()["rules"] == []


def test_incident_apply_with_several_rules(runner, config, client):
    result = invoke(runner, config, "incident", "apply", "reseau-instable", "-s", "insi")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("insi: latence lognormale médiane 800 ms σ=0.6; connexion coupée\n")
    rules = client.get("/_bench/faults").json()["rules"]
    assert [(r["effect"]["type"], r["seed"], r["incident"]) for r in rules] == [
        ("latency", 2026, "reseau-instable"), ("drop", 2026, "reseau-instable")]


def test_incident_refused_by_the_simulator(runner, config, client):
    result = invoke(runner, config, "incident", "apply", "insi-indisponible", "--service", "insi")
    assert_fails(result, "incident insi-indisponible was applied to no simulator")
    assert "insi: refused: rule rejected: this rule targets insi, but this simulator is echo" in result.stderr
    assert client.get("/_bench/faults").json()["rules"] == []


def test_incident_without_rules_for_the_service(runner, config, client):
    result = invoke(runner, config, "incident", "apply", "dmp-indisponible", "--service", "insi")
    line = assert_fails(result, "incident dmp-indisponible ")
    assert "applied to no simulator" in line or "none of the targeted simulators (insi)" in line
    assert client.get("/_bench/faults").json()["rules"] == []


def test_unknown_incident(runner, config):
    line = assert_fails(invoke(runner, config, "incident", "apply", "nope", "-s", "insi"), "unknown incident 'nope'")
    assert "latence-3s" in line  # the message lists what exists


@pytest.mark.parametrize(
    "args",
    [
        ("incident", "apply", "latence-3s", "--service", "echo"),
        ("incident", "clear", "--service", "nope"),
        ("journal", "export", "--out", "x.jsonl", "--service", "nope"),
    ],
)
def test_unknown_service(runner, config, args):
    line = assert_fails(invoke(runner, config, *args), "unknown simulator")
    assert all(name in line for name in SERVICES)


def test_unreachable_simulator(runner, tmp_path, dead_url):
    cfg = write_config(tmp_path, dead_url)
    applied = invoke(runner, cfg, "incident", "apply", "latence-3s", "-s", "insi")
    assert_fails(applied, "incident latence-3s was applied to no simulator")
    assert f"insi: not reachable at {dead_url}" in applied.stderr
    assert_fails(invoke(runner, cfg, "incident", "clear", "-s", "insi"), "no simulator reachable")
    exported = invoke(runner, cfg, "journal", "export", "--out", str(tmp_path / "j.jsonl"), "-s", "insi")
    assert_fails(exported, "no simulator reachable")
    assert not (tmp_path / "j.jsonl").exists()


# --------------------------------------------------------------------------------------------- journal export


@pytest.fixture
def traffic(server, client):
    client.post("/_bench/run", json={"run": "run-cli"})
    client.post("/echo", content=b"bonjour", headers={"content-type": "text/plain"})
    client.post("/echo", content=bytes(range(256)), headers={"content-type": "application/octet-stream"})
    client.post("/_bench/run", json={"run": None})
    client.get("/items/zzz")
    add_rule(client, effect={"type": "drop"}, operation="GET /items/*")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/items/dropped")
    return wait_for_entries(client, 4)


def test_journal_export_har(runner, config, traffic, tmp_path, har_validator, server):
    out = tmp_path / "exports" / "bench.har"
    result = invoke(runner, config, "journal", "export", "--format", "har", "--out", str(out), "-s", "insi")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"4 exchange(s) from 1 simulator(s) written to {out}"
    har = json.loads(out.read_text(encoding="utf-8"))
    assert_valid_har(har_validator, har)
    entries = har["log"]["entries"]
    assert [e["request"]["method"] for e in entries] == ["POST", "POST", "GET", "GET"]
    assert [e["response"]["status"] for e in entries] == [200, 200, 404, 0]
    assert entries[0]["request"]["url"] == f"{server.url}/echo"
    assert entries[1]["response"]["content"]["encoding"] == "base64"


def test_journal_export_jsonl(runner, config, traffic, tmp_path):
    out = tmp_path / "bench.jsonl"
    result = invoke(runner, config, "journal", "export", "--out", str(out), "--service", "insi")
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == 4 and text.endswith("\n")
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    assert [r["id"] for r in records] == [e["id"] for e in traffic]
    assert [r["received_at"] for r in records] == sorted(r["received_at"] for r in records)
    assert records[0]["request"]["body"] == "bonjour"
    assert records[3]["status"] is None and records[3]["error"]


@pytest.mark.parametrize(
    ("args", "count"),
    [(("--run", "run-cli"), 2), (("--operation", "GET /items/<item_id>"), 2), (("--operation", "nothing"), 0)],
)
def test_journal_export_filters(runner, config, traffic, tmp_path, args, count):
    out = tmp_path / "f.jsonl"
    result = invoke(runner, config, "journal", "export", "--out", str(out), "-s", "insi", *args)
    assert result.exit_code == 0, result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == count
    assert f"{count} exchange(s)" in result.stdout


def test_journal_export_since_until(runner, config, traffic, tmp_path):
    out = tmp_path / "t.jsonl"
    since = str(traffic[1]["received_at"])
    until = str(traffic[2]["received_at"])
    result = invoke(runner, config, "journal", "export", "--out", str(out), "-s", "insi", "--since", since,
                    "--until", until)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [traffic[1]["id"], traffic[2]["id"]]


def test_journal_export_bad_filter(runner, config, traffic, tmp_path):
    result = invoke(runner, config, "journal", "export", "--out", str(tmp_path / "x.har"), "-s", "insi",
                    "--since", "hier")
    assert_fails(result, "insi: since must be an ISO-8601 instant")


def test_journal_export_needs_out_and_a_known_format(runner, config):
    assert runner.invoke(main, ["--config", str(config), "journal", "export", "-s", "insi"]).exit_code == 2
    bad = runner.invoke(main, ["--config", str(config), "journal", "export", "--format", "xml", "--out", "x"])
    assert bad.exit_code == 2
    assert "'xml' is not one of" in bad.stderr


# --------------------------------------------------------------------------------------------- settings / serving


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "configuration file not found"),
        ("colour = 'blue'\n", "unknown setting(s) ['colour']"),
        ("[urls]\nnope = 'http://x'\n", "[urls] names unknown service(s) ['nope']"),
        ("[ports]\ninsi = 70000\n", "port of insi must be an integer between 1 and 65535"),
        ("workers = 0\n", "workers must be a positive integer"),
        ("host = \n", "not valid TOML"),
    ],
)
def test_bad_settings_file(runner, tmp_path, content, fragment):
    cfg = tmp_path / "bad.toml"
    if content is not None:
        cfg.write_text(content, encoding="utf-8")
    assert_fails(invoke(runner, cfg, "incident", "list"), fragment)


def test_settings_file_from_environment(runner, tmp_path, monkeypatch):
    cfg = tmp_path / "env.toml"
    cfg.write_text("colour = 1\n", encoding="utf-8")
    monkeypatch.setenv("SEGUR_BENCH_CONFIG", str(cfg))
    assert_fails(runner.invoke(main, ["incident", "list"]), "unknown setting(s)")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(("sim", "nope"), "unknown simulator 'nope'"), (("up", "--only", "nope"), "unknown simulator 'nope'")],
)
def test_unknown_simulator_to_serve(runner, args, fragment):
    assert_fails(runner.invoke(main, list(args)), fragment)


def test_sim_refuses_several_workers_in_memory(runner):
    result = runner.invoke(main, ["sim", "insi", "--workers", "2"])
    # Either the INSi simulator is not written yet, or it is and several in-memory workers are refused.
    assert result.exit_code == 1
    assert "not available in this version" in result.stderr or "--workers above 1 needs --data-dir" in result.stderr
