"""Masking secrets in journal entries before they are recorded (issue 16).

Journal entries leave the machine in proof bundles; a service whose exchanges carry credentials (client secrets,
live tokens, session cookies) declares `ServiceSpec.redact`, a function of an `Exchange` applied by the journal
before it records the entry. `redact_http` is the usual one: it masks the named form fields, JSON members, query
parameters, the Authorization header and cookie values, leaving everything else byte for byte.

The setting `journal_secrets` of the service (`[settings.<service>]`) turns it off for debugging: "masque"
(default) or "clair".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, unquote_plus

from .journal import Exchange, Message

SETTING = "journal_secrets"
MODES = ("masque", "clair")
MASK = "***MASQUE***"  # ASCII: the value may sit in a cookie or a form body, which other tools parse

Redactor = Callable[[Exchange], Exchange]


def journal_redactor(redact: Redactor | None, settings: Mapping[str, Any], service: str) -> Redactor | None:
    """The redactor the journal applies: the service's (by default, credential headers only), unless its settings
    ask for secrets in clear."""
    mode = settings.get(SETTING, "masque")
    if mode not in MODES:
        raise ValueError(f"{service}: setting {SETTING} must be \"masque\" or \"clair\", got {mode!r}")
    return (redact or redact_credential_headers) if mode == "masque" else None


def masked(value: str, *, fingerprint: bool) -> str:
    """A token keeps a short SHA-256 fingerprint, so a reader can follow it from the answer that issued it to the
    requests that use it; a password-like secret keeps nothing (a fingerprint of a weak secret can be guessed)."""
    if not value:
        return value
    if not fingerprint:
        return MASK
    return f"***MASQUE:{hashlib.sha256(value.encode('utf-8', 'replace')).hexdigest()[:8]}***"


class _Names:
    def __init__(self, secrets: Collection[str], tokens: Collection[str]) -> None:
        self.secrets = frozenset(secrets)
        self.tokens = frozenset(tokens)
        names = "|".join(re.escape(n) for n in sorted(self.secrets | self.tokens))
        # A JSON member "name": "value" (no escaped quote in what we mask: tokens and secrets are plain ASCII).
        self.json = re.compile(rf'("(?:{names})"\s*:\s*")([^"\\]*)(")') if names else None

    def mask(self, name: str, value: str) -> str | None:
        """The masked value when `name` is one of ours, else None."""
        if name in self.secrets:
            return masked(value, fingerprint=False)
        if name in self.tokens:
            return masked(value, fingerprint=True)
        return None


def mask_pairs(text: str, names: _Names) -> str:
    """Mask `name=value` pairs of a query string or form body; other pairs stay as they were."""
    out = []
    for pair in text.split("&"):
        key, sep, value = pair.partition("=")
        new = names.mask(unquote_plus(key), unquote_plus(value)) if sep else None
        out.append(pair if new is None else f"{key}={new}")
    return "&".join(out)


def mask_url(url: str, names: _Names) -> str:
    head, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = query.partition("#")
    return head + "?" + mask_pairs(query, names) + hash_ + fragment


def mask_json(text: str, names: _Names) -> str:
    if names.json is None:
        return text
    return names.json.sub(lambda m: m.group(1) + (names.mask(m.group(1).split('"')[1], m.group(2)) or "")
                          + m.group(3), text)


def mask_authorization(value: str) -> str:
    scheme, _, credentials = value.strip().partition(" ")
    if not credentials:
        return masked(value, fingerprint=True)
    if scheme.lower() == "basic":
        # The client id is not a secret and says who authenticated; the secret goes.
        try:
            user, colon, _ = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return f"{scheme} {MASK}"
        return f"{scheme} {MASK} (client_id {unquote(user)})" if colon else f"{scheme} {MASK}"
    return f"{scheme} {masked(credentials.strip(), fingerprint=True)}"


def mask_cookies(value: str, *, set_cookie: bool) -> str:
    """Every cookie value: a browser sends the PSC page the cookies of every app on the same host (ports do not
    separate cookies), the reference LGC's session among them."""
    if set_cookie:  # name=value; Path=/; HttpOnly: only the first pair is the cookie
        first, sep, attrs = value.partition(";")
        name, eq, val = first.partition("=")
        return f"{name}={masked(val.strip(), fingerprint=True)}{sep}{attrs}" if eq else value
    parts = []
    for item in value.split(";"):
        name, eq, val = item.partition("=")
        parts.append(f"{name}={masked(val.strip(), fingerprint=True)}" if eq else item)
    return ";".join(parts)


def _headers(headers: list[tuple[str, str]], names: _Names) -> list[tuple[str, str]]:
    out = []
    for key, value in headers:
        low = key.lower()
        if low in ("authorization", "proxy-authorization"):
            value = mask_authorization(value)
        elif low == "cookie":
            value = mask_cookies(value, set_cookie=False)
        elif low == "set-cookie":
            value = mask_cookies(value, set_cookie=True)
        elif low in ("location", "referer", "content-location"):
            value = mask_url(value, names)
        out.append((key, value))
    return out


def _message(msg: Message, names: _Names) -> Message:
    try:
        text = msg.data.decode("utf-8")
    except UnicodeDecodeError:  # binary: nothing of ours is in it
        body = msg.data
    else:
        body = mask_json(mask_pairs(text, names), names).encode("utf-8")
    # `size` stays what crossed the wire.
    return Message(_headers(msg.headers, names), body, msg.truncated, msg.size)


def redact_http(ex: Exchange, *, secrets: Collection[str] = (), tokens: Collection[str] = ()) -> Exchange:
    """A copy of an HTTP exchange with `secrets` (masked whole) and `tokens` (masked, fingerprint kept) masked
    wherever they appear as form fields, query parameters or JSON members, and Authorization and cookie values
    masked. The exchange given is not changed (the front end may still use it)."""
    names = _Names(secrets, tokens)
    return replace(ex, url=mask_url(ex.url, names), request=_message(ex.request, names),
                   response=_message(ex.response, names) if ex.response is not None else None)



_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_NO_NAMES = _Names((), ())


def redact_credential_headers(ex: Exchange) -> Exchange:
    """The default of every service: Authorization and cookie values masked (a PSC access token sent to the DMP or
    ON as a Bearer header is as live as it is at PSC). Bodies are left alone, and an exchange without such headers
    is returned as is — the cost on a hot path is one look at the header names."""
    def carries(msg: Message | None) -> bool:
        return msg is not None and any(k.lower() in _CREDENTIAL_HEADERS for k, _ in msg.headers)

    if not (carries(ex.request) or carries(ex.response)):
        return ex
    return replace(ex, request=replace(ex.request, headers=_headers(ex.request.headers, _NO_NAMES)),
                   response=replace(ex.response, headers=_headers(ex.response.headers, _NO_NAMES))
                   if ex.response is not None else None)
