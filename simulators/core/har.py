"""HAR 1.2 export of journal entries (HTTP exchanges only; SMTP/IMAP stay in JSONL).

HAR readers (browser devtools, Charles, har-validator) expect every required field even when a
simulator has nothing to say (cookies, cache, sizes): unknown sizes are -1 as the format allows.
A request that got no answer (dropped, hung) gets status 0, as browsers record aborted requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlsplit

from .clock import iso
from .journal import Exchange

CREATOR = {"name": "segur-bench", "version": "0.1.0"}


def _status_text(status: int | None) -> str:
    if not status:
        return ""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _headers(headers: Iterable[tuple[str, str]]) -> list[dict]:
    return [{"name": k, "value": v} for k, v in headers]


def _request_cookies(headers: list[tuple[str, str]]) -> list[dict]:
    cookies = []
    for name, value in headers:
        if name.lower() == "cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value)
            except Exception:
                continue
            cookies += [{"name": k, "value": m.value} for k, m in jar.items()]
    return cookies


def _response_cookies(headers: list[tuple[str, str]]) -> list[dict]:
    cookies = []
    for name, value in headers:
        if name.lower() != "set-cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except Exception:
            continue
        for key, morsel in jar.items():
            cookie: dict = {"name": key, "value": morsel.value}
            if morsel["path"]:
                cookie["path"] = morsel["path"]
            if morsel["domain"]:
                cookie["domain"] = morsel["domain"]
            if morsel["expires"]:
                with contextlib.suppress(TypeError, ValueError):
                    cookie["expires"] = iso(parsedate_to_datetime(morsel["expires"]))
            if morsel["httponly"]:
                cookie["httpOnly"] = True
            if morsel["secure"]:
                cookie["secure"] = True
            cookies.append(cookie)
    return cookies


def entry(ex: Exchange, base_url: str = "") -> dict:
    url = ex.url if "://" in ex.url else base_url.rstrip("/") + ex.url
    req_ctype = ex.request.header("content-type")
    request: dict = {
        "method": ex.method or "GET",
        "url": url,
        "httpVersion": f"HTTP/{ex.http_version}",
        "cookies": _request_cookies(ex.request.headers),
        "headers": _headers(ex.request.headers),
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)],
        "headersSize": -1,
        "bodySize": ex.request.size,
    }
    if ex.request.size or req_ctype:
        post: dict = {"mimeType": req_ctype or "application/octet-stream", "text": ex.request.body}
        if req_ctype and req_ctype.startswith("application/x-www-form-urlencoded") and not ex.request.encoding:
            post["params"] = [{"name": k, "value": v} for k, v in parse_qsl(ex.request.body, keep_blank_values=True)]
        if ex.request.encoding:
            post["comment"] = "text is base64-encoded binary"
        request["postData"] = post

    resp = ex.response
    content: dict = {"size": resp.size if resp else 0, "mimeType": (resp.header("content-type") if resp else None)
                     or "x-unknown"}
    if resp is not None and resp.size:
        content["text"] = resp.body
        if resp.encoding:
            content["encoding"] = "base64"
    response = {
        "status": ex.status or 0,
        "statusText": _status_text(ex.status),
        "httpVersion": f"HTTP/{ex.http_version}" if resp else "",
        "cookies": _response_cookies(resp.headers) if resp else [],
        "headers": _headers(resp.headers) if resp else [],
        "content": content,
        "redirectURL": (resp.header("location") or "") if resp else "",
        "headersSize": -1,
        "bodySize": resp.size if resp else -1,
    }
    total = ex.duration_ms if ex.duration_ms is not None else -1
    har: dict = {
        "startedDateTime": iso(datetime.fromtimestamp(ex.received_at, UTC)),
        "time": max(total, 0),
        "request": request,
        "response": response,
        "cache": {},
        # The simulator only sees the server side: the whole duration is "wait" (time to answer).
        "timings": {"send": 0, "wait": max(total, 0), "receive": 0},
        "_service": ex.service,
        "_operation": ex.operation,
        "_journalId": ex.id,
    }
    notes = [f["description"] for f in ex.faults]
    if ex.error:
        notes.append(ex.error)
    if notes:
        har["comment"] = "; ".join(notes)
    if ex.faults:
        har["_faults"] = ex.faults
    if ex.run:
        har["_run"] = ex.run
    return har


def to_har(exchanges: Iterable[Exchange], *, base_urls: dict[str, str] | None = None, comment: str = "") -> dict:
    base_urls = base_urls or {}
    entries = [entry(e, base_urls.get(e.service, "")) for e in exchanges if e.protocol == "http"]
    entries.sort(key=lambda e: e["startedDateTime"])
    log: dict = {"version": "1.2", "creator": dict(CREATOR), "pages": [], "entries": entries}
    if comment:
        log["comment"] = comment
    return {"log": log}
