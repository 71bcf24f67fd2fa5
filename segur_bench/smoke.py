"""Smoke check of running simulators: health, incident round trip, concurrent latency, journal export.

It talks to the simulators only through HTTP, like a vendor's CI would, and leaves them as it
found them (its incident is cleared at the end).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from lxml import etree

from simulators.core.har import to_har
from simulators.core.journal import Exchange, to_jsonl

SMOKE_INCIDENT = "smoke-latence"
LATENCY_MS = 3000
PROBES_DIR = Path(__file__).parent / "probes"


@dataclass(frozen=True)
class Probe:
    """A real business request of one service, hand-written, and what its answer must show."""

    description: str
    method: str
    path: str
    content_type: str
    body_file: str
    check: Callable[[httpx.Response], tuple[bool, str]]

    def request(self, client: httpx.AsyncClient | httpx.Client, base: str):
        body = (PROBES_DIR / self.body_file).read_text(encoding="utf-8").format(message_id=f"urn:uuid:{uuid.uuid4()}")
        return client.request(self.method, base + self.path, content=body.encode("utf-8"),
                              headers={"content-type": self.content_type})


def _insi_check(resp: httpx.Response) -> tuple[bool, str]:
    try:
        root = etree.fromstring(resp.content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return False, f"HTTP {resp.status_code}, réponse non XML"
    ns = {"r": "http://www.cnamts.fr/INSiResultat"}
    code = root.findtext(".//r:RESULTAT/r:CR/r:CodeCR", namespaces=ns)
    matricule = root.findtext(".//r:INSACTIF/r:IdIndividu/r:NumIdentifiant", namespaces=ns)
    ok = resp.status_code == 200 and code == "00" and matricule == "1431100950837"
    return ok, f"HTTP {resp.status_code}, CodeCR {code}, matricule {matricule}"


PROBES: dict[str, Probe] = {
    "insi": Probe("recherche INSi par traits de CLÉRICO Côme", "POST", "/lps",
                  "application/soap+xml; charset=utf-8", "insi-clerico.xml", _insi_check),
}


@dataclass
class Check:
    service: str
    name: str
    ok: bool
    detail: str


@dataclass
class SmokeReport:
    checks: list[Check] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def run_smoke(targets: dict[str, str], out_dir: Path, progress: Callable[[str], None] = print) -> SmokeReport:
    report = SmokeReport()
    run_id = f"smoke-{int(time.time())}"
    client = httpx.Client(timeout=10.0)

    def check(service: str, name: str, ok: bool, detail: str) -> None:
        report.checks.append(Check(service, name, ok, detail))
        progress(f"  [{'ok' if ok else 'ÉCHEC'}] {service}: {name} — {detail}")

    progress(f"Smoke check of {len(targets)} simulator(s), run {run_id}")
    for svc, url in targets.items():
        resp = client.get(f"{url}/_bench/health")
        check(svc, "santé", resp.status_code == 200 and resp.json().get("service") == svc,
              f"HTTP {resp.status_code}, version {resp.json().get('version', '?')}")
        client.post(f"{url}/_bench/run", json={"run": run_id, "label": "smoke check"})
        client.delete(f"{url}/_bench/faults", params={"incident": SMOKE_INCIDENT})
        rule = {"service": svc, "effect": {"type": "latency", "ms": LATENCY_MS}, "incident": SMOKE_INCIDENT,
                "label": "smoke check"}
        resp = client.post(f"{url}/_bench/faults", json=rule)
        check(svc, "incident appliqué", resp.status_code == 201, f"HTTP {resp.status_code}")

    # Every service at once, each delayed 3 s: the whole batch must take about 3 s, not 3 s × N.
    progress(f"Calling every simulator 5 times at once with {LATENCY_MS} ms of injected latency …")
    elapsed, answers = asyncio.run(_concurrent_calls(targets, per_service=5))
    within = LATENCY_MS / 1000 <= elapsed < LATENCY_MS / 1000 + 2.0
    detail = f"{len(answers)} appels en {elapsed:.2f} s (attendu ≈ {LATENCY_MS / 1000:.0f} s)"
    check("*", "latence non sérialisée", within, detail)
    for svc, probe in PROBES.items():
        if svc in targets:
            results = [probe.check(resp) for name, resp in answers if name == svc]
            check(svc, probe.description, bool(results) and all(ok for ok, _ in results), results[0][1])

    exchanges: list[Exchange] = []
    for svc, url in targets.items():
        client.delete(f"{url}/_bench/faults", params={"incident": SMOKE_INCIDENT})
        entries = client.get(f"{url}/_bench/journal", params={"run": run_id}).json()["entries"]
        recorded = [Exchange.from_dict(e) for e in entries]
        # uvloop's timers have a resolution of a millisecond, counted from the loop's cached time: a 3-s delay may
        # end a fraction of a millisecond early on the journal's clock
        delayed = [e for e in recorded if e.faults and (e.duration_ms or 0) >= LATENCY_MS - 5]
        check(svc, "journal", len(delayed) == 5, f"{len(recorded)} échange(s) journalisé(s), {len(delayed)} retardé(s)")
        exchanges += recorded
        client.post(f"{url}/_bench/run", json={"run": None})

    out_dir.mkdir(parents=True, exist_ok=True)
    exchanges.sort(key=lambda e: e.received_at)
    jsonl, har = out_dir / "journal.jsonl", out_dir / "journal.har"
    jsonl.write_text(to_jsonl(exchanges), encoding="utf-8")
    har.write_text(json.dumps(to_har(exchanges, base_urls=targets), ensure_ascii=False, indent=1), encoding="utf-8")
    report.files += [jsonl, har]
    summary = out_dir / "smoke.json"
    summary.write_text(json.dumps({"run": run_id, "ok": report.ok, "checks": [c.__dict__ for c in report.checks]},
                                  ensure_ascii=False, indent=2), encoding="utf-8")
    report.files.append(summary)
    return report


Answers = list[tuple[str, httpx.Response]]


async def _concurrent_calls(targets: dict[str, str], per_service: int) -> tuple[float, Answers]:
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200)) as client:
        calls, names = [], []
        for name, url in targets.items():
            for _ in range(per_service):
                probe = PROBES.get(name)
                # Without a business probe, GET / (an unknown route) still crosses the fault engine and journal.
                calls.append(probe.request(client, url) if probe else client.get(url + "/"))
                names.append(name)
        started = time.perf_counter()
        responses = await asyncio.gather(*calls)
        return time.perf_counter() - started, list(zip(names, responses, strict=True))
