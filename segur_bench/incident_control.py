"""Applying and clearing a named incident on running simulators, over their control API — what
`segur-bench incident apply|clear` and the load runner's mid-test incidents both do."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from simulators.core.incidents import Incident

from .config import BenchConfig


@dataclass(frozen=True)
class Outcome:
    service: str
    url: str
    ok: bool
    detail: str  # the rules' descriptions when applied, or why not (unreachable, refused)
    removed: int = 0  # rules removed (clear)


def control_call(config: BenchConfig, method: str, url: str, **kwargs) -> httpx.Response | None:
    """A control-API request with the bench's token; None when the simulator does not answer."""
    try:
        return httpx.request(method, url, timeout=10.0, headers=config.control_headers(), **kwargs)
    except httpx.HTTPError:
        return None


def problem_detail(resp: httpx.Response) -> str:
    try:
        return resp.json().get("detail") or resp.text
    except ValueError:
        return resp.text[:200]


def apply_incident(config: BenchConfig, incident: Incident, targets: list[tuple[str, str]],
                   run: str | None = None) -> list[Outcome]:
    """The incident's rules on each concerned target (service, URL), replacing an earlier application of it;
    with `run`, only that run's exchanges see them."""
    out = []
    for svc, url in targets:
        rules = incident.rules_for(svc)
        if not rules:
            continue
        scope = {"incident": incident.name, **({"run": run} if run else {})}
        if control_call(config, "DELETE", f"{url}/_bench/faults", params=scope) is None:
            out.append(Outcome(svc, url, False, f"not reachable at {url} (is `segur-bench up` running?)"))
            continue
        resp = control_call(config, "POST", f"{url}/_bench/faults", json={"rules": [{**r, **scope} for r in rules]})
        if resp is None or resp.status_code != 201:
            why = problem_detail(resp) if resp is not None else "no answer"
            out.append(Outcome(svc, url, False, f"refused: {why}"))
            continue
        out.append(Outcome(svc, url, True, "; ".join(r["description"] for r in resp.json()["rules"])))
    return out


def clear_incident(config: BenchConfig, name: str | None, targets: list[tuple[str, str]],
                   run: str | None = None) -> list[Outcome]:
    """Remove incident `name`'s rules (every rule when None; with `run`, only that run's) from each target."""
    scope = {**({"incident": name} if name else {}), **({"run": run} if run else {})}
    out = []
    for svc, url in targets:
        resp = control_call(config, "DELETE", f"{url}/_bench/faults", params=scope or None)
        if resp is None:
            out.append(Outcome(svc, url, False, f"not reachable at {url}"))
            continue
        removed = int(resp.json().get("deleted", 0)) if resp.status_code == 200 else 0
        out.append(Outcome(svc, url, resp.status_code == 200, problem_detail(resp) if resp.status_code != 200 else "",
                           removed))
    return out
