"""Who may use the control API (`/_bench/*`): not a web page of another origin, not another machine without the token.

- A request carrying a browser `Origin` is refused (403), unless that exact origin is allowed
  (`SimConfig.control_origins`, e.g. a console served by the bench): any page open in the tester's browser
  could otherwise POST `/_bench/reset` to 127.0.0.1 and wipe the bench. Command-line clients, the CLI and
  scenario runs send no `Origin`.
- On loopback, the `Host` must be a loopback name (403 otherwise): a DNS-rebinding page names its own host.
- Beyond loopback (`--host 0.0.0.0`), every control request needs `Authorization: Bearer <token>` (401
  otherwise); the token is generated in the data directory and read from there by the CLI and scenario runs.
  What a vendor installs or reads before having the token stays open: health, OpenAPI, the bench CA and CRL.
"""

from __future__ import annotations

import hmac
from typing import Any

from .service import SimConfig

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
PUBLIC_GETS = ("/_bench/health", "/_bench/openapi.json", "/_bench/pki/", "/_bench/mss/ca.pem")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def host_name(value: str) -> str:
    """`Host` without its port, lower case (`[::1]:8101` → `::1`)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(scope: dict[str, Any], config: SimConfig) -> tuple[int, str, list[tuple[str, str]]] | None:
    """(status, detail, extra headers) when this control request must be refused, else None."""
    origin = _header(scope, b"origin")
    if origin is not None and origin.rstrip("/") not in config.control_origins:
        return (403, f"control requests from a web page ({origin}) are refused: the control API is for the CLI, "
                     "scenario runs and tools on this machine", [])
    loopback = config.host in LOOPBACK_NAMES
    if loopback:
        host = _header(scope, b"host")
        if host is not None and host_name(host) not in LOOPBACK_NAMES:
            return (403, f"control requests must name the bench by a loopback address (Host: {host} refused)", [])
    token = config.control_token
    if token is None:
        return None
    if scope["method"] in ("GET", "HEAD") and scope["path"].startswith(PUBLIC_GETS):
        return None
    given = _header(scope, b"authorization") or ""
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return None
    detail = ("this bench listens beyond loopback: control requests need 'Authorization: Bearer <token>' (the token "
              "is in the data directory's control-token file, printed by `segur-bench up`)")
    if given:
        detail = "the control token is not this bench's (see the data directory's control-token file)"
    return (401, detail, [("www-authenticate", 'Bearer realm="segur-bench"')])
