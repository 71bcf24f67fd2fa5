"""Locust file of the "cabinet" load profile: N practitioners at work in their practices.

    segur-bench load cabinet --users 20 --duration 5m --out out/load      # the usual way (README.md here)
    locust -f segur_bench/load/cabinet.py --headless -u 20 -r 2 -t 5m     # the same profile, plain Locust

Each Locust user is one practitioner seeing patients one after another. A consultation:

1. identity check: INSi search by traits;
2. the patient's DMP: TD0.2 (existence, rights), TD0.3 when the practitioner has no authorisation yet, ITI-18;
3. an Ordonnance numérique in 4 consultations out of 5;
4. the consultation report fed to the DMP (ITI-41) in 1 out of 2;
5. a letter to a correspondent over MSSanté in 1 out of 3;

with a pause of 2–6 s between steps (reading, examining, typing) and 20–40 s between consultations, all
divided by SEGUR_BENCH_LOAD_PACE (default 1). The first consultation of every practitioner has every step.
Why these figures: README.md of this package.

Settings come from the environment, so that master and workers (other machines included) read them alike:
SEGUR_BENCH_CONFIG (the bench's segur-bench.toml: where the simulators are), SEGUR_BENCH_LOAD_TARGET
(module:Class, default: the simulators), SEGUR_BENCH_LOAD_PACE, SEGUR_BENCH_LOAD_TIMEOUT (seconds per call).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import sys

import gevent
from locust import User, between, events, task

# Loaded by path (`locust -f`), this file's package is imported by name: the project root must be importable.
sys.path[:0] = [p for p in (os.getcwd(), os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
                if p not in sys.path]

from segur_bench.load.people import patients, practitioner  # noqa: E402
from segur_bench.load.plugin import load_target_class  # noqa: E402
from segur_bench.load.target import CallFailed, LoadTarget  # noqa: E402

log = logging.getLogger("segur_bench.load")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would drown the log

PACE = float(os.environ.get("SEGUR_BENCH_LOAD_PACE") or 1.0)
STEP_PAUSE_S = (2.0, 6.0)  # between two steps of a consultation
CONSULTATION_PAUSE_S = (20.0, 40.0)  # between two consultations
PRESCRIPTION_EVERY = 5  # a prescription in all consultations but the 5th, 10th, …
FEED_EVERY = 2  # a DMP feed every 2nd consultation
LETTER_EVERY = 3  # an MSSanté letter every 3rd consultation

TARGET_CLASS = load_target_class(os.environ.get("SEGUR_BENCH_LOAD_TARGET") or None)
_numbers = itertools.count()
WORKER_STRIDE = 1021  # practitioner number = local count × stride + worker index: unique across workers (< 1021)


def _report(request_type: str, name: str, response_time: float, length: int, exc: BaseException | None) -> None:
    events.request.fire(request_type=request_type, name=name, response_time=response_time, response_length=length,
                        exception=exc, context={})


class Practitioner(User):
    """One practitioner of the cabinet (a physician of the personas, in turn)."""

    wait_time = between(CONSULTATION_PAUSE_S[0] / PACE, CONSULTATION_PAUSE_S[1] / PACE)

    def on_start(self) -> None:
        self.number = next(_numbers) * WORKER_STRIDE + getattr(self.environment.runner, "worker_index", 0)
        self.consultations = 0
        self.rng = random.Random(self.number)
        self.patients = patients()
        who = practitioner(self.number)
        log.info("practitioner %d (%s %s) starts", self.number, who.given_name, who.family_name)
        self.target: LoadTarget = TARGET_CLASS(who, _report)
        self.logged_in = False
        self._log_in()

    def _log_in(self) -> None:
        try:
            self.target.start()
            self.logged_in = True
        except CallFailed:
            pass  # reported; tried again before the next consultation (PSC down is an incident too)
        except Exception as exc:  # a target's own bug: visible in the figures, tried again later
            log.exception("start failed outside a reported call")
            _report("cabinet", "cabinet start", 0.0, 0, exc)

    def on_stop(self) -> None:
        target = getattr(self, "target", None)
        if target is not None:
            target.stop()

    @task
    def consultation(self) -> None:
        if not self.logged_in:
            self._log_in()
            if not self.logged_in:
                return  # no session, no consultation: the practitioner waits and tries again
        n = self.consultations
        self.consultations += 1
        patient = self.rng.choice(self.patients)
        steps = ["search_identity", "consult_dmp"]
        if n % PRESCRIPTION_EVERY != PRESCRIPTION_EVERY - 1:
            steps.append("prescribe")
        if n % FEED_EVERY == 0:
            steps.append("feed_dmp")
        if n % LETTER_EVERY == 0:
            steps.append("send_message")
        for i, step in enumerate(steps):
            if i:
                self._pause(STEP_PAUSE_S)
            self._do(step, patient)

    def _do(self, step: str, patient: object) -> None:
        try:
            getattr(self.target, step)(patient)
        except CallFailed:
            pass  # reported by LoadTarget.call; the practitioner goes on with the consultation
        except Exception as exc:  # a target's own bug or an unreported call: visible, under the step's name
            log.exception("%s failed outside a reported call", step)
            _report("cabinet", f"cabinet {step}", 0.0, 0, exc)

    def _pause(self, bounds: tuple[float, float]) -> None:
        gevent.sleep(self.rng.uniform(bounds[0] / PACE, bounds[1] / PACE))
