"""`segur-bench up` and `segur-bench smoke` as a user runs them: real child processes, real ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import psutil
import pytest

from simulators import registry

ROOT = Path(__file__).resolve().parents[1]


_given: set[int] = set()


def free_port() -> int:
    """A free port not handed out before in this session: the kernel may give the same free port twice in a row
    (psc and annuaire once shared one, and the simulators' SO_REUSEPORT let both bind it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


@pytest.fixture
def bench_config(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    config = tmp_path / "segur-bench.toml"
    # every port free (a bench of another test may hold the defaults); insi's HTTP port is the one tests use
    ports = {name: free_port() for name in registry.SERVICES} | {"insi": port}
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nfront_port = 0\n[ports]\n'
                      + "".join(f"{k} = {v}\n" for k, v in ports.items())
                      + "[tls_ports]\n" + "".join(f"{k} = {free_port()}\n" for k in registry.SERVICES))
    return config, port


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "segur_bench", *args]


def test_up_prints_the_table_serves_and_stops_its_children_on_ctrl_c(bench_config: tuple[Path, int]) -> None:
    config, port = bench_config
    proc = subprocess.Popen(cli("--config", str(config), "up", "--only", "insi"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # `up` prints its table once every child is ready: wait for that line, not just for the child
        # to answer (the child can answer before the table is printed; Ctrl-C then would race it).
        assert proc.stdout is not None
        table = []
        for line in proc.stdout:
            table.append(line)
            if "Press Ctrl-C" in line:
                break
        else:
            pytest.fail("up ended without printing its table: " + proc.stderr.read())
        health = httpx.get(f"http://127.0.0.1:{port}/_bench/health").json()
        assert health["service"] == "insi"
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
        out = "".join(table) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/lps" in out
    # The banner says which software authorisation numbers INSi accepts, and how to add one's own
    assert "(IDAM) accepted by insi: SIMUL-LGC-0001, BENCH-LGC-0001, LGC-TEST-0001" in out
    assert "authorised_idam" in out
    assert "all simulators stopped" in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=1)
    # Two workers share the state through SQLite files in the data directory.
    assert (config.parent / "data" / "insi.sqlite3").exists()


def test_up_refuses_a_busy_port_with_one_clear_line(bench_config: tuple[Path, int]) -> None:
    config, port = bench_config
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        result = subprocess.run(cli("--config", str(config), "up", "--only", "insi"), cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"port {port} (insi) is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_smoke_runs_the_main_job_and_writes_its_journal(bench_config: tuple[Path, int], tmp_path: Path) -> None:
    config, _ = bench_config
    out_dir = tmp_path / "smoke"
    result = subprocess.run(cli("--config", str(config), "smoke", "--out", str(out_dir)), cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CodeCR 00, matricule 1431100950837" in result.stdout
    assert "smoke check passed" in result.stdout
    entries = [json.loads(line) for line in (out_dir / "journal.jsonl").read_text().splitlines()]
    by_service = {name: sum(e["service"] == name for e in entries) for name in {e["service"] for e in entries}}
    assert by_service and set(by_service.values()) == {5}, by_service
    assert {e["run"] for e in entries} == {entries[0]["run"]}
    assert (out_dir / "journal.har").stat().st_size > 0


def test_service_settings_reach_the_simulator_from_the_file_and_from_set(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "segur-bench.toml"
    config.write_text('[settings.insi]\nauth_mode = "mtls"\nauthorised_idam = ["FROM-FILE"]\n')
    proc = subprocess.Popen(cli("--config", str(config), "sim", "insi", "--port", str(port), "--no-tls",
                                "--set", 'authorised_idam=["FROM-SET"]'),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        body = (ROOT / "segur_bench" / "probes" / "insi-clerico.xml").read_text().format(message_id="urn:uuid:1")
        resp = httpx.post(f"http://127.0.0.1:{port}/lps", content=body.encode(),
                          headers={"content-type": "application/soap+xml"})
    finally:
        proc.terminate()
        proc.wait(10)
    # The probe's IDAM is in neither list: the platform's unknown-IDAM fault (HTTP 500, as the real service).
    assert resp.status_code == 500
    assert "desir_550" in resp.text and "siram_100" in resp.text


def test_up_starts_the_reference_lgc_pointed_at_the_simulators(tmp_path: Path) -> None:
    ports = {"insi": free_port(), "psc": free_port()}
    tls_ports = {"insi": free_port(), "psc": free_port()}
    lgc_port = free_port()
    config = tmp_path / "segur-bench.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nworkers = 1\nlgc_port = {lgc_port}\nfront_port = 0\n'
                      + "[ports]\n" + "".join(f"{k} = {v}\n" for k, v in ports.items())
                      + "[tls_ports]\n" + "".join(f"{k} = {v}\n" for k, v in tls_ports.items()))
    proc = subprocess.Popen(cli("--config", str(config), "up", "--only", "insi,psc", "--lgc"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        table = []
        for line in proc.stdout:
            table.append(line)
            if "Press Ctrl-C" in line:
                break
        assert any(line.startswith("lgc ") and f"http://127.0.0.1:{lgc_port}" in line for line in table), table
        health = httpx.get(f"http://127.0.0.1:{lgc_port}/sante", timeout=5).json()
        assert health["status"] == "ok"
        # Its settings are generated from the bench's: INSi over HTTPS where the bench put it, the bench CA and its
        # client certificates, PSC (an HTTPS issuer) with its redirect URI.
        settings = tomllib.loads((tmp_path / "lgc" / "lgc.toml").read_text())
        assert settings["services"]["insi"]["url"] == f"https://127.0.0.1:{tls_ports['insi']}/lps"
        assert settings["psc"]["issuer"] == f"https://127.0.0.1:{tls_ports['psc']}/auth/realms/esante-wallet"
        assert Path(settings["tls"]["ca_file"]) == (tmp_path / "data" / "pki" / "ca-chain.pem").resolve()
        assert settings["services"]["insi"]["tls"]["cert_file"].endswith("reference-lgc-insi.crt")
        clients = httpx.get(f"http://127.0.0.1:{ports['psc']}/_bench/state", timeout=5).text
        assert f"http://127.0.0.1:{lgc_port}/auth/callback" in clients
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{lgc_port}/sante", timeout=1)


def _up(config: Path, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cli("--config", str(config), "up", *args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Press Ctrl-C" in line:
            return proc, "".join(lines)
    proc.kill()
    pytest.fail("up ended without printing its table: " + proc.stderr.read())


def test_up_on_the_lan_wants_the_token_and_the_cli_still_works(bench_config: tuple[Path, int], tmp_path: Path) -> None:
    config, port = bench_config
    proc, table = _up(config, "--host", "0.0.0.0", "--only", "insi", "--no-lgc")
    try:
        token = (tmp_path / "data" / "control-token").read_text().strip()
        assert f"Control token: {token}" in table
        refused = httpx.post(f"http://127.0.0.1:{port}/_bench/faults", json=[], timeout=5)
        assert refused.status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=5).status_code == 200
        applied = subprocess.run(cli("--config", str(config), "incident", "apply", "insi-indisponible", "-s", "insi"),
                                 cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert applied.returncode == 0, applied.stderr
        faults = httpx.get(f"http://127.0.0.1:{port}/_bench/faults", timeout=5,
                           headers={"Authorization": f"Bearer {token}"}).json()
        assert [r["incident"] for r in faults["rules"]] == ["insi-indisponible"]
        cleared = subprocess.run(cli("--config", str(config), "incident", "clear", "-s", "insi"), cwd=ROOT,
                                 capture_output=True, text=True, timeout=30)
        assert cleared.returncode == 0 and "1 rule(s) removed" in cleared.stdout, cleared.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_up_serves_tls_with_the_bench_pki_and_endpoints_says_where(bench_config: tuple[Path, int],
                                                                   tmp_path: Path) -> None:
    config, port = bench_config
    proc, table = _up(config, "--only", "insi", "--no-lgc")
    try:
        listing = json.loads(subprocess.run(cli("--config", str(config), "endpoints", "--json"), cwd=ROOT,
                                            capture_output=True, text=True, timeout=30, check=True).stdout)
        insi = listing["services"]["insi"]
        assert insi["http"] == f"http://127.0.0.1:{port}/lps" and insi["https"] in table
        assert insi["client_cert"] == "optional"
        assert "qualiflps-services-ps-tlsm.ameli.fr" in insi["real_hosts"]
        issued = subprocess.run(cli("--config", str(config), "pki", "issue-client", "lgc", "--kind", "software",
                                    "--out", str(tmp_path / "certs")), cwd=ROOT, capture_output=True, text=True,
                                timeout=30)
        assert issued.returncode == 0, issued.stderr
        ctx = ssl.create_default_context(cafile=listing["ca"])
        ctx.load_cert_chain(tmp_path / "certs" / "lgc.crt", tmp_path / "certs" / "lgc.key")
        body = (ROOT / "segur_bench" / "probes" / "insi-clerico.xml").read_text().format(message_id="urn:uuid:2")
        resp = httpx.post(insi["https"], content=body.encode(), verify=ctx, timeout=10,
                          headers={"content-type": "application/soap+xml"})
        assert resp.status_code == 200
        from lxml import etree

        assert etree.fromstring(resp.content).xpath("string(//*[local-name()='CodeCR'])") == "00"
        entry = httpx.get(f"http://127.0.0.1:{port}/_bench/journal", timeout=5).json()["entries"][-1]
        assert entry["tls"]["client_cert"]["cn"] == "INSI-AUTO"
        shown = subprocess.run(cli("--config", str(config), "pki", "show", str(tmp_path / "certs" / "lgc.crt")),
                               cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0 and "accepted by the bench" in shown.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def _ours(config: Path) -> list[str]:
    """The command lines of processes started for the bench of this configuration file."""
    found = subprocess.run(["pgrep", "-af", str(config)], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if "pgrep" not in line]


@pytest.mark.timeout(120)
def test_a_sigkilled_up_leaves_nothing_running_and_the_next_up_starts(bench_config: tuple[Path, int]) -> None:
    """What a CI runner does when a job times out (issue 22): `kill -9` of `up`. Its simulators (and their worker
    processes) and its console die with it — the lifeline launcher — and the next `up` finds its ports free."""
    config, port = bench_config
    console_port = free_port()
    for attempt in (1, 2):
        proc = subprocess.Popen(cli("--config", str(config), "up", "--only", "insi,annuaire", "--console",
                                    "--console-port", str(console_port)), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            assert any("Press Ctrl-C" in line for line in proc.stdout), f"up #{attempt} printed no table"
            assert httpx.get(f"http://127.0.0.1:{port}/_bench/health").json()["service"] == "insi"
            assert httpx.get(f"http://127.0.0.1:{console_port}/sante").status_code == 200
            # launchers, simulators, their worker processes (whose command lines do not name the bench), console
            family = psutil.Process(proc.pid).children(recursive=True)
            assert len(family) >= 8 and len(_ours(config)) >= 4
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            _gone, alive = psutil.wait_procs(family, timeout=30)
            assert alive == [], [p.cmdline() for p in alive if p.is_running()]
            assert _ours(config) == []
        finally:
            if proc.poll() is None:
                proc.kill()
            for line in _ours(config):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=1)


@pytest.mark.timeout(150)
def test_up_detach_then_status_then_down(bench_config: tuple[Path, int]) -> None:
    """The `docker compose up -d` / `down` way (issue 22): `up --detach` returns once every service answers, with
    its table; `status` says what runs (exit 0 only when healthy, --json for scripts); a second `up` on the same
    data directory is refused and says why; `down` stops it all and removes the run-state file."""
    config, port = bench_config
    data = config.parent / "data"
    base = cli("--config", str(config))
    started = subprocess.run([*base, "up", "--only", "insi,annuaire", "--detach", "--wait-timeout", "60"], cwd=ROOT,
                             capture_output=True, text=True, timeout=90)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"http://127.0.0.1:{port}/lps" in started.stdout and "segur-bench down" in started.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/_bench/health").json()["service"] == "insi"
        state = json.loads((data / "bench.json").read_text())
        assert set(state["services"]) == {"insi", "annuaire"} and len(state["children"]) == 2

        shown = subprocess.run([*base, "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        facts = json.loads(shown.stdout)
        assert facts["running"] and facts["healthy"] and facts["pid"] == state["pid"]
        assert facts["services"]["insi"]["http"] == f"http://127.0.0.1:{port}"
        httpx.post(f"http://127.0.0.1:{port}/_bench/incidents/latence-3s")
        table = subprocess.run([*base, "status"], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout
        assert "latence-3s" in table and "insi" in table

        again = subprocess.run([*base, "up", "--only", "insi"], cwd=ROOT, capture_output=True, text=True,
                               timeout=30)
        assert again.returncode != 0 and f"pid {state['pid']}" in again.stderr and "segur-bench down" in again.stderr

        stopped = subprocess.run([*base, "down"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        assert not (data / "bench.json").exists()
        assert psutil.pid_exists(state["pid"]) is False or psutil.Process(state["pid"]).status() == "zombie"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=1)
        none = subprocess.run([*base, "status"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert none.returncode == 3 and "no bench serves" in none.stdout
    finally:
        subprocess.run([*base, "down", "--timeout", "5"], cwd=ROOT, capture_output=True, timeout=60)


@pytest.mark.timeout(120)
def test_a_bench_started_with_stop_with_stops_when_that_process_is_killed(bench_config: tuple[Path, int]) -> None:
    """`up --detach --stop-with PID` (the pytest plugin's own bench): a session killed with -9 takes its bench along;
    an owner that does not exist is refused before anything starts."""
    config, port = bench_config
    base = cli("--config", str(config))
    refused = subprocess.run([*base, "up", "--only", "insi", "--stop-with", str(2**22 + 7)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "no such process" in refused.stderr, refused.stderr
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        started = subprocess.run([*base, "up", "--only", "insi", "--detach", "--stop-with", str(owner.pid)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=90)
        assert started.returncode == 0, started.stdout + started.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/_bench/health").status_code == 200
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (config.parent / "data" / "bench.json").exists():
            time.sleep(0.2)
        assert not (config.parent / "data" / "bench.json").exists(), "the bench outlived the process it stops with"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=2)
    finally:
        owner.kill()
        subprocess.run([*base, "down"], cwd=ROOT, capture_output=True, timeout=60)


def test_a_crashed_up_is_recognised_by_the_next_one(bench_config: tuple[Path, int]) -> None:
    """A run-state file whose `up` was SIGKILLed: the next `up` says so and starts (its children died with it)."""
    config, port = bench_config
    base = cli("--config", str(config))
    first = subprocess.run([*base, "up", "--only", "insi", "--detach"], cwd=ROOT, capture_output=True, text=True,
                           timeout=90)
    assert first.returncode == 0, first.stdout + first.stderr
    pid = json.loads((config.parent / "data" / "bench.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_bench/health", timeout=1)
            time.sleep(0.3)
        except httpx.ConnectError:
            break
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.TimeoutException):
            time.sleep(0.3)  # the simulator went down in the middle of an answer: look again until it is gone
    proc = subprocess.Popen([*base, "up", "--only", "insi"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert any("Press Ctrl-C" in line for line in proc.stdout)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        assert f"(pid {pid}" in err and "ended without cleaning up" in err
    finally:
        if proc.poll() is None:
            proc.kill()
