"""Scenario fixtures: one run per scenario (fresh reference LGC, simulators reset and stamped with the run id,
Chromium page, video), a screenshot per step, journals and HAR collected, the proof bundle built at the end."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from network_proxy.layer import edit_conditions
from proofs.file_names import file_slug
from segur_bench.browser import CHROMIUM_FLAGS, chromium_path, trusting_env

from .driver_guided import AutomatedOperator, GuidedDriver
from .driver_playwright import ReferenceLgcDriver
from .driver_plugin import DriverError, build_driver, is_plugin
from .lgc_process import LgcProcess
from .operator_channel import OperatorChannel
from .requirements import CatalogueError, check_ids, feature_ids
from .runtime import BenchEnv, RunRecorder, Sims
from .screen_share import ScreenShare
from .shared_screen_proof import SharedScreenProof

# The automated operator shares the reference LGC's tab: every page of the reference LGC has this in its title
# (and the operator page has not), so Chromium picks that tab without a dialog. ASCII: Chromium did not match a
# title given with its em dash.
LGC_TAB_TITLE = "segur-bench"

REQ_TAG = re.compile(r"^exigence=(.+)$")


def _in_file_order(filename: str, ids: list[str]) -> list[str]:
    """pytest-bdd gives tags as a set: the ids in the order the feature file writes them (the first is primary)."""
    try:
        order = {rid: n for n, rid in enumerate(feature_ids(Path(filename)))}
    except OSError:
        return ids
    return sorted(ids, key=lambda i: (order.get(i, len(order)), i))


def pytest_bdd_apply_tag(tag: str, function: Any) -> bool | None:
    """Requirement tags (exigence=LGC.DMP/UX.10.01) are not pytest marks (slashes, dots): kept as metadata. Each
    must name an id of the requirement catalogue: an unknown one fails the collection (a Convergence deposit
    would refuse it)."""
    match = REQ_TAG.match(tag)
    if match is None:
        return None
    try:
        check_ids([match.group(1)], f"étiquette @{tag}")
    except CatalogueError as exc:
        raise pytest.UsageError(str(exc)) from None
    return True


@pytest.fixture(scope="session")
def env() -> BenchEnv:
    return BenchEnv.load()


@pytest.fixture(scope="session")
def sims(env: BenchEnv) -> Sims:
    return Sims(env.sims, env.control_token, shared=env.shared_bench, client_certs=env.client_certs)


@pytest.fixture(scope="session")
def chromium(env: BenchEnv) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        pytest.fail("Chromium is missing: ./scripts/setup.sh installs the Debian package 'chromium'")
    launch_env = None
    if env.ca_file:  # Pro Santé Connect's pages are HTTPS: the browser trusts the bench CA, as a tester installs it
        launch_env = trusting_env(env.ca_file, Path(env.out_dir) / "browser-home")
        if launch_env is None:
            pytest.fail("certutil is missing: ./scripts/setup.sh installs the Debian package 'libnss3-tools'")
    flags = list(CHROMIUM_FLAGS)
    if env.driver == "guided" and env.operator == "auto":
        flags.append(f"--auto-select-tab-capture-source-by-title={LGC_TAB_TITLE}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=flags, env=launch_env)
        yield browser
        browser.close()


@dataclass
class Run:
    """Everything a step needs: the run's recorder, the simulators, the LGC driver and the run's facts."""

    id: str
    requirement: str
    rec: RunRecorder
    sims: Sims
    env: BenchEnv
    page: Any
    driver: Any
    lgc_url: str
    video: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    def set_network(self, latency_ms: int) -> str:
        """The REM's throttled network: through the network proxy when present, else on every simulator."""
        label = f"latence {latency_ms / 1000:g} s" if latency_ms else "normal"
        net = self.env.network
        if net.get("mode") == "proxy" and net.get("control_file"):
            _proxy_latency(Path(net["control_file"]), latency_ms)
        elif latency_ms:
            for service in self.sims.urls:
                self.sims.faults(service, {"operation": "*", "effect": {"type": "latency", "ms": latency_ms}})
        self.rec.meta["network_condition"] = f"Réseau : {label}"
        if self.video is not None:
            self.video.condition(label)
        return label


def _proxy_latency(control: Path, latency_ms: int) -> None:
    """Every service's latency, on the layer's control file: the layer object lives in the `segur-bench run`
    process."""
    edit_conditions(control, latency_ms=latency_ms)


def _har_window(src: Path, dst: Path, started: str, ended: str) -> None:
    """The run's part of the network layer's HAR (it records the whole session)."""
    try:
        har = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    entries = har.get("log", {}).get("entries", [])
    har["log"]["entries"] = [e for e in entries if _same_instant_window(e.get("startedDateTime", ""), started, ended)]
    if "_connections" in har["log"]:  # SMTP/IMAP through the proxy (latency per connection)
        har["log"]["_connections"] = [c for c in har["log"]["_connections"]
                                      if _same_instant_window(c.get("startedDateTime", ""), started, ended)]
    dst.write_text(json.dumps(har, ensure_ascii=False, indent=1), encoding="utf-8")


def _same_instant_window(stamp: str, started: str, ended: str) -> bool:
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return datetime.fromisoformat(started) <= t <= datetime.fromisoformat(ended)
    except ValueError:
        return False


def _requirement(request: pytest.FixtureRequest) -> tuple[list[str], str, str]:
    """The requirement ids a scenario proves (its own tags, then its feature's, each in file order: the first
    names the run and its bundle, so scenarios of one feature that prove different ids get their own), its title
    and feature file."""
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    scenario = scenario_wrapper_template_registry.get(request.function)

    def ids(tags: Any) -> list[str]:
        found = sorted(m.group(1) for t in tags or () if (m := REQ_TAG.match(t)))
        return _in_file_order(scenario.feature.filename, found) if scenario else found

    own = ids(getattr(scenario, "tags", ()) if scenario else ())
    shared = ids(getattr(scenario.feature, "tags", ()) if scenario else ())
    req = list(dict.fromkeys(own + shared)) or ["SANS-EXIGENCE"]
    title = scenario.name if scenario else request.node.name
    example = getattr(request.node, "callspec", None)
    if example is not None and "_pytest_bdd_example" in example.params:
        title = re.sub(r"<(\w+)>", lambda m: example.params["_pytest_bdd_example"].get(m.group(1), m.group(0)), title)
    return req, title, scenario.feature.rel_filename if scenario else ""


@pytest.fixture(autouse=True)
def run(request: pytest.FixtureRequest, env: BenchEnv, sims: Sims, chromium: Any) -> Iterator[Run]:
    requirements, title, feature = _requirement(request)
    requirement = requirements[0]  # the primary id: names the run and its bundle
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"{re.sub(r'[^A-Za-z0-9.]+', '-', requirement)}-{stamp}-{uuid.uuid4().hex[:6]}"
    run_dir = Path(env.out_dir) / "runs" / run_id
    rec = RunRecorder(run_dir, {"requirement_id": requirement, "requirement_ids": requirements, "scenario": title,
                                "feature": feature,
                                "personas": [], "bench_version": env.bench_version, "driver": env.driver,
                                "network_condition": "Réseau : normal", "run_id": run_id})
    sims.reset_all(run_id)
    sims.clear_faults()
    if env.network.get("control_file"):
        _proxy_latency(Path(env.network["control_file"]), 0)
    lgc: LgcProcess | None = None
    if env.against == "reference":
        lgc = LgcProcess(env.lgc_settings, run_dir.parent.parent / "lgc-data" / run_id, env.sims["psc"],
                         env.control_token)
        lgc_url = lgc.url
        rec.meta["lgc"] = {"name": "LGC de référence segur-bench", "version": lgc.version(), "url": lgc_url}
    else:
        lgc_url = env.against
        rec.meta["lgc"] = {"name": "LGC de l'éditeur", "version": "", "url": lgc_url}
    context = chromium.new_context(locale="fr-FR", viewport={"width": 1366, "height": 900})
    channel = None
    try:  # a failure before the scenario starts (no share, a driver that cannot load) leaves nothing running
        page = context.new_page()
        page.set_default_timeout(60_000)
        video: Any = None
        if env.driver == "guided":
            # The operator opens the channel's page in their own browser, shares the LGC's screen and confirms each
            # step there; the video and the step pictures come from that shared screen. In CI an automated operator
            # does the same in this browser: the LGC in one tab, the operator page sharing that tab in another.
            share = ScreenShare(run_dir / ".partage-ecran")
            channel = _operator_channel(env, run_id, share)
            driver: Any = GuidedDriver(channel, sims, rec)
            video = SharedScreenProof(share, rec)  # its clock starts with the run, before the operator shares
            rec.meta["operator_page"] = channel.url.replace(channel.token, "…")
            if env.operator == "auto":
                lgc_page = context.new_page()
                lgc_page.set_default_timeout(60_000)
                lgc_page.goto(lgc_url)
                page.goto(channel.url)
                operator = AutomatedOperator(channel, ReferenceLgcDriver(lgc_page, lgc_url, sims, rec), page)
                operator.share_screen()
            else:
                print(f"\n[opérateur] page des consignes : {channel.url} — ouvrez-la dans votre navigateur et "
                      "partagez l'écran de votre LGC", file=sys.__stderr__, flush=True)
        elif is_plugin(env.driver):  # a driver written by the user (segur-bench run --driver module:Class)
            try:
                driver = build_driver(env.driver, page=page, lgc_url=lgc_url, sims=sims, rec=rec)
            except DriverError as exc:
                pytest.fail(str(exc), pytrace=False)
            rec.meta["ecran"] = {"source": "navigateur du banc", "qui": f"navigateur Chromium du banc, piloté par "
                                 f"{env.driver}"}
        else:
            driver = ReferenceLgcDriver(page, lgc_url, sims, rec)
            rec.meta["ecran"] = {"source": "navigateur du banc", "qui": "navigateur Chromium du banc, LGC de référence "
                                 "piloté par Playwright"}
        if video is None:
            video = _start_video(page, run_dir)
    except BaseException:
        if channel is not None:
            channel.close()
        context.close()
        if lgc is not None:
            lgc.stop()
        sims.end_run()
        raise
    r = Run(id=run_id, requirement=requirement, rec=rec, sims=sims, env=env, page=page, driver=driver,
            lgc_url=lgc_url, video=video)
    request.node.segur_run = r
    outcome = "failed"
    try:
        yield r
        outcome = "passed" if all(v["ok"] for v in rec.verdicts) and all(s.status == "passed" for s in rec.steps) \
            else "failed"
    finally:
        if getattr(request.node, "segur_failed", False):
            outcome = "failed"
        bundle = _finish(r, lgc, context, outcome, channel)
        if bundle is not None:
            _report(request, bundle)


def _operator_channel(env: BenchEnv, run_id: str, share: ScreenShare) -> OperatorChannel:
    try:
        return OperatorChannel.for_run(env, run_id, share)
    except OSError as exc:
        pytest.fail(f"page de l'opérateur impossible sur {env.operator_listen or 'la boucle locale'} : {exc}",
                    pytrace=False)


def _start_video(page: Any, run_dir: Path) -> Any:
    try:
        from proofs_video.recorder import ScreenRecorder
    except ImportError:
        return None
    try:
        rec = ScreenRecorder(page, run_dir / "video" / "run.mp4")
        rec.start()
        return rec
    except Exception as exc:  # no ffmpeg, CDP refused…: the bundle says there is no video
        (run_dir / "video" / "ABSENT.txt").write_text(f"Vidéo indisponible : {exc}\n", encoding="utf-8")
        return None


def _report(request: pytest.FixtureRequest, bundle: Path) -> None:
    """The bundle in the reports: a JUnit property, and Allure attachments (zip, video, reviewer's page)."""
    request.node.user_properties.append(("proof_bundle", str(bundle)))
    try:
        import allure
    except ImportError:
        return
    unzipped = bundle.with_suffix("")
    allure.attach.file(str(bundle), name=f"Paquet de preuves {bundle.name}", extension="zip")
    for rel, kind in (("video/run.mp4", "mp4"), ("index.html", "html")):
        if (unzipped / rel).exists():
            allure.attach.file(str(unzipped / rel), name=rel, extension=kind)


def _finish(r: Run, lgc: LgcProcess | None, context: Any, outcome: str,
            channel: OperatorChannel | None) -> Path | None:
    if r.video is not None:
        try:
            r.video.stop()  # a guided run's video waits here for the operator page's last segments
        except Exception as exc:
            (r.rec.dir / "video" / "ABSENT.txt").write_text(f"Vidéo indisponible : {exc}\n", encoding="utf-8")
    if channel is not None:
        channel.close()
    context.close()
    if r.env.network.get("control_file"):  # back to a normal network for the next run (the proof keeps its label)
        _proxy_latency(Path(r.env.network["control_file"]), 0)
    for service in r.sims.urls:
        (r.rec.dir / "journals" / f"{service}.jsonl").write_bytes(r.sims.journal_jsonl(service, r.id))
    r.rec.finish(outcome)
    har = r.env.network.get("har")
    if har:
        time.sleep(2.5)  # the addon flushes its HAR every 2 s
        if Path(har).exists():
            _har_window(Path(har), r.rec.dir / "network.har", r.rec.meta["started"], r.rec.meta["ended"])
    if lgc is not None:
        lgc.stop()
    r.sims.end_run()
    from proofs.bundle import build_bundle

    bundle = build_bundle(r.rec.dir, Path(r.env.out_dir) / "bundles")
    with (Path(r.env.out_dir) / "bundles.txt").open("a", encoding="utf-8") as f:
        f.write(f"{r.requirement}\t{bundle}\n")
    return bundle


# ---------------------------------------------------------------------------------------- per-step proofs


def _run_of(request: Any) -> Run | None:
    return getattr(request.node, "segur_run", None)


def pytest_bdd_before_step(request: Any, feature: Any, scenario: Any, step: Any, step_func: Any) -> None:
    r = _run_of(request)
    if r is None:
        return
    request.node.segur_step = r.rec.begin_step(step.keyword.strip(), step.name)
    if r.video is not None:
        r.video.caption(f"{step.keyword.strip()} {step.name}")


def _shot(r: Run, n: int, text: str) -> Path | None:
    if r.env.driver == "guided":  # pictures of the operator's shared screen, given to the steps at the end
        return None
    path = r.rec.dir / "screenshots" / f"{n:02d}-{file_slug(text)}.png"
    # A step that ends while the page navigates (a form post, a redirect) can make the capture fail once: wait
    # for the page to settle and try again, so the bundle keeps one screenshot per step.
    for attempt in range(3):
        try:
            r.page.screenshot(path=str(path), full_page=False)
            return path
        except Exception as exc:
            if attempt == 2:
                print(f"capture d'écran impossible à l'étape {n} : {exc}", file=sys.stderr)
                return None
            with contextlib.suppress(Exception):
                r.page.wait_for_load_state("load", timeout=5_000)
    return None


def pytest_bdd_after_step(request: Any, feature: Any, scenario: Any, step: Any, step_func: Any,
                          step_func_args: Any) -> None:
    r = _run_of(request)
    s = getattr(request.node, "segur_step", None)
    if r is not None and s is not None:
        r.rec.end_step(s, ok=True, screenshot=_shot(r, s.n, step.name))


def pytest_bdd_step_error(request: Any, feature: Any, scenario: Any, step: Any, step_func: Any,
                          step_func_args: Any, exception: Exception) -> None:
    r = _run_of(request)
    s = getattr(request.node, "segur_step", None)
    request.node.segur_failed = True
    if r is not None and s is not None:
        r.rec.end_step(s, ok=False, error=f"{type(exception).__name__}: {exception}"[:2000],
                       screenshot=_shot(r, s.n, step.name))
