from __future__ import annotations

from collections.abc import Iterator

import pytest
from lgc_harness import Bench, Lgc, start_bench, start_lgc, stop


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    b = start_bench(tmp_path_factory.mktemp("bench"))
    try:
        yield b
    finally:
        stop(b.proc)


@pytest.fixture
def clean_bench(bench: Bench) -> Iterator[Bench]:
    bench.clear()
    yield bench
    bench.clear()


@pytest.fixture(scope="module")
def lgc(bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lgc]:
    bench.reset()  # a fresh LGC meets fresh simulators, whatever module ran before
    instance = start_lgc(bench, tmp_path_factory.mktemp("lgc"), timeouts={"insi": 8, "apcv": 8, "dmp": 8, "on": 4})
    try:
        yield instance
    finally:
        stop(instance.proc)


@pytest.fixture(scope="module")
def context(browser: object, lgc: Lgc) -> Iterator[object]:
    """One logged-in browser context per module (the first login links the demo account)."""
    from lgc_harness import login

    ctx = browser.new_context(locale="fr-FR", viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    login(page, lgc.url)
    page.close()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: object, clean_bench: Bench) -> Iterator[object]:
    p = context.new_page()
    p.set_default_timeout(15_000)
    yield p
    p.close()


