"""Slow and greedy clients: read deadlines and a connection cap for the HTTP listeners.

uvicorn bounds only the wait *between* requests (its keep-alive timeout). A client that sends half a request
line, or a body at one byte every few seconds, holds its connection, its buffers and — for a Flask route — a
worker thread for ever, and a hundred such connections (slowloris) take a simulator off a shared bench.

The model is Apache's mod_reqtimeout (``header=20 body=20,MinRate=500``), whose semantics operators know:

* **headers**: the request line and headers must be complete ``header_timeout_s`` after the request's first
  byte;
* **body**: the body must be complete ``body_timeout_s`` after the headers, plus one second for every
  ``body_min_rate`` bytes received — a large upload at a decent rate always finishes, a trickle does not;
* **idle**: a connection that has not started a request is closed after ``idle_timeout_s`` (uvicorn's
  keep-alive timeout, armed from the connection's start as well, not only between requests);
* **connections**: above ``max_connections`` open connections in a worker process, a new connection is
  answered ``503`` with ``Retry-After`` and closed at once, before it can hold anything.

A request that misses its deadline is answered ``408 Request Timeout`` (RFC 9110 §15.5.9) with
``Connection: close``, and the connection is closed. The checks cost one timer per request that is *not*
received in a single read, and nothing on a request that arrives whole (the common case: the timer is armed
only when a read ends in the middle of a request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

log = logging.getLogger("segur_bench.server")


@dataclass(frozen=True)
class ReadLimits:
    """Deadlines and caps of one simulator's HTTP listeners (see the module docstring)."""

    header_timeout_s: float = 20.0
    body_timeout_s: float = 20.0
    body_min_rate: int = 500  # bytes per second that extend the body deadline by one second
    idle_timeout_s: float = 30.0
    max_connections: int = 1000  # per worker process

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be above 0 and at most 3600 seconds")
        if self.body_min_rate < 1:
            raise ValueError("body_min_rate must be at least 1 byte per second")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


def _answer(status: bytes, text: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(text)).encode() + b"\r\nconnection: close\r\n" + extra + b"\r\n" + text)


REQUEST_TIMEOUT = _answer(b"408 Request Timeout", "requête incomplète dans le délai imparti\n".encode())
TOO_MANY_CONNECTIONS = _answer(b"503 Service Unavailable",
                               "trop de connexions ouvertes sur ce simulateur ; réessayez\n".encode(),
                               b"retry-after: 1\r\n")

_IDLE, _HEAD, _BODY = 0, 1, 2


class ReadDeadline:
    """The state of one connection's request being read, and the timer that enforces its deadline.

    The protocol tells it where the parser is (``head_started``, ``body_started``, ``body_received``,
    ``complete``) and calls ``after_read`` at the end of every read; ``on_timeout`` is called when the
    request is late."""

    __slots__ = ("_body_bytes", "_phase", "_started", "_timer", "limits", "loop", "on_timeout", "paused")

    def __init__(self, limits: ReadLimits, loop: asyncio.AbstractEventLoop, on_timeout) -> None:
        self.limits = limits
        self.loop = loop
        self.on_timeout = on_timeout
        self.paused = lambda: False  # flow control paused reading: the app, not the client, is slow
        self._phase = _IDLE
        self._started = 0.0
        self._body_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def head_started(self) -> None:
        self._phase, self._started = _HEAD, time.monotonic()

    def body_started(self) -> None:
        self._phase, self._started, self._body_bytes = _BODY, time.monotonic(), 0

    def body_received(self, size: int) -> None:
        self._body_bytes += size

    def complete(self) -> None:
        self._phase = _IDLE
        self.cancel()

    def after_read(self) -> None:
        if self._phase != _IDLE and self._timer is None:
            self._arm(self._deadline())

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline(self) -> float:
        limits = self.limits
        if self._phase == _HEAD:
            return self._started + limits.header_timeout_s
        return self._started + limits.body_timeout_s + self._body_bytes / limits.body_min_rate

    def _arm(self, deadline: float) -> None:
        self._timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._check)

    def _check(self) -> None:
        self._timer = None
        if self._phase == _IDLE:
            return
        now = time.monotonic()
        if self.paused():  # the app has not drained what it has: not the client's fault, a fresh window
            self._started, self._body_bytes = now, 0
            self._arm(now + self.limits.body_timeout_s)
            return
        deadline = self._deadline()
        if now < deadline:  # the body deadline moved with what arrived since the timer was armed
            self._arm(deadline)
            return
        phase = "headers" if self._phase == _HEAD else f"body ({self._body_bytes} bytes received)"
        self._phase = _IDLE
        self.on_timeout(phase)
