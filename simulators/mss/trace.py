"""Journal entries and fault decisions for the SMTP and IMAP front ends.

One journal entry per SMTP command and per IMAP command (operation ``SMTP MAIL``, ``IMAP FETCH``…), with the
command line as request (secrets masked), the server's reply lines as response, the reply code as status
(SMTP code; IMAP: 200 OK, 400 NO, 500 BAD, None when nothing was answered) and the faults applied. Message
bodies (DATA, FETCH) are kept in the journal because the bench is a test tool; README.md says so, since the
real service must never trace message content (SC.MSS/CONF.17/18).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from simulators.core.faults import Decision, RequestFacts
from simulators.core.journal import Exchange, Message
from simulators.core.service import ServiceContext
from simulators.core.tls import tls_info

SECRET_MASK = "<masqué>"


def tls_of(transport: object) -> dict | None:
    """The TLS facts of a mail connection (STARTTLS done, or implicit TLS), None in clear."""
    get = getattr(transport, "get_extra_info", None)
    ssl_object = get("ssl_object") if get is not None else None
    return tls_info(ssl_object) if ssl_object is not None else None


def decide(ctx: ServiceContext, protocol: str, operation: str, line: bytes = b"",
           attrs: Callable[[], Mapping[str, str]] | None = None, tls: Mapping[str, Any] | None = None) -> Decision:
    try:
        # A mail client names no run: its client certificate, bound to a run, is what tells runs apart here.
        return ctx.faults.decide(RequestFacts(service=ctx.name, operation=operation, protocol=protocol,
                                              method=operation.split(" ", 1)[-1], body=line, attrs_loader=attrs,
                                              run=ctx.runs.run_of(tls=tls)))
    except Exception:  # a broken rule store must not take the mail service down
        ctx.logger.exception("fault decision failed for %s", operation)
        return Decision()


def record(
    ctx: ServiceContext,
    *,
    protocol: str,
    operation: str,
    received_at: float,
    request_headers: list[tuple[str, str]],
    request_body: bytes,
    reply: bytes | None,
    status: int | None,
    decision: Decision | None = None,
    client: str | None = None,
    server: str | None = None,
    error: str | None = None,
    response_headers: list[tuple[str, str]] = (),
    waited_s: float | None = None,
    tls: dict | None = None,
) -> None:
    try:
        run = ctx.runs.run_of(tls=tls)
        ctx.journal.submit(Exchange(
            id=uuid.uuid4().hex, service=ctx.name, protocol=protocol, operation=operation,
            received_at=received_at, responded_at=time.time() if reply is not None else None,
            method=operation.split(" ", 1)[-1], status=status,
            # the address the client connected to: which port a mail client chose (auto-configuration)
            url=f"{protocol}://{server}" if server else "",
            request=Message.of(request_headers, request_body),
            response=Message.of(list(response_headers), reply) if reply is not None else None,
            faults=[a.as_dict() for a in decision.applied] if decision else [],
            outcome=decision.outcome if decision else None, run=run, client=client, error=error,
            waited_ms=round(waited_s * 1000.0, 3) if waited_s else None, tls=tls,
        ))
    except Exception:
        ctx.logger.exception("journal write failed for %s", operation)
