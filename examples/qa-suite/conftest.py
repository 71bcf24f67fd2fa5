"""Nothing to set up: the segur-bench plugin (installed with segur-bench) provides the `segur_bench` fixture.

Run against a bench already up (a CI job's `segur-bench up --detach`, a compose stack):
    SEGUR_BENCH_URL=http://127.0.0.1:8090 pytest examples/qa-suite
or let the session start its own bench on free ports:
    pytest examples/qa-suite
"""

import pytest


@pytest.fixture
def annuaire(segur_bench):
    """Your LGC's directory setting, pointed at the bench (segur_bench.url gives the base URL clients use)."""
    return segur_bench.url("annuaire")
