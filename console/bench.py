"""The console's view of the bench: every call goes to a simulator's control API (`/_bench/…`) over HTTP.

The console never imports a simulator's state: it could steer a bench on another machine or in containers the
same way. Each call sends the bench's control token when there is one (beyond loopback the control API wants it)
and no `Origin` (the control API refuses web pages; the console's backend is a tool, its page is not).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    control: str  # root URL of the control API (`<control>/_bench/…`), plain HTTP
    http: str  # the service's base URL over HTTP, as clients use it
    https: str | None = None  # the same over TLS, None when the bench serves no TLS
    client_cert: str = "off"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "http": self.http, "https": self.https,
                "client_cert": self.client_cert}


class BenchError(Exception):
    """A control call that failed: the simulator is unreachable or refused (its problem's detail)."""

    def __init__(self, detail: str, status: int = 502) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def problem_detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error_description") or body.get("title") or body)
    return str(body)[:300]


_DURATION_UNITS = {
    "a": "Y", "an": "Y", "ans": "Y", "y": "Y",
    "mois": "M", "mo": "M",
    "sem": "W", "semaine": "W", "semaines": "W", "w": "W",
    "j": "D", "jour": "D", "jours": "D", "d": "D",
    "h": "H", "heure": "H", "heures": "H",
    "min": "MIN", "minute": "MIN", "minutes": "MIN",
    "s": "S", "sec": "S", "seconde": "S", "secondes": "S",
}
_DURATION_PART = re.compile(r"(\d+)\s*([a-zé]+)")


def iso_duration(text: str) -> str:
    """A trainer's duration ("+1h", "+30 j", "2 mois 3 j", "-1 an") as ISO 8601 ("PT1H", "P30D", "-P1Y"); an
    ISO 8601 duration is returned as it is. Raises ValueError on anything else."""
    raw = text.strip().lower().replace(",", " ")
    sign = ""
    if raw and raw[0] in "+-":
        sign, raw = ("-" if raw[0] == "-" else ""), raw[1:].strip()
    if raw.upper().startswith("P"):
        return sign + raw.upper()
    parts = _DURATION_PART.findall(raw)
    if not parts or _DURATION_PART.sub("", raw).strip():
        raise ValueError(f"durée illisible : {text!r} (exemples : +1h, +30 j, +6 mois, P6M)")
    date, time = {}, {}
    for amount, unit in parts:
        code = _DURATION_UNITS.get(unit)
        if code is None:
            raise ValueError(f"unité inconnue {unit!r} dans {text!r} (a, mois, sem, j, h, min, s)")
        target = time if code in ("H", "MIN", "S") else date
        key = "M" if code == "MIN" else code
        target[key] = target.get(key, 0) + int(amount)
    out = "P" + "".join(f"{date[k]}{k}" for k in "YMWD" if k in date)
    if time:
        out += "T" + "".join(f"{time[k]}{k}" for k in "HMS" if k in time)
    return sign + out


class BenchClient:
    """Async calls to every simulator's control API."""

    def __init__(self, services: Iterable[Service], *, token: str | None = None, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.services = {s.name: s for s in services}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise BenchError(f"service inconnu : {name!r}", 404) from None

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One control call; BenchError when the simulator does not answer or answers with an error."""
        url = self.service(service).control + "/_bench" + path
        try:
            resp = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise BenchError(f"{service} ne répond pas ({type(exc).__name__})") from None
        if resp.status_code >= 400:
            status = resp.status_code if resp.status_code in (400, 404, 409) else 502
            raise BenchError(f"{service} : {problem_detail(resp)}", status)
        return resp

    async def json(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self.call(service, method, path, **kwargs)
        return resp.json() if resp.content else None

    async def each(self, fn: Callable[[str], Awaitable[Any]], names: Iterable[str] | None = None) -> dict[str, Any]:
        """fn(service) for every service at once: its result, or {"error": …} for the ones that failed."""
        names = list(self.services if names is None else names)

        async def one(name: str) -> Any:
            try:
                return await fn(name)
            except BenchError as exc:
                return {"error": exc.detail}

        return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))

    # ------------------------------------------------------------------ services, faults, incidents
    async def overview(self) -> list[dict[str, Any]]:
        async def one(name: str) -> dict[str, Any]:
            health, faults = await asyncio.gather(self.json(name, "GET", "/health"),
                                                  self.json(name, "GET", "/faults"))
            return {"health": health, "rules": faults["rules"], "outcomes": faults.get("outcomes", {}),
                    "incidents": faults.get("incidents", [])}

        found = await self.each(one)
        return [{**self.services[name].as_dict(), "up": "error" not in info, **info} for name, info in found.items()]

    async def incidents(self) -> list[dict[str, Any]]:
        """The incident catalogue as the simulators know it (each reads scenarios/incidents/)."""
        errors = []
        for name in self.services:
            try:
                return (await self.json(name, "GET", "/incidents"))["available"]
            except BenchError as exc:
                errors.append(exc.detail)
        raise BenchError("aucun simulateur ne répond : " + "; ".join(errors))

    async def apply_incident(self, incident: str) -> dict[str, Any]:
        return await self.each(lambda s: self.json(s, "POST", f"/incidents/{quote(incident, safe='')}"))

    async def clear_incident(self, incident: str) -> dict[str, Any]:
        return await self.each(lambda s: self.json(s, "DELETE", f"/incidents/{quote(incident, safe='')}"))

    async def clear_faults(self) -> dict[str, Any]:
        return await self.each(lambda s: self.json(s, "DELETE", "/faults"))

    async def add_rule(self, service: str, rule: dict[str, Any]) -> dict[str, Any]:
        if service == "*":
            return await self.each(lambda s: self.json(s, "POST", "/faults", json={**rule, "service": s}))
        return {service: await self.json(service, "POST", "/faults", json={**rule, "service": service})}

    async def delete_rule(self, service: str, rule_id: str) -> None:
        await self.call(service, "DELETE", f"/faults/{quote(rule_id, safe='')}")

    # ------------------------------------------------------------------ clock
    async def clocks(self) -> dict[str, Any]:
        return await self.each(lambda s: self.json(s, "GET", "/clock"))

    async def set_clocks(self, instruction: dict[str, Any]) -> dict[str, Any]:
        return await self.each(lambda s: self.json(s, "POST", "/clock", json=instruction))

    # ------------------------------------------------------------------ Pro Santé Connect (CIBA)
    async def ciba(self) -> list[dict[str, Any]]:
        return (await self.json("psc", "GET", "/state"))["state"]["ciba"]

    async def decide_ciba(self, auth_req_id: str, decision: str) -> list[dict[str, Any]]:
        body = {"ciba": {"auth_req_id": auth_req_id, "decision": decision}}
        return (await self.json("psc", "POST", "/state", json=body))["state"]["ciba"]

    # ------------------------------------------------------------------ Appli carte Vitale, MSSanté
    async def apcv_qr(self, patient: str) -> tuple[bytes, str, str]:
        """A fresh QR code of the patient's Appli carte Vitale: (PNG, payload, expiry)."""
        resp = await self.call("apcv", "GET", f"/apcv/{quote(patient, safe='')}/qr.png")
        return resp.content, resp.headers.get("x-apcv-donnees", ""), resp.headers.get("x-apcv-expiration", "")

    async def mailboxes(self) -> Any:
        return await self.json("mss", "GET", "/mss/mailboxes")

    async def mailbox(self, address: str) -> Any:
        return await self.json("mss", "GET", f"/mss/mailboxes/{quote(address, safe='@')}")

    # ------------------------------------------------------------------ journal
    async def journal_feed(self, service: str, after: str | None, limit: int = 200) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        return await self.json(service, "GET", "/journal/feed", params=params)
