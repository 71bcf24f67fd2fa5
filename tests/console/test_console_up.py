"""`segur-bench up` serves the console on its own port, prints it in its table (row "console"), and stops it."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from lgc_harness import ROOT, free_port


def test_up_starts_the_console_prints_its_row_and_stops_it(tmp_path) -> None:
    ports = {"insi": free_port(), "psc": free_port()}
    console_port = free_port()
    config = tmp_path / "segur-bench.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\ntls = false\nfront_port = 0\nworkers = 1\n'
                      f"console_port = {console_port}\n[ports]\n" + "".join(f"{k} = {v}\n" for k, v in ports.items()))
    proc = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(config), "up", "--only", "insi,psc",
                             "--console"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        table = []
        for line in proc.stdout:
            table.append(line)
            if "Press Ctrl-C" in line:
                break
        else:
            pytest.fail("up ended without printing its table: " + proc.stderr.read())
        url = f"http://127.0.0.1:{console_port}"
        row = next(line for line in table if line.startswith("console "))
        assert url in row
        services = httpx.get(url + "/api/services", timeout=10).json()["services"]
        assert [(s["name"], s["up"]) for s in services] == [("insi", True), ("psc", True)]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/sante", timeout=1)
