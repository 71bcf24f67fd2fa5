"""What a scenario run knows and writes: where the bench is (simulators, LGC, network layer), and the run
directory in the proof-bundle contract (run.json, steps.json, screenshots/, video/, journals/, network.har,
timings.json, verdicts.json — see proofs/README.md)."""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ENV_VAR = "SEGUR_BENCH_SCENARIO_ENV"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class BenchEnv:
    """Written by `segur-bench run` for the pytest process it starts."""

    sims: dict[str, str]  # service -> root URL of the simulator (control API under /_bench)
    out_dir: str
    against: str = "reference"  # "reference" or the URL of a vendor's LGC
    driver: str = "playwright"  # playwright | guided
    lgc_settings: dict[str, Any] = field(default_factory=dict)  # reference LGC: service URLs it must use
    network: dict[str, Any] = field(default_factory=dict)  # {"mode": "proxy", "control_file": …, "har": …}
    psc_issuer: str = ""
    operator: str = ""  # guided driver: "auto" = an automated operator (CI)
    operator_listen: str = ""  # guided driver: HOST:PORT of the operator page ("" = loopback, a free port)
    operator_public_host: str = ""  # the host name the operator's browser uses, when it differs
    operator_certificate: str | None = None  # PEM (key, certificate, chain) of the operator page beyond loopback
    operator_token: str = ""  # secret path prefix of the operator page, one per `segur-bench run`
    bench_version: str = ""
    control_token: str | None = None  # the control API's token when the bench listens beyond loopback
    ca_file: str | None = None  # the bench CA (HTTPS): the scenarios' browser trusts it like a tester's would
    # Several scenario runs at once on one bench (segur-bench run --parallel): each run binds its LGC's client
    # certificates to its id, with its own state, and resets, scopes its fault rules and reads its journal by it.
    shared_bench: bool = False
    client_certs: list[str] = field(default_factory=list)  # PEM files of the LGC's client certificates

    @classmethod
    def load(cls) -> BenchEnv:
        path = os.environ.get(ENV_VAR)
        if not path:
            raise RuntimeError(f"{ENV_VAR} is not set: scenarios are run by `segur-bench run`")
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")


class Sims:
    """The simulators' control API, as scenarios use it (over the wire, like a vendor's CI would)."""

    def __init__(self, urls: dict[str, str], token: str | None = None, *, shared: bool = False,
                 client_certs: list[str] | None = None) -> None:
        self.urls = urls
        self.http = httpx.Client(timeout=15, headers={"Authorization": f"Bearer {token}"} if token else None)
        self.shared = shared  # other runs use these simulators at the same time: touch only this run's part
        self.client_certs = [Path(p).read_text(encoding="ascii") for p in client_certs or []]
        self.run: str | None = None

    def call(self, service: str, method: str, path: str, body: Any = None) -> Any:
        # Sharing the bench, a control request names its run: /state, /clock… then act on this run's own state.
        headers = {"X-Bench-Run": self.run} if self.shared and self.run else None
        resp = self.http.request(method, f"{self.urls[service]}/_bench{path}", json=body, headers=headers)
        if resp.status_code >= 400:
            raise AssertionError(f"{service} control API {method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content and "json" in resp.headers.get("content-type", "") else resp.content

    def reset_all(self, run_id: str) -> None:
        """A new run. Alone on the bench: every simulator back to its seed, this run current. Sharing it: the
        LGC's client certificates bound to the run, so its exchanges carry its id though the LGC names none
        (core/run_attribution.py); its own business state where the simulator keeps one per run
        (core/run_state.py), seeded afresh; its fault rules and journal only."""
        self.run = run_id
        for s in self.urls:
            if self.shared:
                own = self.call(s, "GET", "/runs")["own_state_supported"]
                claim: dict[str, Any] = {"state": "own" if own else "shared", "label": run_id}
                if self.client_certs:
                    claim["client_certs"] = self.client_certs
                self.call(s, "PUT", f"/runs/{quote(run_id)}", claim)
                self.call(s, "POST", "/reset", {"run": run_id})
            else:
                self.call(s, "POST", "/reset", {"keep": ["state"]} if s == "psc" else {})
                self.call(s, "POST", "/run", {"run": run_id})

    def end_run(self) -> None:
        """Release the run's certificates (the next run of this worker binds them to its own id) and state."""
        if self.shared and self.run:
            for s in self.urls:
                self.call(s, "DELETE", f"/runs/{quote(self.run)}")

    def faults(self, service: str, *rules: dict[str, Any]) -> None:
        scope = {"run": self.run} if self.run else {}
        self.call(service, "POST", "/faults", {"rules": [{"service": service, **scope, **r} for r in rules]})

    def clear_faults(self, *services: str) -> None:
        for s in services or tuple(self.urls):
            self.call(s, "DELETE", f"/faults?run={quote(self.run)}" if self.shared and self.run else "/faults")

    def journal(self, service: str, run_id: str, operation: str | None = None) -> list[dict[str, Any]]:
        q = f"?run={run_id}" + (f"&operation={operation}" if operation else "")
        return self.call(service, "GET", "/journal" + q)["entries"]

    def journal_jsonl(self, service: str, run_id: str) -> bytes:
        resp = self.http.get(f"{self.urls[service]}/_bench/journal", params={"run": run_id, "format": "jsonl"})
        resp.raise_for_status()
        return resp.content


@dataclass
class Step:
    n: int
    keyword: str
    text: str
    started: str
    ended: str = ""
    status: str = "passed"
    screenshot: str | None = None
    error: str | None = None
    screenshot_source: str | None = None  # where the picture comes from (French), when it is not the bench's browser


class RunRecorder:
    """Accumulates a scenario run's facts and writes them in the bundle contract."""

    def __init__(self, run_dir: Path, meta: dict[str, Any]) -> None:
        self.dir = run_dir
        for sub in ("screenshots", "video", "journals"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        self.meta = {**meta, "started": now_iso()}
        self.steps: list[Step] = []
        self.verdicts: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.marks: dict[str, float] = {}

    def begin_step(self, keyword: str, text: str) -> Step:
        step = Step(n=len(self.steps) + 1, keyword=keyword, text=text, started=now_iso())
        self.steps.append(step)
        return step

    def end_step(self, step: Step, *, ok: bool, error: str | None = None, screenshot: Path | None = None) -> None:
        step.ended = now_iso()
        step.status = "passed" if ok else "failed"
        step.error = error
        step.screenshot = str(screenshot.relative_to(self.dir)) if screenshot else None

    def verdict(self, assertion: str, ok: bool, detail: str = "", source: str = "") -> bool:
        self.verdicts.append({"id": f"V{len(self.verdicts) + 1}", "assertion": assertion, "ok": bool(ok),
                              "detail": detail, "source": source})
        return ok

    def action(self, name: str, ms: float, during: str) -> None:
        self.actions.append({"action": name, "ms": round(ms, 1), "during": during})

    def timed(self, name: str, during: str) -> _Timer:
        return _Timer(self, name, during)

    def finish(self, outcome: str) -> None:
        self.meta.update(ended=now_iso(), outcome=outcome)
        ms = sorted(a["ms"] for a in self.actions)
        timings: dict[str, Any] = {"actions": self.actions}
        if ms:
            timings.update(p50_ms=statistics.median(ms), p95_ms=ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
                           max_ms=ms[-1])
        for name, data in (("run.json", self.meta), ("steps.json", [asdict(s) for s in self.steps]),
                           ("verdicts.json", self.verdicts), ("timings.json", timings)):
            (self.dir / name).write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


class _Timer:
    def __init__(self, rec: RunRecorder, name: str, during: str) -> None:
        self.rec, self.name, self.during = rec, name, during

    def __enter__(self) -> _Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rec.action(self.name, (time.perf_counter() - self.t0) * 1000, self.during)
