"""What a test sees of the bench: the `segur_bench` fixture's object (docs/pytest-plugin.md).

It knows the bench from its description — the JSON `segur-bench endpoints --json` prints and the console serves at
/api/bench — and steers it only over the simulators' control API, as the scenarios do: a team's suite attached to a
bench on another machine or in a compose stack gets exactly what a self-started one gets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

RUN_HEADER = "X-Bench-Run"  # names an exchange's run (simulators/core/run_attribution.py)


class BenchError(RuntimeError):
    """The bench is unreachable, or its control API refused a request (its problem detail in the message)."""


def problem(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    return str(body.get("detail") or body) if isinstance(body, dict) else str(body)[:300]


def load_description(source: str, token: str | None) -> dict[str, Any]:
    """A bench's description from the URL of its console (GET <url>/api/bench) or from a JSON file written by
    `segur-bench endpoints --json` (a compose stack without a console, a bench on another machine)."""
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/") + "/api/bench"
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else None, timeout=10)
        except httpx.HTTPError as exc:
            raise BenchError(f"no bench answers at {source} ({exc}); is `segur-bench up` running, with its "
                             "console (the URL to give is the console's, default http://127.0.0.1:8090)?") from None
        if resp.status_code == 401:
            raise BenchError(f"{url}: the bench wants its control token (SEGUR_BENCH_CONTROL_TOKEN or "
                             "--segur-bench-token)")
        if resp.status_code != 200:
            raise BenchError(f"{url}: {resp.status_code} {problem(resp)} (is this a segur-bench console?)")
        data = resp.json()
    else:
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"{source}: not a bench description ({exc}); give the console's URL or the output "
                             "of `segur-bench endpoints --json`") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        raise BenchError(f"{source}: no services in this bench description")
    return data


class SegurBench:
    """A running bench, as a test suite uses it. Within a test, what it does is scoped to that test's run: the
    incidents and fault rules it applies see only that test's exchanges, `journal()` returns only them."""

    def __init__(self, description: dict[str, Any], *, token: str | None = None, source: str = "",
                 ca_file: Path | None = None) -> None:
        self.description = description
        self.source = source  # the console URL or file it was attached by, or "self-started"
        self._ca_file = ca_file
        self.http = httpx.Client(timeout=15, headers={"Authorization": f"Bearer {token}"} if token else None)
        self.run_id: str | None = None  # the current test's run (None between tests)
        self.shared = False  # other suites use this bench at the same time: never touch its current run

    # ------------------------------------------------------------------ where services are
    @property
    def services(self) -> list[str]:
        return list(self.description["services"])

    def endpoint(self, service: str) -> dict[str, Any]:
        """The service's entry of the description: http, https, client_cert, other ports, real host names…"""
        try:
            return self.description["services"][service]
        except KeyError:
            raise BenchError(f"this bench has no service {service!r} (it has {', '.join(self.services)})") from None

    def url(self, service: str, *, tls: bool = False) -> str:
        """The service's base URL as its clients use it (base path included): over TLS with `tls=True`."""
        ep = self.endpoint(service)
        if tls and not ep.get("https"):
            raise BenchError(f"the bench serves no TLS for {service} (started with tls = false?)")
        return ep["https"] if tls else ep["http"]

    def address(self, service: str, port: str) -> tuple[str, int]:
        """(host, port) of a non-HTTP port, e.g. address("mss", "smtp"), ("mss", "imaps")."""
        other = self.endpoint(service).get("other", {})
        if port not in other:
            raise BenchError(f"{service} has no {port!r} port (it has {', '.join(other) or 'none'})")
        host, _, number = other[port].rpartition(":")
        return host.strip("[]"), int(number)

    @property
    def ca_file(self) -> Path:
        """The bench CA (PEM) to trust for its TLS ports: the bench's own file when local, else fetched once."""
        if self._ca_file is None or not self._ca_file.is_file():
            local = self.description.get("ca")
            if local and Path(local).is_file():
                self._ca_file = Path(local)
            else:
                import tempfile

                pem = self.control(self.services[0], "GET", "/pki/ca.pem").content
                fd, name = tempfile.mkstemp(prefix="segur-bench-ca-", suffix=".pem")
                with open(fd, "wb") as fh:
                    fh.write(pem)
                self._ca_file = Path(name)
        return self._ca_file

    @property
    def headers(self) -> dict[str, str]:
        """Headers that name the current test's run: send them from a client that can (an exchange that names
        no run is the test's anyway when the suite runs alone on the bench)."""
        return {RUN_HEADER: self.run_id} if self.run_id else {}

    # ------------------------------------------------------------------ control API
    def control(self, service: str, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204),
                **kwargs: Any) -> httpx.Response:
        """One control-API request (`path` after /_bench); BenchError with the problem's detail when refused."""
        root = self.endpoint(service).get("control") or self.endpoint(service)["http"]
        try:
            resp = self.http.request(method, f"{root}/_bench{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise BenchError(f"{service} does not answer its control API at {root} ({exc})") from None
        if resp.status_code not in ok:
            raise BenchError(f"{service}: {method} /_bench{path} refused ({resp.status_code}): {problem(resp)}")
        return resp

    def _scope(self) -> dict[str, str]:
        return {"run": self.run_id} if self.run_id else {}

    @contextlib.contextmanager
    def incident(self, name: str) -> Iterator[dict[str, list[dict[str, Any]]]]:
        """Apply a named incident (`segur-bench incident list`) for the block, cleared on exit even when the block
        fails. Within a test, only that test's exchanges see it. Yields service -> the rules applied."""
        applied: dict[str, list[dict[str, Any]]] = {}
        try:
            for service in self.services:
                resp = self.control(service, "POST", f"/incidents/{quote(name, safe='')}", params=self._scope())
                if resp.json().get("rules"):
                    applied[service] = resp.json()["rules"]
            if not applied:
                raise BenchError(f"incident {name!r} changes no service of this bench")
            yield applied
        finally:
            for service in self.services:
                with contextlib.suppress(BenchError):
                    self.control(service, "DELETE", f"/incidents/{quote(name, safe='')}", params=self._scope())

    @contextlib.contextmanager
    def fault(self, rule: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Add one fault rule (the control API's shape: {"service": "dmp", "operation": …, "action": …}) for the
        block, removed on exit even when the block fails. Yields the rule as the simulator stored it."""
        if not isinstance(rule, dict) or not rule.get("service"):
            raise BenchError('a fault rule names its service: {"service": "insi", …}')
        service = rule["service"]
        self.endpoint(service)
        resp = self.control(service, "POST", "/faults", json={"rules": [{**rule, **self._scope()}]})
        stored = resp.json()["rules"][0]
        try:
            yield stored
        finally:
            with contextlib.suppress(BenchError):
                self.control(service, "DELETE", f"/faults/{quote(stored['id'], safe='')}", ok=(204, 404))

    def journal(self, service: str, operation: str | None = None) -> list[dict[str, Any]]:
        """The exchanges of the current test with `service` (all of the bench's, outside a test), oldest first,
        as the control API gives them."""
        params = {**self._scope(), **({"operation": operation} if operation else {})}
        return self.control(service, "GET", "/journal", params=params).json()["entries"]

    def reset(self) -> None:
        """Every simulator back to its seed: its business state, clock, fault rules and journal. Within a test on a
        shared bench (--segur-bench-shared), only that test's part."""
        for service in self.services:
            if self.shared and self.run_id:
                self.control(service, "POST", "/reset", json={"run": self.run_id})
            else:  # the current run is the plugin's per-test attribution: kept; PSC keeps its registered clients
                keep = ["run", "state"] if service == "psc" else ["run"]
                self.control(service, "POST", "/reset", json={"keep": keep})

    # ------------------------------------------------------------------ per-test runs (driven by the plugin)
    def begin_run(self, run_id: str, label: str, client_certs: list[str]) -> None:
        """Attribute what follows to `run_id`: alone on the bench, as each simulator's current run (an exchange
        that names none is this test's); always through the client certificates given, bound to the run."""
        self.run_id = run_id
        for service in self.services:
            if client_certs:
                self.control(service, "PUT", f"/runs/{quote(run_id, safe='')}",
                             json={"client_certs": client_certs, "label": label})
            if not self.shared:
                self.control(service, "POST", "/run", json={"run": run_id, "label": label})

    def end_run(self, client_certs: list[str]) -> None:
        run, self.run_id = self.run_id, None
        if run is None:
            return
        calls: list[tuple[str, str, dict[str, Any]]] = [("DELETE", "/faults", {"params": {"run": run}})]
        if client_certs:
            calls.append(("DELETE", f"/runs/{quote(run, safe='')}", {}))
        if not self.shared:
            calls.append(("POST", "/run", {"json": {"run": None}}))
        for service in self.services:
            for method, path, kwargs in calls:  # each attempted: a test's leftovers must not leak into the next
                with contextlib.suppress(BenchError):
                    self.control(service, method, path, **kwargs)

    def har(self, run_id: str) -> dict[str, Any]:
        """One HAR 1.2 log of a run's HTTP exchanges with every service, in time order."""
        entries: list[dict[str, Any]] = []
        log: dict[str, Any] = {}
        for service in self.services:
            with contextlib.suppress(BenchError):
                got = self.control(service, "GET", "/journal", params={"run": run_id, "format": "har"}).json()
                log = log or got["log"]
                entries.extend(got["log"]["entries"])
        entries.sort(key=lambda e: e.get("startedDateTime", ""))
        return {"log": {**log, "version": "1.2", "entries": entries, "comment": f"segur-bench run {run_id}"}}

    def exchanges(self, run_id: str) -> list[dict[str, Any]]:
        """Every exchange of a run (SMTP and IMAP included, which a HAR cannot hold), oldest first."""
        out: list[dict[str, Any]] = []
        for service in self.services:
            with contextlib.suppress(BenchError):
                out.extend(self.control(service, "GET", "/journal", params={"run": run_id}).json()["entries"])
        return sorted(out, key=lambda e: e.get("received_at") or 0)

    def close(self) -> None:
        self.http.close()
