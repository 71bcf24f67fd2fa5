"""State of the Pro Santé Connect simulator, kept in the service's SQLite store.

Everything that must be shared by several worker processes lives here: the signing key (generated once,
at first start), the registered clients, the authentication sessions, the authorization codes, the issued
tokens and the CIBA requests. Times are epoch seconds of the *simulated* clock (`ctx.clock.now()`), so a
test that advances the clock makes codes, tokens and CIBA requests expire.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import KeySet, RSAKey

from simulators.core.control import StateConflict
from simulators.core.service import ServiceContext
from simulators.personas import Personas, Professional, load_personas

log = logging.getLogger("segur_bench.psc")

BASE_PATH = "/auth/realms/esante-wallet"

ACR = "eidas1"
IDP = "PSC"
MEANS = {"CPS": "Carte CPS", "e-CPS": "Application e-CPS"}
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SCOPES = ("openid", "scope_all", "rpps", "eidas1", "eidas2", "profile", "email", "offline_access")

GRANT_CIBA = "urn:openid:params:grant-type:ciba"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"

DEFAULT_CLIENT = {
    "client_id": "segur-bench-lgc",
    "client_secret": "segur-bench-lgc-secret",
    "redirect_uris": ["http://127.0.0.1:8000/auth/callback", "http://localhost:8000/auth/callback"],
    "post_logout_redirect_uris": [
        "http://127.0.0.1:8000/", "http://localhost:8000/",
        "http://127.0.0.1:8000/auth/logged-out", "http://localhost:8000/auth/logged-out",
    ],
    "name": "LGC de référence du banc",
}

DEFAULTS: dict[str, Any] = {
    "access_token_lifetime_s": 300,  # PSC access tokens live ~4–5 min (protocols.md §3.2)
    "refresh_token_lifetime_s": 1800,
    "id_token_lifetime_s": 300,
    "code_lifetime_s": 60,
    "api_token_lifetime_s": 4 * 3600,  # "4 h for the conformity-test API" (protocols.md §3.5)
    "api_audience": "api-pro-sante-connectee",  # token exchange without `audience` / `resource`
    # RFC 8693 targets this PSC accepts; anything else is `invalid_target`. The defaults are the audiences the
    # bench's token-checking services are configured with (`psc_audience` of dmp / on, `token_audience` of mss).
    "token_exchange_audiences": ["api-pro-sante-connectee", "api-dmp", "api-on"],
    "ciba_expires_in_s": 120,
    "ciba_interval_s": 5,
    "ciba_auto_approve_s": 3,  # the simulated phone says yes after 3 s; None: it never answers by itself
}

_MIGRATIONS = [
    """
    CREATE TABLE psc_keys (id INTEGER PRIMARY KEY CHECK (id = 1), jwk TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE psc_clients (client_id TEXT PRIMARY KEY, metadata TEXT NOT NULL, origin TEXT NOT NULL);
    CREATE TABLE psc_sessions (
        id TEXT PRIMARY KEY, national_id TEXT NOT NULL, means TEXT NOT NULL, auth_time REAL NOT NULL,
        ended_at REAL
    );
    CREATE TABLE psc_codes (
        code TEXT PRIMARY KEY, client_id TEXT NOT NULL, national_id TEXT NOT NULL, session_id TEXT NOT NULL,
        redirect_uri TEXT, scope TEXT NOT NULL, nonce TEXT, code_challenge TEXT, code_challenge_method TEXT,
        auth_time REAL NOT NULL, expires_at REAL NOT NULL
    );
    CREATE TABLE psc_tokens (
        access_token TEXT PRIMARY KEY, refresh_token TEXT UNIQUE, kind TEXT NOT NULL, client_id TEXT NOT NULL,
        national_id TEXT NOT NULL, session_id TEXT NOT NULL, scope TEXT NOT NULL, audience TEXT,
        issued_at REAL NOT NULL, expires_at REAL NOT NULL, refresh_expires_at REAL, auth_time REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX psc_tokens_session ON psc_tokens (session_id);
    CREATE TABLE psc_ciba (
        auth_req_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, national_id TEXT NOT NULL, scope TEXT NOT NULL,
        binding_message TEXT, channel TEXT, created_at REAL NOT NULL, expires_at REAL NOT NULL,
        interval_s REAL NOT NULL, auto_at REAL, auto_decision TEXT, decision TEXT, decided_at REAL,
        last_poll REAL, consumed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE psc_overrides (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE psc_jti (jti TEXT PRIMARY KEY, seen_at REAL NOT NULL)
    """,
    # Issue 15: used codes are kept (a replayed code revokes what it gave, RFC 6749 §4.1.2), every token row knows
    # the grant it comes from (code, CIBA request; refreshed and exchanged tokens inherit it), and an access token
    # can be revoked alone (RFC 7009) while its refresh token lives on.
    """
    ALTER TABLE psc_codes ADD COLUMN used_at REAL;
    ALTER TABLE psc_tokens ADD COLUMN grant_id TEXT;
    ALTER TABLE psc_tokens ADD COLUMN access_revoked INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX psc_tokens_grant ON psc_tokens (grant_id)
    """,
]


@dataclass
class Client:
    """A registered relying party (authlib's ClientMixin)."""

    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    jwks: dict | None = None
    name: str = ""
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Client:
        if not isinstance(meta, Mapping) or not isinstance(meta.get("client_id"), str) or not meta["client_id"]:
            raise ValueError("a client needs a non-empty string 'client_id'")
        redirect_uris = meta.get("redirect_uris", [])
        if not isinstance(redirect_uris, list) or not all(isinstance(u, str) for u in redirect_uris):
            raise ValueError(f"client {meta['client_id']}: 'redirect_uris' must be a list of URLs")
        post = meta.get("post_logout_redirect_uris")
        if post is None:  # like Keycloak's "+": the redirect URIs and their origins
            post = list(redirect_uris) + sorted({_origin(u) + "/" for u in redirect_uris})
        secret = meta.get("client_secret")
        if secret is not None and not isinstance(secret, str):
            raise ValueError(f"client {meta['client_id']}: 'client_secret' must be a string")
        jwks = meta.get("jwks")
        if jwks is not None:
            try:
                KeySet.import_key_set(jwks)
            except Exception as exc:
                raise ValueError(f"client {meta['client_id']}: 'jwks' is not a valid JWK set ({exc})") from None
        if secret is None and jwks is None and not meta.get("public"):
            raise ValueError(f"client {meta['client_id']}: give a 'client_secret', a 'jwks' or \"public\": true")
        return cls(meta["client_id"], secret, list(redirect_uris), list(post), jwks, str(meta.get("name", "")),
                   dict(meta))

    # -- authlib ClientMixin
    @property
    def client_metadata(self) -> dict:
        return {"post_logout_redirect_uris": self.post_logout_redirect_uris}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret or "")

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method == "none":
            return self.client_secret is None and self.jwks is None
        if method in ("client_secret_basic", "client_secret_post"):
            return self.client_secret is not None
        if method == "private_key_jwt":
            return self.jwks is not None
        return False

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token", GRANT_CIBA, GRANT_TOKEN_EXCHANGE)

    def public_view(self) -> dict:
        return {"client_id": self.client_id, "name": self.name, "redirect_uris": self.redirect_uris,
                "post_logout_redirect_uris": self.post_logout_redirect_uris,
                "auth_methods": [m for m in (*AUTH_METHODS, "none") if self.check_endpoint_auth_method(m, "token")]}


def code_grant_id(code: str) -> str:
    return "code:" + code


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class User:
    """The authenticated professional, as authlib's grants carry it (request.user)."""

    professional: Professional
    session_id: str
    auth_time: int
    means: str = "CPS"

    def get_user_id(self) -> str:
        return self.professional.national_id


@dataclass
class AuthCode:
    """An authorization code row (authlib's AuthorizationCodeMixin + OIDC AuthorizationCodeMixin)."""

    row: sqlite3.Row

    def get_redirect_uri(self) -> str | None:
        return self.row["redirect_uri"]

    def get_scope(self) -> str:
        return self.row["scope"]

    def get_nonce(self) -> str | None:
        return self.row["nonce"]

    def get_auth_time(self) -> int:
        return int(self.row["auth_time"])

    def get_acr(self) -> str:
        return ACR

    def get_amr(self) -> list[str] | None:
        return None

    def get_code_challenge(self) -> str | None:
        return self.row["code_challenge"]

    def get_code_challenge_method(self) -> str | None:
        return self.row["code_challenge_method"]


@dataclass
class Token:
    """An issued token row (authlib's TokenMixin)."""

    row: sqlite3.Row
    now: float
    as_refresh: bool = False  # looked up by its refresh token (introspection then reports the refresh token)

    def check_client(self, client: Client) -> bool:
        return self.row["client_id"] == client.client_id

    def get_scope(self) -> str:
        return self.row["scope"]

    def get_expires_in(self) -> int:
        return int(self.row["expires_at"] - self.row["issued_at"])

    def is_expired(self) -> bool:
        if self.as_refresh:
            return self.is_refresh_expired()
        return self.now >= self.row["expires_at"]

    def is_refresh_expired(self) -> bool:
        exp = self.row["refresh_expires_at"]
        return exp is None or self.now >= exp

    def is_revoked(self) -> bool:
        if self.as_refresh:
            return bool(self.row["revoked"])
        return bool(self.row["revoked"] or self.row["access_revoked"])

    def get_client(self) -> Any:
        return None

    def get_user(self) -> Any:
        return None


class PscModel:
    def __init__(self, ctx: ServiceContext, personas: Personas | None = None) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.personas = personas or load_personas()
        self.store.migrate("psc", _MIGRATIONS)
        self._key: RSAKey | None = None
        self.seed_clients()

    # ---------------------------------------------------------------------------------- settings
    def setting(self, name: str) -> Any:
        row = self.store.execute("SELECT value FROM psc_overrides WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return json.loads(row["value"])
        return self.ctx.config.settings.get(name, DEFAULTS.get(name))

    def override(self, name: str, value: Any) -> None:
        self.store.execute("INSERT OR REPLACE INTO psc_overrides (name, value) VALUES (?, ?)",
                           (name, json.dumps(value)))

    def now(self) -> float:
        return self.ctx.clock.now().timestamp()

    # ---------------------------------------------------------------------------------- signing key
    @property
    def key(self) -> RSAKey:
        if self._key is None:
            row = self.store.execute("SELECT jwk FROM psc_keys WHERE id = 1").fetchone()
            if row is None:
                key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True)
                key.ensure_kid()
                # Several workers may race at first start: the first INSERT wins, everybody reads it back.
                self.store.execute("INSERT OR IGNORE INTO psc_keys (id, jwk, created_at) VALUES (1, ?, ?)",
                                   (json.dumps(key.as_dict(private=True)), self.now()))
                row = self.store.execute("SELECT jwk FROM psc_keys WHERE id = 1").fetchone()
            self._key = RSAKey.import_key(json.loads(row["jwk"]))
        return self._key

    def public_jwks(self) -> dict:
        public = self.key.as_dict(private=False)
        public.update({"use": "sig", "alg": "RS256", "kid": self.key.kid})
        return {"keys": [public]}

    # ---------------------------------------------------------------------------------- clients
    def seed_clients(self) -> None:
        configured = self.ctx.config.settings.get("clients")
        metas = [DEFAULT_CLIENT] if configured is None else list(configured)
        keep_default = configured is not None and self.ctx.config.settings.get("default_client", True)
        if keep_default and all(m.get("client_id") != DEFAULT_CLIENT["client_id"] for m in metas):
            metas.insert(0, DEFAULT_CLIENT)
        clients = [Client.from_metadata(m) for m in metas]
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM psc_clients WHERE origin = 'config'")
            for c in clients:
                conn.execute("INSERT OR REPLACE INTO psc_clients (client_id, metadata, origin) VALUES (?, ?, 'config')",
                             (c.client_id, json.dumps(c.metadata)))

    def add_clients(self, metas: Sequence[Any], *, replace: bool = False) -> list[Client]:
        """Register clients at run time, all or none. A client_id already registered with other metadata is a
        StateConflict unless `replace` (issue 16: the control API could silently swap the LGC's secret and redirect
        URIs); registering the very same metadata again changes nothing and is accepted."""
        clients = [Client.from_metadata(m) for m in metas]
        ids = [c.client_id for c in clients]
        if len(set(ids)) != len(ids):
            raise ValueError(f"clients: client_id given twice ({sorted({i for i in ids if ids.count(i) > 1})})")
        with self.store.transaction() as conn:  # check and write in one transaction: workers share the table
            existing = {}
            for c in clients:
                row = conn.execute("SELECT metadata FROM psc_clients WHERE client_id = ?", (c.client_id,)).fetchone()
                if row is not None and json.loads(row["metadata"]) != c.metadata:
                    existing[c.client_id] = row
            if existing and not replace:
                raise StateConflict(
                    f"client_id {', '.join(sorted(existing))} already registered with other metadata: not replaced. "
                    'Send {"clients": [...], "replace": true} to replace it (POST /_bench/reset restores the '
                    "configured clients)")
            for c in clients:
                conn.execute("INSERT OR REPLACE INTO psc_clients (client_id, metadata, origin) VALUES (?, ?, 'state')",
                             (c.client_id, json.dumps(c.metadata)))
        for client_id in sorted(existing):  # never the secret: the log may be shared
            log.warning("PSC client %s replaced through the control API (secret, keys and redirect URIs may have "
                        "changed)", client_id)
        return clients

    def client(self, client_id: str | None) -> Client | None:
        if not client_id:
            return None
        row = self.store.execute("SELECT metadata FROM psc_clients WHERE client_id = ?", (client_id,)).fetchone()
        return Client.from_metadata(json.loads(row["metadata"])) if row else None

    def clients(self) -> list[Client]:
        rows = self.store.query("SELECT metadata FROM psc_clients ORDER BY client_id")
        return [Client.from_metadata(json.loads(r["metadata"])) for r in rows]

    def remember_jti(self, jti: str) -> bool:
        """True the first time a client-assertion jti is seen (replay protection for private_key_jwt)."""
        cur = self.store.execute("INSERT OR IGNORE INTO psc_jti (jti, seen_at) VALUES (?, ?)", (jti, self.now()))
        return cur.rowcount == 1

    # ---------------------------------------------------------------------------------- people & sessions
    def professional(self, national_id: str | None) -> Professional | None:
        return self.personas.professional_by_national_id((national_id or "").strip()) if national_id else None

    def open_session(self, national_id: str, means: str) -> User:
        sid = secrets.token_urlsafe(16)
        auth_time = int(self.now())
        self.store.execute("INSERT INTO psc_sessions (id, national_id, means, auth_time) VALUES (?, ?, ?, ?)",
                           (sid, national_id, means, auth_time))
        return User(self.professional(national_id), sid, auth_time, means)  # type: ignore[arg-type]

    def reauthenticate(self, session_id: str, means: str) -> User | None:
        """A new authentication inside an existing session (max_age, prompt=login): same sid, new auth_time."""
        self.store.execute("UPDATE psc_sessions SET auth_time = ?, means = ? WHERE id = ? AND ended_at IS NULL",
                           (int(self.now()), means, session_id))
        return self.session_user(session_id)

    def session_user(self, session_id: str | None) -> User | None:
        if not session_id:
            return None
        row = self.store.execute("SELECT * FROM psc_sessions WHERE id = ? AND ended_at IS NULL",
                                 (session_id,)).fetchone()
        if row is None:
            return None
        pro = self.professional(row["national_id"])
        return User(pro, row["id"], int(row["auth_time"]), row["means"]) if pro else None

    def end_session(self, session_id: str) -> int:
        """End the session and revoke every token issued in it; returns the number of tokens revoked."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE psc_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                         (self.now(), session_id))
            cur = conn.execute("UPDATE psc_tokens SET revoked = 1 WHERE session_id = ? AND revoked = 0", (session_id,))
        return cur.rowcount

    # ---------------------------------------------------------------------------------- codes
    def save_code(self, code: str, client_id: str, user: User, data: Mapping[str, Any]) -> None:
        self.store.execute(
            "INSERT INTO psc_codes (code, client_id, national_id, session_id, redirect_uri, scope, nonce,"
            " code_challenge, code_challenge_method, auth_time, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (code, client_id, user.professional.national_id, user.session_id, data.get("redirect_uri"),
             data.get("scope") or "", data.get("nonce"), data.get("code_challenge"),
             data.get("code_challenge_method"), user.auth_time, self.now() + float(self.setting("code_lifetime_s"))),
        )

    def code(self, code: str, client_id: str) -> AuthCode | None:
        """A live code; a code presented again after use revokes every token issued from it (RFC 6749 §4.1.2)."""
        row = self.store.execute("SELECT * FROM psc_codes WHERE code = ? AND client_id = ?",
                                 (code, client_id)).fetchone()
        if row is None:
            return None
        if row["used_at"] is not None:
            self.revoke_grant(code_grant_id(code))
            return None
        if self.now() >= row["expires_at"]:
            return None
        return AuthCode(row)

    def claim_code(self, code: str) -> bool:
        """Mark a code used, once (False if another request did first). The row is kept, not deleted, so that a
        replay can be recognised; reset() forgets it."""
        cur = self.store.execute("UPDATE psc_codes SET used_at = ? WHERE code = ? AND used_at IS NULL",
                                 (self.now(), code))
        return cur.rowcount == 1

    def code_user(self, code: AuthCode) -> User | None:
        pro = self.professional(code.row["national_id"])
        return User(pro, code.row["session_id"], int(code.row["auth_time"])) if pro else None

    # ---------------------------------------------------------------------------------- tokens
    def save_token(self, *, access_token: str, refresh_token: str | None, kind: str, client_id: str, user: User,
                   scope: str, audience: str | None, issued_at: float, expires_at: float,
                   refresh_expires_at: float | None, grant_id: str | None) -> None:
        self.store.execute(
            "INSERT INTO psc_tokens (access_token, refresh_token, kind, client_id, national_id, session_id, scope,"
            " audience, issued_at, expires_at, refresh_expires_at, auth_time, grant_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (access_token, refresh_token, kind, client_id, user.professional.national_id, user.session_id, scope,
             audience, issued_at, expires_at, refresh_expires_at, user.auth_time, grant_id),
        )

    def token(self, value: str, hint: str | None = None) -> Token | None:
        """Look a token up; the hint only orders the search (RFC 7009 §2.1, RFC 7662 §2.1: a server that cannot
        find the token with the hint MUST extend its search to its other token types). Callers that need one kind
        (refresh grant, userinfo, logout) check `as_refresh`."""
        kinds = ("refresh_token", "access_token") if hint == "refresh_token" else ("access_token", "refresh_token")
        for kind in kinds:
            row = self.store.execute(f"SELECT * FROM psc_tokens WHERE {kind} = ?", (value,)).fetchone()
            if row is not None:
                return Token(row, self.now(), kind == "refresh_token")
        return None

    def token_user(self, token: Token) -> User | None:
        pro = self.professional(token.row["national_id"])
        return User(pro, token.row["session_id"], int(token.row["auth_time"])) if pro else None

    def revoke_grant(self, grant_id: str) -> int:
        """Revoke every token issued from one grant (code, CIBA request), refreshed and exchanged ones included."""
        cur = self.store.execute("UPDATE psc_tokens SET revoked = 1 WHERE grant_id = ? AND revoked = 0", (grant_id,))
        return cur.rowcount

    def revoke(self, token: Token) -> None:
        """RFC 7009: a refresh token takes the access tokens of its grant with it (§2.1 SHOULD); an access token
        goes alone, its refresh token still works (like Keycloak's revocation of an access token)."""
        if token.as_refresh:
            if token.row["grant_id"]:
                self.revoke_grant(token.row["grant_id"])
            self.store.execute("UPDATE psc_tokens SET revoked = 1 WHERE access_token = ?", (token.row["access_token"],))
        else:
            self.store.execute("UPDATE psc_tokens SET access_revoked = 1 WHERE access_token = ?",
                               (token.row["access_token"],))

    def revoke_refresh(self, refresh_token: str) -> None:
        self.store.execute("UPDATE psc_tokens SET refresh_token = NULL, refresh_expires_at = NULL"
                           " WHERE refresh_token = ?", (refresh_token,))

    # ---------------------------------------------------------------------------------- CIBA
    def create_ciba(self, client_id: str, national_id: str, scope: str, binding_message: str | None,
                    channel: str | None, outcome: str | None) -> dict:
        now = self.now()
        auth_req_id = secrets.token_urlsafe(24)
        expires_in = int(self.setting("ciba_expires_in_s"))
        interval = int(self.setting("ciba_interval_s"))
        delay = self.setting("ciba_auto_approve_s")
        auto_decision = "approve"
        if outcome == "psc.ciba-refus":
            auto_decision, delay = "refuse", delay if delay is not None else 1
        elif outcome == "psc.ciba-expire":
            delay = None
        auto_at = now + float(delay) if delay is not None else None
        self.store.execute(
            "INSERT INTO psc_ciba (auth_req_id, client_id, national_id, scope, binding_message, channel, created_at,"
            " expires_at, interval_s, auto_at, auto_decision) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (auth_req_id, client_id, national_id, scope, binding_message, channel, now, now + expires_in, interval,
             auto_at, auto_decision),
        )
        return {"auth_req_id": auth_req_id, "expires_in": expires_in, "interval": interval}

    def ciba(self, auth_req_id: str) -> sqlite3.Row | None:
        return self.store.execute("SELECT * FROM psc_ciba WHERE auth_req_id = ?", (auth_req_id,)).fetchone()

    @staticmethod
    def ciba_status(row: sqlite3.Row, now: float) -> tuple[str, float | None]:
        """(status, decided_at): status among pending, approve, refuse, expired, consumed.

        Past its expiry an auth_req_id is dead whatever the user answered (CIBA Core §11 `expired_token`: "The
        auth_req_id has expired. The Client will need to make a new Authentication Request.")."""
        if row["consumed"]:
            return "consumed", row["decided_at"]
        if now >= row["expires_at"]:
            return "expired", None
        if row["decision"]:
            return row["decision"], row["decided_at"]
        auto_at = row["auto_at"]
        if auto_at is not None and auto_at <= now:
            return row["auto_decision"], auto_at
        return "pending", None

    def decide_ciba(self, auth_req_id: str, decision: str) -> dict:
        if decision not in ("approve", "refuse"):
            raise ValueError("ciba.decision must be 'approve' or 'refuse'")
        row = self.ciba(auth_req_id)
        if row is None:
            raise ValueError(f"no CIBA request with auth_req_id {auth_req_id!r}")
        status, _ = self.ciba_status(row, self.now())
        if status != "pending":
            raise ValueError(f"CIBA request {auth_req_id} is no longer pending (status: {status})")
        self.store.execute("UPDATE psc_ciba SET decision = ?, decided_at = ? WHERE auth_req_id = ?",
                           (decision, self.now(), auth_req_id))
        return self.ciba_view(self.ciba(auth_req_id))  # type: ignore[arg-type]

    def poll_ciba(self, auth_req_id: str, at: float) -> None:
        self.store.execute("UPDATE psc_ciba SET last_poll = ? WHERE auth_req_id = ?", (at, auth_req_id))

    def consume_ciba(self, auth_req_id: str) -> bool:
        cur = self.store.execute("UPDATE psc_ciba SET consumed = 1 WHERE auth_req_id = ? AND consumed = 0",
                                 (auth_req_id,))
        return cur.rowcount == 1

    def ciba_view(self, row: sqlite3.Row) -> dict:
        status, _ = self.ciba_status(row, self.now())
        pro = self.professional(row["national_id"])
        return {
            "auth_req_id": row["auth_req_id"], "client_id": row["client_id"], "national_id": row["national_id"],
            "professional": pro.display_name if pro else None, "binding_message": row["binding_message"],
            "channel": row["channel"], "scope": row["scope"], "status": status,
            "expires_in": max(0, int(row["expires_at"] - self.now())),
        }

    def ciba_requests(self, only_pending: bool = False) -> list[dict]:
        views = [self.ciba_view(r) for r in self.store.query("SELECT * FROM psc_ciba ORDER BY created_at DESC")]
        return [v for v in views if v["status"] == "pending"] if only_pending else views

    # ---------------------------------------------------------------------------------- control API
    def state(self) -> dict:
        now = self.now()
        count = lambda sql: self.store.execute(sql, (now,)).fetchone()[0]  # noqa: E731
        return {
            "clients": [c.public_view() for c in self.clients()],
            "sessions_active": self.store.execute("SELECT COUNT(*) FROM psc_sessions WHERE ended_at IS NULL")
            .fetchone()[0],
            "tokens_active": count("SELECT COUNT(*) FROM psc_tokens WHERE revoked = 0 AND access_revoked = 0"
                                   " AND expires_at > ?"),
            "ciba": self.ciba_requests(),
            "ciba_auto_approve_s": self.setting("ciba_auto_approve_s"),
            "kid": self.key.kid,
        }

    def apply(self, body: Any) -> dict:
        if not isinstance(body, dict) or not body:
            raise ValueError('expected {"ciba": {"auth_req_id": "…", "decision": "approve"|"refuse"}}, '
                             '{"clients": [{…}]} or {"ciba_auto_approve_s": <seconds>|null}')
        unknown = set(body) - {"ciba", "clients", "replace", "ciba_auto_approve_s"}
        if unknown:
            raise ValueError(f"unknown state field(s) {sorted(unknown)}; expected ciba, clients (with replace), "
                             "ciba_auto_approve_s")
        replace = body.get("replace", False)
        if not isinstance(replace, bool):
            raise ValueError("replace must be true or false")
        if "replace" in body and "clients" not in body:
            raise ValueError("replace only applies to clients")
        value = body.get("ciba_auto_approve_s")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ValueError("ciba_auto_approve_s must be a number of seconds ≥ 0, or null (never)")
        if "clients" in body:  # first: a conflict (409) leaves everything else unchanged too
            if not isinstance(body["clients"], list):
                raise ValueError("clients must be a list of client objects")
            self.add_clients(body["clients"], replace=replace)
        if "ciba_auto_approve_s" in body:
            self.override("ciba_auto_approve_s", value)
        if "ciba" in body:
            items = body["ciba"] if isinstance(body["ciba"], list) else [body["ciba"]]
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("auth_req_id"), str):
                    raise ValueError('ciba must be {"auth_req_id": "…", "decision": "approve"|"refuse"}')
                self.decide_ciba(item["auth_req_id"], item.get("decision", ""))
        return self.state()

    def reset(self) -> None:
        with self.store.transaction() as conn:
            for table in ("psc_sessions", "psc_codes", "psc_tokens", "psc_ciba", "psc_overrides", "psc_jti"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM psc_clients WHERE origin = 'state'")
        self.seed_clients()
