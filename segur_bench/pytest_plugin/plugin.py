"""The pytest plugin shipped with segur-bench (entry point `pytest11`, name `segur_bench`): a QA team's own suite
uses the bench in a few lines (docs/pytest-plugin.md, examples/qa-suite/).

- `segur_bench` (session fixture): the bench — attached by `--segur-bench-url` / SEGUR_BENCH_URL, or started on free
  ports for the session and stopped at its end. `url()`, `incident()`, `fault()`, `journal()`, `reset()`.
- Each test is a run of its own on the bench: what it exchanges is attributed to it (each simulator's current run,
  the client certificates given, or the X-Bench-Run header — simulators/core/run_attribution.py), its incidents and
  fault rules see only its exchanges, and a failing test's report carries them as a HAR (a path in the pytest and
  JUnit reports, an attachment of its Allure result).
- `@pytest.mark.rem("LGC.DMP/UX.10.01", …)` (or the `@exigence=ID` tag of a pytest-bdd scenario) names requirement
  ids of the DSR; an id the catalogue does not know stops the collection. They become Allure labels, and the
  passing tests' exchanges become the session's Convergence export.

Inert until a test asks for the bench: the plugin loads in every pytest session of an environment where
segur-bench is installed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .bench import BenchError, SegurBench, load_description
from .evidence import SessionEvidence, write_exchanges

URL_ENV = "SEGUR_BENCH_URL"
TOKEN_ENV = "SEGUR_BENCH_CONTROL_TOKEN"
REM_MARK = "rem"
BDD_TAG_PREFIX = "exigence="  # the tag the bench's own features use (scenarios/requirements.py)
STATE_KEY = pytest.StashKey["_PluginState"]()
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


class _PluginState:
    """The session's bench (once some test asked for it), the test being run, what is left behind."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.bench: SegurBench | None = None
        self.self_started: Path | None = None  # the config file of the bench the plugin started
        self.session_id = secrets.token_hex(3)
        self.counter = 0
        self.current: tuple[pytest.Item, str] | None = None  # (test, its run id) while a test runs
        self.begun = False  # the current test's run is set up on the bench
        results = config.getoption("segur_bench_results")
        self.evidence = SessionEvidence(Path(results).resolve())
        self.certs = [Path(p).read_text(encoding="ascii") for p in config.getoption("segur_bench_client_cert")]
        self.written: list[Path] = []  # what the session left in the results directory

    def begin(self) -> None:
        if self.bench is None or self.current is None or self.begun:
            return
        item, run = self.current
        self.bench.begin_run(run, item.nodeid, self.certs)
        self.begun = True


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("segur-bench", "segur-bench (simulators of the national e-health services)")
    group.addoption("--segur-bench-url", default=os.environ.get(URL_ENV),
                    help="The bench to attach to: its console's URL (e.g. http://127.0.0.1:8090) or a file written "
                         f"by `segur-bench endpoints --json` (env {URL_ENV}). Without it, the session starts a bench "
                         "of its own on free ports and stops it at the end.")
    group.addoption("--segur-bench-token", default=os.environ.get(TOKEN_ENV),
                    help=f"The bench's control token, when it listens beyond loopback (env {TOKEN_ENV}).")
    group.addoption("--segur-bench-results", default="segur-bench-results", metavar="DIR",
                    help="Where the HARs of failing tests, the exchanges of passing tests with requirement ids, the "
                         "session report and the Convergence export go (default: %(default)s).")
    group.addoption("--segur-bench-shared", action="store_true", default=False,
                    help="Other suites use this bench at the same time: never set its current run; attribute a "
                         "test's exchanges by --segur-bench-client-cert or the X-Bench-Run header only.")
    group.addoption("--segur-bench-client-cert", action="append", default=[], metavar="PEM",
                    help="A client certificate of the LGC under test (PEM file; repeatable): bound to each test's "
                         "run, so its exchanges are the test's even on a shared bench.")
    group.addoption("--segur-bench-lgc", action="store_true", default=False,
                    help="A self-started bench also starts the reference LGC (its URL: "
                         "segur_bench.description['reference_lgc']).")
    group.addoption("--segur-bench-wait-timeout", type=float, default=120.0, metavar="SECONDS",
                    help="A self-started bench: how long to wait for every service to answer (default: %(default)s).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{REM_MARK}(*ids): the DSR requirement ids this test proves (segur-bench)")
    # Allure's label marker, read by allure-pytest and allure-pytest-bdd; registered here too so that --strict-markers
    # accepts it when no Allure plugin is active.
    config.addinivalue_line("markers", "allure_label: allure label marker")
    config.stash[STATE_KEY] = _PluginState(config)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before pytest-bdd's own, which makes any tag a marker
def pytest_bdd_apply_tag(tag: str, function: Any) -> bool | None:
    """`@exigence=ID` on a pytest-bdd scenario is the `rem` marker (the tag the bench's own features carry)."""
    if tag.startswith(BDD_TAG_PREFIX):
        getattr(pytest.mark, REM_MARK)(tag[len(BDD_TAG_PREFIX):])(function)
        return True
    return None


def requirement_ids(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers(name=REM_MARK):
        ids.extend(str(a) for a in mark.args)
    return list(dict.fromkeys(ids))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [(item, requirement_ids(item)) for item in items]
    marked = [(item, ids) for item, ids in marked if ids or item.get_closest_marker(REM_MARK)]
    if not marked:
        return
    from scenarios.requirements import catalogue, unknown_ids

    errors = []
    for item, ids in marked:
        if not ids:
            errors.append(f"{item.nodeid}: @pytest.mark.rem() names no requirement id")
        elif bad := unknown_ids(ids):
            errors.append(f"{item.nodeid}: {', '.join(bad)} n'est pas un identifiant d'exigence du DSR "
                          "(`segur-bench requirements` les liste)")
    if errors:
        raise pytest.UsageError("segur-bench: unknown requirement id(s) in @pytest.mark.rem:\n  " + "\n  ".join(errors))
    known = catalogue()
    for item, ids in marked:
        item.add_marker(pytest.mark.allure_label(*ids, label_type="exigence"))
        item.add_marker(pytest.mark.allure_label(*ids, label_type="tag"))
        for rid in ids:
            item.user_properties.append(("exigence", f"{rid} — {known[rid].title}"))


@pytest.fixture(scope="session")
def segur_bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegurBench]:
    """The bench: attached (--segur-bench-url / SEGUR_BENCH_URL) or started for this session."""
    state: _PluginState = request.config.stash[STATE_KEY]
    opt = request.config.getoption
    token = opt("segur_bench_token")
    try:
        if opt("segur_bench_url"):
            bench = SegurBench(load_description(opt("segur_bench_url"), token), token=token,
                               source=opt("segur_bench_url"))
        else:
            from . import self_start

            workdir = Path(tempfile.mkdtemp(prefix="segur-bench-", dir=tmp_path_factory.getbasetemp()))
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"segur-bench: starting a bench for this session in {workdir} …")
            state.self_started, description = self_start.start(
                workdir, lgc=opt("segur_bench_lgc"), wait_timeout=opt("segur_bench_wait_timeout"))
            bench = SegurBench(description, source="self-started")
    except BenchError as exc:
        pytest.fail(f"segur-bench: {exc}", pytrace=False)
    bench.shared = opt("segur_bench_shared")
    state.bench = bench
    state.begin()  # asked for in the middle of a test (a pytest-bdd step): that test's run starts now
    try:
        yield bench
    finally:
        state.bench = None
        bench.close()
        if state.self_started is not None:
            from . import self_start

            self_start.stop(state.self_started)


@pytest.fixture(autouse=True)
def _segur_bench_test_run(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test its own run on the bench, begun as soon as the bench exists (or when the test first asks for it),
    ended after the test, its leftovers (fault rules, bound certificates) removed."""
    state: _PluginState = request.config.stash[STATE_KEY]
    item = request.node
    if state.bench is None and "segur_bench" not in request.fixturenames and not _may_ask_later(request):
        yield
        return
    state.counter += 1
    run = f"pytest-{state.session_id}-{state.counter}"
    state.current, state.begun = (item, run), False
    if "segur_bench" in request.fixturenames:
        request.getfixturevalue("segur_bench")
    state.begin()
    try:
        yield
    finally:
        bench, begun = state.bench, state.begun
        state.current, state.begun = None, False
        if bench is not None and begun:
            _keep_passing_evidence(state, bench, item, run)
            bench.end_run(state.certs)


def _may_ask_later(request: pytest.FixtureRequest) -> bool:
    """A pytest-bdd scenario (its test function takes pytest-bdd's example row) asks for fixtures from its steps,
    unseen at collection."""
    return "_pytest_bdd_example" in request.fixturenames


def _keep_passing_evidence(state: _PluginState, bench: SegurBench, item: pytest.Item, run: str) -> None:
    ids = requirement_ids(item)
    rec = state.evidence.record(item.nodeid, run, ids)
    report = item.stash.get(CALL_REPORT, None)
    rec.outcome = report.outcome if report is not None else "error"
    if rec.outcome == "passed" and ids and rec.har is None:
        with contextlib.suppress(BenchError, OSError):
            exchanges = bench.exchanges(run)
            har, jsonl = write_exchanges(state.evidence.directory / "preuves", item.nodeid, bench.har(run), exchanges)
            rec.har, rec.jsonl = str(har), str(jsonl) if jsonl else None
            rec.services = sorted({e["service"] for e in exchanges})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        item.stash[CALL_REPORT] = report
    state: _PluginState | None = item.config.stash.get(STATE_KEY, None)
    if state is None or state.bench is None or state.current is None or not state.begun:
        return
    if report.when not in ("setup", "call") or not report.failed:
        return
    _, run = state.current
    try:
        exchanges = state.bench.exchanges(run)
        har, jsonl = write_exchanges(state.evidence.directory / "echecs", item.nodeid, state.bench.har(run),
                                     exchanges)
    except (BenchError, OSError) as exc:
        report.sections.append(("segur-bench", f"the exchanges of this test could not be kept: {exc}"))
        return
    rec = state.evidence.record(item.nodeid, run, requirement_ids(item))
    rec.outcome, rec.har, rec.jsonl = "failed", str(har), str(jsonl) if jsonl else None
    rec.services = sorted({e["service"] for e in exchanges})
    lines = [f"run {run}: {len(exchanges)} exchange(s) with the bench"
             + (f" ({', '.join(rec.services)})" if rec.services else ""), f"HAR: {har}"]
    if jsonl:
        lines.append(f"all exchanges, SMTP/IMAP included (JSON lines): {jsonl}")
    report.sections.append(("segur-bench", "\n".join(lines)))
    item.user_properties.append(("segur_bench_har", str(har)))
    item.user_properties.append(("segur_bench_run", run))
    _attach_to_allure(har, jsonl)


def _attach_to_allure(har: Path, jsonl: Path | None) -> None:
    """Attach to the test's Allure result when an Allure plugin is active (a no-op otherwise)."""
    try:
        import allure
    except ImportError:
        return
    with contextlib.suppress(Exception):  # an Allure hiccup must not turn a test report into an internal error
        allure.attach.file(str(har), name="segur-bench: échanges du test (HAR)", extension="har",
                           attachment_type="application/json")
        if jsonl:
            allure.attach.file(str(jsonl), name="segur-bench: tous les échanges (JSON lines)", extension="jsonl",
                               attachment_type="application/x-ndjson")


def pytest_sessionfinish(session: pytest.Session) -> None:
    state: _PluginState | None = session.config.stash.get(STATE_KEY, None)
    if state is None or not state.evidence.tests:
        return
    state.written = state.evidence.write()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state: _PluginState | None = config.stash.get(STATE_KEY, None)
    if state is None or not state.written:
        return
    terminalreporter.section("segur-bench")
    for path in state.written:
        terminalreporter.write_line(str(path))
