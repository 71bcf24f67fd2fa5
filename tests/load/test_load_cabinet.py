"""`segur-bench load cabinet`: Locust headless against simulators started here, an incident mid-test, the
distributed mode (master + 2 workers on loopback), a vendor's target, and the errors a user can make."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lgc_harness import ROOT, Bench, free_port

from segur_bench.load.people import practitioner
from segur_bench.load.plugin import TargetError, load_target_class
from segur_bench.load.runner import LoadResult, read_result
from segur_bench.load.target import CallFailed, LoadTarget

# What every practitioner's first consultation does (TD0.3 only when the DMP has no authorisation yet).
EVERY_OPERATION = {"PSC CIBA login", "INSi rechercherInsAvecTraitsIdentite", "DMP TD0.2 test d'existence",
                   "DMP ITI-18 recherche de documents", "DMP ITI-41 alimentation", "ON creerEPrescription",
                   "MSSanté SMTP envoi"}


def load(config: Path, out: Path, *args: str, timeout: float = 60,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; think times divided by 10 so that a few seconds hold several consultations."""
    cmd = [sys.executable, "-m", "segur_bench", "--config", str(config), "load", "cabinet", "--out", str(out),
           "--pace", "10", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or dict(os.environ))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the command stops its Locust processes and clears its incidents
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"segur-bench load did not end within {timeout} s:\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not locust_processes(), "a Locust process outlived the command"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def locust_processes() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "-m locust" in cmdline and "segur_bench/load/cabinet.py" in cmdline:
                found.append(cmdline)
    return found


def config_of(bench: Bench) -> Path:
    return bench.pki_dir.parent.parent / "segur-bench.toml"  # start_bench writes it beside the simulators' state


def test_the_cabinet_profile_calls_every_service_and_none_fails(bench: Bench, tmp_path: Path) -> None:
    run = load(config_of(bench), tmp_path, "--users", "4", "--spawn-rate", "4", "--duration", "8")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "load started: 4 practitioner(s)" in run.stdout
    result = read_result(tmp_path)
    ops = result.by_name()
    assert set(ops) >= EVERY_OPERATION, sorted(ops)
    for name in EVERY_OPERATION:
        assert ops[name].requests >= 1 and ops[name].failures == 0, ops[name]
    # every practitioner identifies, then opens the DMP, in each consultation
    assert ops["INSi rechercherInsAvecTraitsIdentite"].requests >= 4
    assert ops["DMP TD0.2 test d'existence"].requests >= 4
    assert result.total is not None and result.total.failures == 0 and result.total.rps > 0
    assert (tmp_path / "report.html").stat().st_size > 10_000
    # the simulators saw them: the wire exchanges are journaled
    assert bench.journal("on", "creerEPrescription"), "no prescription reached the ON simulator"


def test_incidents_mid_test_slow_the_dmp_and_fail_insi_then_are_cleared(bench: Bench, tmp_path: Path) -> None:
    run = load(config_of(bench), tmp_path, "--users", "4", "--spawn-rate", "4", "--duration", "11",
               "--incident", "dmp-lent@3", "--incident", "insi-indisponible@3")
    assert run.returncode == 3, run.stdout + run.stderr  # completed, with failed requests
    assert "incident dmp-lent applied to dmp" in run.stdout
    assert "incident insi-indisponible applied to insi" in run.stdout
    assert "incident dmp-lent cleared" in run.stdout
    ops = read_result(tmp_path).by_name()
    td02 = ops["DMP TD0.2 test d'existence"]
    # before the incident a TD0.2 takes milliseconds; under "DMP lent" (≈ 4 s, lognormal) seconds
    assert td02.min_ms < 500 and td02.max_ms > 1500, td02
    insi = ops["INSi rechercherInsAvecTraitsIdentite"]
    assert 0 < insi.failures < insi.requests, insi  # answered before the incident, refused after
    assert insi.max_ms < 1500, insi  # INSi itself was not slowed
    assert "temporairement indisponible" in (tmp_path / "stats_failures.csv").read_text(encoding="utf-8")
    for service in ("dmp", "insi"):
        assert bench.control(service, "GET", "/faults")["rules"] == [], f"{service}: incident left behind"


def test_distributed_mode_master_and_two_workers_on_loopback(bench: Bench, tmp_path: Path) -> None:
    run = load(config_of(bench), tmp_path, "--users", "4", "--spawn-rate", "4", "--duration", "7", "--workers", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    result: LoadResult = read_result(tmp_path)
    assert result.workers_reported == 2
    assert "2 worker(s) reported to the master" in run.stdout
    # both workers ran practitioners (2 each) and the master counted their requests
    for n in (1, 2):
        log = (tmp_path / f"locust-worker-{n}.log").read_text(encoding="utf-8")
        assert log.count("starts") == 2, log
    ops = result.by_name()
    assert set(ops) >= EVERY_OPERATION, sorted(ops)
    assert result.total is not None and result.total.requests >= 4 * 6 and result.total.failures == 0


TARGET = '''
import time
from segur_bench.load.target import LoadTarget

class FakeLgc(LoadTarget):
    def _api(self, what):
        with self.call("LGC", what):
            time.sleep(0.01)
            if what == "envoi MSSanté":
                raise RuntimeError("boîte aux lettres pleine")

    def search_identity(self, patient): self._api("recherche INSi")
    def consult_dmp(self, patient): self._api("consultation DMP")
    def feed_dmp(self, patient): self._api("alimentation DMP")
    def prescribe(self, patient): self._api("ordonnance")
    def send_message(self, patient): self._api("envoi MSSanté")
'''


def test_a_vendor_target_gets_the_same_profile(bench: Bench, tmp_path: Path) -> None:
    (tmp_path / "fake_lgc_load.py").write_text(TARGET, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = load(config_of(bench), tmp_path / "out", "--users", "2", "--spawn-rate", "2", "--duration", "4",
               "--target", "fake_lgc_load:FakeLgc", env=env)
    assert run.returncode == 3, run.stdout + run.stderr
    ops = read_result(tmp_path / "out").by_name()
    assert {"LGC recherche INSi", "LGC consultation DMP", "LGC ordonnance", "LGC alimentation DMP",
            "LGC envoi MSSanté"} == set(ops)
    assert ops["LGC envoi MSSanté"].failures == ops["LGC envoi MSSanté"].requests >= 2
    assert ops["LGC recherche INSi"].failures == 0 and ops["LGC recherche INSi"].median_ms >= 10
    assert not any(n.startswith(("INSi", "DMP")) for n in ops)  # the simulators were not called directly


def test_target_loading_errors_say_what_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TargetError, match="module:Class"):
        load_target_class("not-a-target")
    with pytest.raises(TargetError, match="PYTHONPATH"):
        load_target_class("no_such_module_xyz:Target")
    (tmp_path / "half_target.py").write_text(
        "from segur_bench.load.target import LoadTarget\n"
        "class Half(LoadTarget):\n    def search_identity(self, patient): pass\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TargetError, match="consult_dmp, feed_dmp, prescribe, send_message"):
        load_target_class("half_target:Half")
    assert load_target_class(None).__name__ == "SimulatorTarget"


def test_clear_errors_without_starting_locust(tmp_path: Path) -> None:
    config = tmp_path / "segur-bench.toml"
    port = free_port()  # nothing listens there
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[ports]\n' + "".join(
        f"{s} = {port}\n" for s in ("insi", "dmp", "on", "psc", "mss")))
    cases = [
        (["load", "pharmacie"], "unknown load profile 'pharmacie'; known: cabinet"),
        (["load", "--incident", "dmp-lent"], "NAME@SECONDS expected"),
        (["load", "--incident", "panne-totale@5"], "panne-totale"),
        (["load", "--incident", "dmp-lent@90", "--duration", "60"], "not within the 60-s run"),
        (["load", "--duration", "cinq"], "duration 'cinq'"),
        (["load"], "no bench answers"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, "-m", "segur_bench", "--config", str(config), *args,
                                 "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not locust_processes()


class Killed(BaseException):
    """Stands for gevent's GreenletExit, which Locust throws into a user it stops."""


class Quiet(LoadTarget):
    def search_identity(self, patient: object) -> None:
        with self.call("SMTP", "envoi"):
            try:
                raise Killed()
            except Killed:
                # what smtplib's `with` does on the way out: QUIT fails, and that error replaces the kill
                raise OSError("QUIT on a dead connection") from None


def test_a_practitioner_stopped_mid_call_is_not_a_failure_and_stays_stopped() -> None:
    reports: list[tuple] = []
    target = Quiet(practitioner(0), lambda *args: reports.append(args))
    with pytest.raises(Killed):
        target.search_identity(None)
    assert reports == []
    with pytest.raises(CallFailed), target.call("INSi", "recherche"):
        raise ValueError("siram_40")
    assert [(r[1], type(r[4])) for r in reports] == [("INSi recherche", ValueError)]
