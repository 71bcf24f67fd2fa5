"""A bench of simulators for the load tests: the one the reference LGC's tests start (lgc_harness), reused."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference_lgc"))

from lgc_harness import Bench, start_bench, stop


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = start_bench(tmp_path_factory.mktemp("load-bench"))
    try:
        yield b
    finally:
        stop(b.proc)
