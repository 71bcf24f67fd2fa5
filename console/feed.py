"""The live journal: the console follows every simulator's `GET /_bench/journal/feed` and fans the new entries
out to the open pages (server-sent events).

Why follow a cursor rather than a stream from each simulator: a simulator's journal is written by several worker
processes into segment files that any read ingests, so a stream would be a polling loop inside the simulator,
holding one of its threads per open page. A cursor read is one index range scan that returns only what is new
(nothing when nothing happened); polling every 0.3 s puts an entry on the page within about half a second of its
answer. The feed's cursor is the order of journaling, not of reception: an exchange delayed 3 s is journaled
after faster ones received later, and `GET /_bench/journal?since=` would skip it.

The follower runs only while a page listens; it keeps the last entries (with their bodies) for the detail view.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .bench import BenchClient, BenchError

log = logging.getLogger("segur_bench.console")

POLL_S = 0.3
BACKLOG = 50  # entries per service shown to a page that opens (what happened just before)
KEEP = 2000  # entries kept with their bodies for the detail view
IDLE_STOP_S = 10.0  # the follower stops this long after the last page left


@dataclass
class Filters:
    service: str = ""
    run: str = ""
    operation: str = ""

    def match(self, summary: dict[str, Any]) -> bool:
        return ((not self.service or summary["service"] == self.service)
                and (not self.run or (summary.get("run") or "") == self.run)
                and (not self.operation or self.operation.lower() in (summary.get("operation") or "").lower()))


@dataclass(eq=False)
class Subscriber:
    filters: Filters
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=1000))


def summary_of(entry: dict[str, Any]) -> dict[str, Any]:
    """What a feed line shows (the bodies stay on the server until someone opens the entry)."""
    tls = entry.get("tls") or None
    cert = (tls or {}).get("client_cert") or None
    return {
        "key": f"{entry['service']}/{entry['id']}", "service": entry["service"], "id": entry["id"],
        "protocol": entry.get("protocol"), "operation": entry.get("operation"), "method": entry.get("method"),
        "path": urlsplit(entry.get("url") or "").path, "status": entry.get("status"),
        "received": entry.get("received"), "received_at": entry.get("received_at"),
        "duration_ms": entry.get("duration_ms"), "waited_ms": entry.get("waited_ms"),
        "faults": [f.get("description") or f.get("effect") for f in entry.get("faults") or []],
        "outcome": entry.get("outcome"), "run": entry.get("run"), "error": entry.get("error"),
        "tls": tls is not None, "client_cert": (cert or {}).get("subject") if isinstance(cert, dict) else None,
    }


class JournalFollower:
    def __init__(self, client: BenchClient, *, poll_s: float = POLL_S) -> None:
        self.client = client
        self.poll_s = poll_s
        self.entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.subscribers: set[Subscriber] = set()
        self.cursors: dict[str, str | None] = {}
        self.errors: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        self._idle_since: float | None = None

    # -------------------------------------------------------------- subscribers
    def subscribe(self, filters: Filters) -> tuple[Subscriber, list[dict[str, Any]]]:
        """A new listener and the entries already known that it wants (oldest first)."""
        sub = Subscriber(filters)
        self.subscribers.add(sub)
        self._idle_since = None
        if self._task is None or self._task.done():
            self.cursors = {}  # a fresh start shows the last entries, not everything since the last page left
            self._task = asyncio.create_task(self._run(), name="console-journal-follower")
        backlog = [summary_of(e) for e in self.entries.values()]
        backlog.sort(key=lambda s: s.get("received_at") or 0)
        return sub, [s for s in backlog if filters.match(s)]

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def entry(self, service: str, entry_id: str) -> dict[str, Any] | None:
        return self.entries.get(f"{service}/{entry_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # -------------------------------------------------------------- following
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.subscribers:
                self._idle_since = self._idle_since or loop.time()
                if loop.time() - self._idle_since > IDLE_STOP_S:
                    return
            started = loop.time()
            try:
                await asyncio.gather(*(self._poll(name) for name in self.client.services))
            except Exception:  # never let one bad answer end the feed
                log.exception("journal follower")
            await asyncio.sleep(max(0.05, self.poll_s - (loop.time() - started)))

    async def _poll(self, service: str) -> None:
        first = service not in self.cursors
        for _ in range(10):  # at most 10 pages per round: a flood does not starve the other services
            try:
                page = await self.client.journal_feed(service, self.cursors.get(service),
                                                      limit=BACKLOG if first else 200)
            except BenchError as exc:
                if self.errors.get(service) != exc.detail:
                    self.errors[service] = exc.detail
                    self._publish({"type": "service", "service": service, "error": exc.detail})
                return
            if service in self.errors:
                del self.errors[service]
                self._publish({"type": "service", "service": service, "error": None})
            self.cursors[service] = page["cursor"]
            for entry in page["entries"]:
                key = f"{service}/{entry['id']}"
                self.entries[key] = entry
                self.entries.move_to_end(key)
                if len(self.entries) > KEEP:
                    self.entries.popitem(last=False)
                self._publish({"type": "entry", "entry": summary_of(entry)})
            if not page.get("more") or first:
                return

    def _publish(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            if event["type"] == "entry" and not sub.filters.match(event["entry"]):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:  # a page that stopped reading: it reloads the backlog when it reconnects
                self.subscribers.discard(sub)


# ------------------------------------------------------------------ the detail of one entry


def _header(message: dict[str, Any] | None, name: str) -> str:
    for key, value in (message or {}).get("headers") or []:
        if key.lower() == name:
            return value
    return ""


def pretty_body(message: dict[str, Any] | None) -> dict[str, Any]:
    """The body of one side of an exchange for reading: JSON and XML indented, binary summarised."""
    if not message:
        return {"kind": "none", "text": ""}
    body = message.get("body") or ""
    ctype = _header(message, "content-type").lower()
    if message.get("encoding") == "base64":
        size = len(base64.b64decode(body)) if body else 0
        return {"kind": "binary", "text": f"(contenu binaire, {size} octets, {ctype or 'type inconnu'})"}
    stripped = body.strip()
    if stripped[:1] in "{[" and ("json" in ctype or not ctype):
        with contextlib.suppress(ValueError):
            return {"kind": "json", "text": json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)}
    if stripped.startswith("<") and "multipart" not in ctype:
        with contextlib.suppress(Exception):
            from lxml import etree

            from simulators.core.xmlsafe import parse_xml

            root = parse_xml(stripped.encode("utf-8"))
            etree.indent(root, space="  ")
            return {"kind": "xml", "text": etree.tostring(root, encoding="unicode")}
    return {"kind": "text", "text": body}


def detail_of(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: entry.get(k) for k in ("id", "service", "protocol", "operation", "method", "url", "http_version",
                                     "status", "received", "responded", "duration_ms", "waited_ms", "faults",
                                     "outcome", "run", "correlation", "client", "error", "tls")},
        "request": {"headers": (entry.get("request") or {}).get("headers") or [],
                    "size": (entry.get("request") or {}).get("size"),
                    "truncated": (entry.get("request") or {}).get("truncated"),
                    "body": pretty_body(entry.get("request"))},
        "response": None if entry.get("response") is None else {
            "headers": entry["response"].get("headers") or [], "size": entry["response"].get("size"),
            "truncated": entry["response"].get("truncated"), "body": pretty_body(entry["response"])},
    }
