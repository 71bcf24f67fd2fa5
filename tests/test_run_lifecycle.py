"""`segur-bench run` killed mid-scenario (a CI job's timeout): nothing of it survives — simulators (lifeline launcher),
the network layer (mitmdump), the scenario suite's pytest, the scenario's reference LGC and its browser, each of
which dies with the process that started it (segur_bench/lifeline.py `dies_with_this_process`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from segur_bench.pytest_plugin.self_start import free_ports
from simulators import registry

ROOT = Path(__file__).resolve().parents[1]


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdlines(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(" ".join(p.cmdline())[:160])
        except psutil.Error:
            continue
    return out


@pytest.mark.timeout(240)
def test_a_sigkilled_run_leaves_no_simulator_proxy_scenario_lgc_or_browser(tmp_path: Path) -> None:
    names = list(registry.SERVICES)
    ports = iter(free_ports(2 * len(names)))
    config = tmp_path / "segur-bench.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nfront_port = 0\n[ports]\n'
                      + "".join(f"{n} = {next(ports)}\n" for n in names)
                      + "[tls_ports]\n" + "".join(f"{n} = {next(ports)}\n" for n in names))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        # a session of its own: only `run` is killed, as when a runner kills the one process it started
        proc = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(config), "run",
                                 "LGC.DMP/UX.10.01", "--out", str(tmp_path / "out")], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            family = _family(psutil.Process(proc.pid))
            lines = _cmdlines(family)
            if any("reference_lgc" in c for c in lines) and any("chrom" in c for c in lines) \
                    and any("mitmdump" in c for c in lines):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the scenario did not get to its LGC and browser: " + log.read_text(errors="replace")[-3000:])
        time.sleep(2)  # mid-scenario
        family = _family(psutil.Process(proc.pid))
        assert len(family) >= 10, _cmdlines(family)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(family, timeout=15)
        assert alive == [], _cmdlines(alive)
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in family:
            try:
                p.kill()
            except psutil.Error:
                continue
