"""Stand-in for YOUR software's code: in your suite, this is your LGC (or its client library, or its UI driven by
Playwright), pointed at the bench. Here, a directory search as an LGC does it: Annuaire santé, FHIR R4, API key."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

API_KEY = "segur-bench-annuaire"  # the bench's default key (simulators/annuaire/README.md)


class DirectoryUnavailable(Exception):
    """The directory did not answer in time, or said it is unavailable: the LGC says so and stays usable."""


@dataclass
class Correspondent:
    name: str
    mailboxes: list[str]


def find_correspondents(base_url: str, family: str, *, given: str | None = None, timeout: float = 5.0,
                        headers: dict[str, str] | None = None) -> list[Correspondent]:
    params = {"family": family, **({"given": given} if given else {})}
    try:
        resp = httpx.get(f"{base_url}/Practitioner", params=params, timeout=timeout,
                         headers={"ESANTE-API-KEY": API_KEY, "Accept": "application/fhir+json", **(headers or {})})
    except httpx.TimeoutException as exc:
        raise DirectoryUnavailable("l'annuaire n'a pas répondu à temps") from exc
    if resp.status_code in (429, 503):
        raise DirectoryUnavailable(f"l'annuaire est indisponible ({resp.status_code})")
    resp.raise_for_status()
    out = []
    for entry in resp.json().get("entry", []):
        res = entry["resource"]
        if res.get("resourceType") != "Practitioner":
            continue
        name = res["name"][0]
        mailboxes = [t["value"] for t in res.get("telecom", []) if t.get("system") == "email"]
        out.append(Correspondent(" ".join([*name.get("given", []), name.get("family", "")]), mailboxes))
    return out
