"""A bench of every simulator (the reference LGC tests' harness: `segur-bench up` as a child process) and the
console served over it by `segur-bench console`, as a trainer starts it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference_lgc"))
# The console package, also before `pip install -e .` has learnt of it (`python -m pytest` has it via the cwd)
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))

from lgc_harness import ROOT, Bench, free_port, start_bench, stop, wait_http


@dataclass
class ConsoleProcess:
    url: str
    proc: subprocess.Popen
    log: Path


@pytest.fixture(scope="session")
def console_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bench, Path]]:
    tmp = tmp_path_factory.mktemp("console-bench")
    bench = start_bench(tmp)
    try:
        yield bench, tmp / "segur-bench.toml"
    finally:
        stop(bench.proc)


def start_console(config: Path, log: Path, *extra: str) -> ConsoleProcess:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "segur_bench", "--config", str(config), "console",
                             "--port", str(port), *extra], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/sante", proc, "console", timeout=30)
    except RuntimeError:
        stop(proc)
        raise RuntimeError(log.read_text()[-3000:]) from None
    return ConsoleProcess(url, proc, log)


@pytest.fixture(scope="session")
def console(console_bench: tuple[Bench, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    _, config = console_bench
    instance = start_console(config, tmp_path_factory.mktemp("console") / "console.log")
    try:
        yield instance
    finally:
        stop(instance.proc)


@pytest.fixture
def bench(console_bench: tuple[Bench, Path]) -> Iterator[Bench]:
    b = console_bench[0]
    b.clear()
    yield b
    b.clear()


@pytest.fixture
def page(browser: object, console: ConsoleProcess) -> Iterator[object]:
    ctx = browser.new_context(locale="fr-FR", viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    p = ctx.new_page()
    p.set_default_timeout(10_000)
    p.goto(console.url + "/")
    p.wait_for_selector("body[data-pret=oui]")
    yield p
    ctx.close()
