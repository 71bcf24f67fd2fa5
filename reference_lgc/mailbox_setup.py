"""The MSSanté servers the LGC uses: those typed in its configuration, or those the operator's auto-configuration
document gave (SC.MSS/CONF.04; services/mss_autoconfig.py), kept in the base once read. The document is read when
the user asks for it (Messagerie page) and, with ``auto_config = "true"`` in ``[services.mss.extra]``, before the
first connection when none was read yet."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import UTC, datetime

from .db import Database
from .services.context import Endpoint
from .services.mss_autoconfig import MailServers

KEY = "mss_autoconfig"


def stored(db: Database) -> tuple[MailServers, str] | None:
    """The servers read last and when."""
    row = db.one("SELECT value FROM settings WHERE key=?", (KEY,))
    if row is None:
        return None
    data = json.loads(row["value"])
    at = data.pop("at", "")
    return MailServers(**data), at


def store(db: Database, servers: MailServers) -> None:
    db.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
               (KEY, json.dumps({**asdict(servers), "at": datetime.now(UTC).isoformat(timespec="seconds")})))


def wanted(endpoint: Endpoint) -> bool:
    return endpoint.extra.get("auto_config", "").strip().lower() in ("true", "1", "oui")


def endpoint_for(db: Database, service: str, endpoint: Endpoint) -> Endpoint:
    """The MSSanté endpoint with the auto-configured servers, once read; any other endpoint as it is."""
    found = stored(db) if service == "mss" else None
    if found is None:
        return endpoint
    return with_servers(endpoint, found[0])


def with_servers(endpoint: Endpoint, servers: MailServers) -> Endpoint:
    return replace(endpoint, extra={**endpoint.extra, **servers.as_extra()})
