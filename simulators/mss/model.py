"""MSSanté business model: mailboxes and messages in the service's SQLite store, submissions with their
findings, patient reply channels, authentication of a mailbox by a PSC token.

Shared by the SMTP front end, the IMAP front end (possibly in other threads or worker processes) and the HTTP
control API: everything goes through the store, nothing is kept in memory but the personas and the token
validator.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.core.clock import iso
from simulators.core.store import Store
from simulators.core.tokens import Caller, InvalidToken, TokenValidator
from simulators.personas import Personas

from . import wire

_MIGRATIONS = [
    """
    CREATE TABLE mss_mailboxes (
        address TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        owner TEXT,
        label TEXT,
        uidvalidity INTEGER NOT NULL
    );
    CREATE TABLE mss_messages (
        uid INTEGER PRIMARY KEY AUTOINCREMENT,
        mailbox TEXT NOT NULL,
        folder TEXT NOT NULL,
        raw BLOB NOT NULL,
        flags TEXT NOT NULL DEFAULT '[]',
        internal_date REAL NOT NULL,
        message_id TEXT,
        subject TEXT,
        sender TEXT,
        origin TEXT NOT NULL,
        submission TEXT
    );
    CREATE INDEX mss_messages_box ON mss_messages (mailbox, folder, uid);
    CREATE TABLE mss_submissions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        at TEXT NOT NULL,
        origin TEXT NOT NULL,
        sender TEXT NOT NULL,
        rcpts TEXT NOT NULL,
        subject TEXT,
        accepted INTEGER NOT NULL,
        reply TEXT NOT NULL,
        findings TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE TABLE mss_channels (
        patient TEXT NOT NULL,
        professional TEXT NOT NULL,
        closed_at TEXT NOT NULL,
        message_id TEXT,
        PRIMARY KEY (patient, professional)
    )
    """,
    # \Recent (RFC 3501 §2.3.2: set until a read-write session has been told of the message) and UIDNEXT per
    # folder (§2.3.1.1: changes only when a message is added there; UIDs come from one store-wide sequence).
    """
    ALTER TABLE mss_messages ADD COLUMN recent INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE mss_uidnext (
        mailbox TEXT NOT NULL,
        folder TEXT NOT NULL,
        uidnext INTEGER NOT NULL,
        PRIMARY KEY (mailbox, folder)
    )
    """,
]

FOLDERS = ("INBOX", "Sent")
KIND_PER, KIND_ORG, KIND_PAT, KIND_CSE, KIND_OTHER = "PER", "ORG", "PAT", "CSE", "AUTRE"
DEFAULT_ISSUER = "http://127.0.0.1:8104/auth/realms/esante-wallet"
DEFAULT_LEGACY_PASSWORD = "mssante-banc"

OUTCOMES = {
    "mss.smtp-4xx": "commande SMTP visée : réponse 451 4.3.0 (erreur temporaire, le client doit réessayer)",
    "mss.smtp-5xx": "commande SMTP visée : réponse 554 5.3.0 (refus définitif)",
    "mss.imap-no": "commande IMAP visée : réponse étiquetée NO",
    "mss.imap-bye": "commande IMAP visée : « * BYE » puis fermeture de la connexion",
    "mss.auth-refusee": "AUTH/AUTHENTICATE/LOGIN : authentification refusée même avec un jeton valide",
    "mss.jeton-expire": "le jeton de la session est traité comme expiré (à l'authentification ou en session)",
}


class AuthError(Exception):
    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


class Refused(Exception):
    """A message the service refuses (closed patient channel, unknown recipient)."""


@dataclass(frozen=True)
class Session:
    """An authenticated mailbox: who, how, until when (epoch seconds of the simulated clock)."""

    mailbox: str
    mechanism: str
    national_id: str | None
    expires_at: float | None  # None: legacy password, never expires


@dataclass(frozen=True)
class Submission:
    id: str
    accepted: bool
    reply: str
    findings: list[dict]
    uids: list[int]


class MssModel:
    def __init__(self, personas: Personas, store: Store, settings: Mapping[str, Any], clock: Any) -> None:
        self.personas = personas
        self.store = store
        self.settings = settings
        self.clock = clock
        self._validator: TokenValidator | None = None
        # Called with (mailbox, folder) after each stored message, from whatever thread stored it (SMTP on the
        # loop, injection from the HTTP thread): the IMAP front wakes its IDLE sessions at once. Other worker
        # processes are not called; their IDLE sessions poll the store.
        self.listeners: list[Callable[[str, str], None]] = []

    # ------------------------------------------------------------------------------------------ setup
    def migrate(self) -> None:
        self.store.migrate("mss", _MIGRATIONS)
        self.seed()

    def seed(self) -> None:
        rows: list[tuple[str, str, str, str]] = []
        for pro in self.personas.professionals:
            rows.append((pro.mss_personnelle, KIND_PER, pro.id, pro.display_name))
        for structure in self.personas.structures:
            if structure.mss_organisationnelle:
                rows.append((structure.mss_organisationnelle, KIND_ORG, structure.id, structure.nom))
        for patient in self.personas.patients:
            if patient.mss_address and patient.variant_of is None:
                rows.append((patient.mss_address, KIND_PAT, patient.id, patient.display_name))
        rows.append((wire.CSE_ADDRESS, KIND_CSE, None, "Plateforme des certificats de santé (CSE)"))
        uidvalidity = int(time.time())
        with self.store.transaction() as conn:
            for address, kind, owner, label in rows:
                conn.execute("INSERT OR IGNORE INTO mss_mailboxes (address, kind, owner, label, uidvalidity)"
                             " VALUES (?, ?, ?, ?, ?)", (address.lower(), kind, owner, label, uidvalidity))

    def reset(self) -> None:
        # mss_uidnext is kept: a folder's UIDNEXT never goes down (UIDs are not reused either).
        with self.store.transaction() as conn:
            for table in ("mss_messages", "mss_submissions", "mss_channels", "mss_mailboxes"):
                conn.execute(f"DELETE FROM {table}")
        self.seed()

    # ------------------------------------------------------------------------------------------ mailboxes
    def mailbox(self, address: str) -> dict | None:
        row = self.store.execute("SELECT * FROM mss_mailboxes WHERE address = ?",
                                 (wire.normalise_address(address),)).fetchone()
        return dict(row) if row else None

    def add_mailbox(self, address: str, kind: str = KIND_OTHER, owner: str | None = None,
                    label: str | None = None) -> dict:
        address = wire.normalise_address(address)
        if "@" not in address:
            raise ValueError(f"adresse de BAL invalide : {address!r}")
        self.store.execute("INSERT OR IGNORE INTO mss_mailboxes (address, kind, owner, label, uidvalidity)"
                           " VALUES (?, ?, ?, ?, ?)", (address, kind, owner, label, int(time.time())))
        return self.mailbox(address)  # type: ignore[return-value]

    def recipient_check(self, address: str) -> str | None:
        """None if the recipient is acceptable, else the reason (SMTP 550)."""
        address = wire.normalise_address(address)
        if self.mailbox(address):
            return None
        if not wire.in_trust_space(address):
            return f"<{address}> est hors de l'espace de confiance MSSanté (domaine *.mssante.fr attendu)"
        if wire.is_patient_address(address):
            if wire.patient_ins_of(address) is None:
                return f"<{address}> : la partie locale d'une adresse patient doit être un matricule INS de 15 " \
                       "caractères"
            self.add_mailbox(address, KIND_PAT, None, "patient hors jeu de personas")
            return None
        if self.settings.get("accept_unknown_recipients"):
            self.add_mailbox(address)
            return None
        return f"<{address}> : BAL inconnue de l'annuaire MSSanté du banc"

    def folders(self, address: str) -> list[str]:
        return list(FOLDERS)

    def messages(self, address: str, folder: str = "INBOX", *, with_raw: bool = False) -> list[dict]:
        rows = self.store.query("SELECT * FROM mss_messages WHERE mailbox = ? AND folder = ? ORDER BY uid",
                                (wire.normalise_address(address), folder))
        return [self._message_view(r, with_raw) for r in rows]

    def message(self, address: str, uid: int) -> dict | None:
        row = self.store.execute("SELECT * FROM mss_messages WHERE mailbox = ? AND uid = ?",
                                 (wire.normalise_address(address), uid)).fetchone()
        return dict(row) if row else None

    def _message_view(self, row: Any, with_raw: bool) -> dict:
        msg = wire.parse_message(row["raw"])
        view = {
            "uid": row["uid"], "folder": row["folder"], "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")), "subject": row["subject"], "date": str(msg.get("Date", "")),
            "message_id": row["message_id"], "flags": json.loads(row["flags"]), "size": len(row["raw"]),
            "origin": row["origin"], "submission": row["submission"],
            "received": iso(datetime.fromtimestamp(row["internal_date"]).astimezone()),
            "x_mss": {k: str(v) for k, v in msg.items() if k.upper().startswith("X-MSS-")},
            "attachments": [{"filename": f, "content_type": c, "size": len(d)} for f, c, d in wire.attachments(msg)],
        }
        if with_raw:
            view["raw"] = row["raw"].decode("utf-8", "replace")
        return view

    # IMAP access (Twisted mailbox objects call these)
    def folder_rows(self, address: str, folder: str) -> list[dict]:
        return [dict(r) for r in self.store.query(
            "SELECT uid, flags, internal_date, recent, length(raw) AS size FROM mss_messages WHERE mailbox = ? AND"
            " folder = ? ORDER BY uid", (address, folder))]

    def folder_uids(self, address: str, folder: str) -> list[int]:
        return [r["uid"] for r in self.store.query(
            "SELECT uid FROM mss_messages WHERE mailbox = ? AND folder = ? ORDER BY uid", (address, folder))]

    def claim_recent(self, uids: list[int]) -> set[int]:
        """The messages among ``uids`` no session had been told of: they are \\Recent for the caller only."""
        if not uids:
            return set()
        marks = ",".join("?" * len(uids))
        with self.store.transaction() as conn:
            rows = conn.execute(f"UPDATE mss_messages SET recent = 0 WHERE recent = 1 AND uid IN ({marks})"
                                " RETURNING uid", uids).fetchall()
        return {r["uid"] for r in rows}

    def still_recent(self, uids: list[int]) -> set[int]:
        """For a read-only session: \\Recent as it stands, without taking it from a later read-write session."""
        if not uids:
            return set()
        marks = ",".join("?" * len(uids))
        return {r["uid"] for r in self.store.query(
            f"SELECT uid FROM mss_messages WHERE recent = 1 AND uid IN ({marks})", uids)}

    def uidnext(self, address: str, folder: str) -> int:
        row = self.store.execute("SELECT uidnext FROM mss_uidnext WHERE mailbox = ? AND folder = ?",
                                 (wire.normalise_address(address), folder)).fetchone()
        return int(row["uidnext"]) if row else 1

    def raw(self, uid: int) -> bytes:
        row = self.store.execute("SELECT raw FROM mss_messages WHERE uid = ?", (uid,)).fetchone()
        return bytes(row["raw"]) if row else b""

    def set_flags(self, uid: int, flags: list[str]) -> None:
        self.store.execute("UPDATE mss_messages SET flags = ? WHERE uid = ?", (json.dumps(sorted(set(flags))), uid))

    def expunge(self, address: str, folder: str) -> list[int]:
        rows = self.folder_rows(address, folder)
        gone = [r["uid"] for r in rows if "\\Deleted" in json.loads(r["flags"])]
        with self.store.transaction() as conn:
            for uid in gone:
                conn.execute("DELETE FROM mss_messages WHERE uid = ?", (uid,))
        return gone

    def next_uid(self) -> int:
        row = self.store.execute("SELECT seq FROM sqlite_sequence WHERE name = 'mss_messages'").fetchone()
        return (row["seq"] if row else 0) + 1

    def store_message(self, address: str, folder: str, raw: bytes, *, origin: str, submission: str | None = None,
                      flags: list[str] | None = None) -> int:
        raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)  # IMAP serves CRLF lines
        msg = wire.parse_message(raw)
        address = wire.normalise_address(address)
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO mss_messages (mailbox, folder, raw, flags, internal_date, message_id, subject, sender,"
                " origin, submission) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (address, folder, raw, json.dumps(flags or []), self.clock.now().timestamp(), msg.get("Message-ID"),
                 str(msg.get("Subject", "")), wire.normalise_address(str(msg.get("From", ""))), origin, submission),
            )
            uid = int(cur.lastrowid or 0)
            conn.execute("INSERT INTO mss_uidnext (mailbox, folder, uidnext) VALUES (?, ?, ?)"
                         " ON CONFLICT(mailbox, folder) DO UPDATE SET uidnext = max(uidnext, excluded.uidnext)",
                         (address, folder, uid + 1))
        for listener in list(self.listeners):
            listener(address, folder)
        return uid

    # ------------------------------------------------------------------------------------------ auth
    @property
    def validator(self) -> TokenValidator:
        if self._validator is None:
            s = self.settings
            issuer = s.get("psc_issuer", DEFAULT_ISSUER)
            self._validator = TokenValidator(
                issuer, s.get("psc_jwks"),
                jwks_url=None if s.get("psc_jwks") else s.get("psc_jwks_url",
                                                             issuer + "/protocol/openid-connect/certs"),
                audience=s.get("token_audience"), clock=self.clock.now, leeway=float(s.get("token_leeway_s", 0)),
            )
        return self._validator

    def authenticate_bearer(self, creds: wire.BearerCredentials, *, outcome: str | None = None) -> Session:
        if outcome == "mss.auth-refusee":
            raise AuthError("authentification refusée par l'opérateur (issue simulée)")
        if outcome == "mss.jeton-expire":
            raise AuthError("jeton expiré (issue simulée)", expired=True)
        try:
            caller = self.validator.validate(creds.token)
        except InvalidToken as exc:
            raise AuthError(f"jeton refusé : {exc.reason}", expired="expired" in exc.reason) from None
        mailbox = self._owned_mailbox(creds.user, caller)
        return Session(mailbox, creds.mechanism, caller.national_id, caller.expires_at.timestamp())

    def authenticate_password(self, user: str, password: str, mechanism: str, *, outcome: str | None = None
                              ) -> Session:
        if not self.settings.get("legacy_auth"):
            raise AuthError(f"{mechanism} désactivé : authentification Pro Santé Connect (XOAUTH2/OAUTHBEARER) "
                            "exigée")
        if outcome in ("mss.auth-refusee", "mss.jeton-expire"):
            raise AuthError("authentification refusée par l'opérateur (issue simulée)")
        box = self.mailbox(user)
        if box is None:
            raise AuthError(f"BAL inconnue : {user}")
        if password != str(self.settings.get("legacy_password", DEFAULT_LEGACY_PASSWORD)):
            raise AuthError("mot de passe incorrect")
        return Session(box["address"], mechanism, None, None)

    def _owned_mailbox(self, user: str, caller: Caller) -> str:
        box = self.mailbox(user)
        if box is None:
            raise AuthError(f"BAL inconnue : {user}")
        if box["kind"] not in (KIND_PER, KIND_ORG, KIND_OTHER):
            raise AuthError(f"la BAL {box['address']} ({box['kind']}) ne s'ouvre pas avec un jeton Pro Santé Connect")
        if not self.settings.get("check_owner", True) or box["kind"] == KIND_OTHER:
            return box["address"]
        pro = self.personas.professional_by_national_id(caller.national_id or "")
        if pro is None:
            raise AuthError(f"le porteur du jeton ({caller.national_id}) n'est pas un professionnel connu")
        owned = {pro.mss_personnelle.lower()} | {
            a.structure.mss_organisationnelle.lower() for a in pro.activites if a.structure.mss_organisationnelle}
        if box["address"] not in owned:
            raise AuthError(f"la BAL {box['address']} n'est pas une BAL de {pro.display_name} ({pro.national_id})")
        return box["address"]

    def session_expired(self, session: Session | None, outcome: str | None = None) -> bool:
        if session is None:
            return False
        if outcome == "mss.jeton-expire":
            return True
        if session.expires_at is None:
            return False
        return self.clock.now().timestamp() > session.expires_at

    # ------------------------------------------------------------------------------------------ submission
    def submit(self, raw: bytes, *, mail_from: str, rcpts: list[str], session: Session | None,
               origin: str = "smtp") -> Submission:
        """Check a message from the LGC, record the findings, deliver it unless strict mode refuses it."""
        result = wire.check_message(raw, mail_from=mail_from, rcpts=rcpts,
                                    authenticated=session.mailbox if session else None)
        sub_id = uuid.uuid4().hex[:16]
        errors = result.errors
        strict = bool(self.settings.get("strict"))
        uids: list[int] = []
        if strict and errors:
            lines = [f"5.6.0 {f['code']} : {f['message']}" for f in errors]
            lines.insert(0, wire.SMTP_STRICT_HEAD)
            reply = "\r\n".join(f"554{'-' if i < len(lines) - 1 else ' '}{line}" for i, line in enumerate(lines))
            # The reply is recorded as sent: ASCII (the findings keep their accents).
            reply = b"\r\n".join(wire.smtp_reply_lines(reply)).decode("ascii")
            accepted = False
        else:
            uids = self._deliver(raw, wire.normalise_address(mail_from), rcpts, sub_id, origin)
            if result.closes_channel:
                for patient in result.patient_recipients:
                    self.close_channel(patient, wire.normalise_address(mail_from), result.message_id)
            reply = f"250 2.0.0 Message accepted (id {sub_id}, {len(result.findings)} finding(s))"
            accepted = True
        self._record_submission(sub_id, origin, mail_from, rcpts, result.subject, accepted, reply, result.findings,
                                result.summary())
        return Submission(sub_id, accepted, reply, result.findings, uids)

    def _deliver(self, raw: bytes, sender: str, rcpts: list[str], sub_id: str, origin: str) -> list[int]:
        uids = []
        for rcpt in dict.fromkeys(wire.normalise_address(r) for r in rcpts):
            if self.mailbox(rcpt) is None:
                self.add_mailbox(rcpt)
            uids.append(self.store_message(rcpt, "INBOX", raw, origin=origin, submission=sub_id))
        if self.mailbox(sender) is not None and origin == "smtp":
            uids.append(self.store_message(sender, "Sent", raw, origin=origin, submission=sub_id, flags=["\\Seen"]))
        return uids

    def _record_submission(self, sub_id: str, origin: str, sender: str, rcpts: list[str], subject: str,
                           accepted: bool, reply: str, findings: list[dict], summary: dict) -> None:
        self.store.execute(
            "INSERT INTO mss_submissions (id, at, origin, sender, rcpts, subject, accepted, reply, findings, summary)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sub_id, iso(self.clock.now()), origin, wire.normalise_address(sender),
             json.dumps([wire.normalise_address(r) for r in rcpts]), subject, int(accepted), reply,
             json.dumps(findings, ensure_ascii=False), json.dumps(summary, ensure_ascii=False)),
        )

    def submissions(self, *, sender: str | None = None, limit: int = 200) -> list[dict]:
        sql, params = "SELECT * FROM mss_submissions", []
        if sender:
            sql += " WHERE sender = ?"
            params.append(wire.normalise_address(sender))
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(int(limit))
        out = []
        for r in self.store.query(sql, params):
            out.append({"id": r["id"], "at": r["at"], "origin": r["origin"], "sender": r["sender"],
                        "rcpts": json.loads(r["rcpts"]), "subject": r["subject"], "accepted": bool(r["accepted"]),
                        "reply": r["reply"], "findings": json.loads(r["findings"]),
                        "summary": json.loads(r["summary"])})
        return out[::-1]

    # ------------------------------------------------------------------------------------------ channels
    def close_channel(self, patient: str, professional: str, message_id: str | None) -> None:
        self.store.execute(
            "INSERT INTO mss_channels (patient, professional, closed_at, message_id) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(patient, professional) DO UPDATE SET closed_at = excluded.closed_at,"
            " message_id = excluded.message_id",
            (patient, professional, iso(self.clock.now()), message_id),
        )

    def channel_closed(self, patient: str, professional: str) -> bool:
        return self.store.execute("SELECT 1 FROM mss_channels WHERE patient = ? AND professional = ?",
                                  (wire.normalise_address(patient), wire.normalise_address(professional))
                                  ).fetchone() is not None

    # ------------------------------------------------------------------------------------------ control
    def inject(self, spec: Mapping[str, Any]) -> dict:
        """An incoming message for the LGC: from a professional, or from a patient through Mon espace santé."""
        if not isinstance(spec, Mapping):
            raise ValueError("expected a JSON object")
        sender = wire.normalise_address(str(spec.get("from") or ""))
        to = spec.get("to")
        to = [to] if isinstance(to, str) else to
        if not sender or "@" not in sender:
            raise ValueError("'from' (the sender's address) is required")
        if not to or not isinstance(to, list) or not all(isinstance(t, str) and "@" in t for t in to):
            raise ValueError("'to' must be an address or a list of addresses")
        if "raw" in spec:
            raw = spec["raw"].encode() if not spec.get("raw_base64") else base64.b64decode(spec["raw"])
        else:
            attachments = []
            for att in spec.get("attachments") or []:
                attachments.append((att["filename"], att.get("content_type", "application/octet-stream"),
                                    base64.b64decode(att["base64"])))
            headers = dict(spec.get("headers") or {})
            subject = str(spec.get("subject") or "")
            cda = spec.get("cda_base64")
            if cda:
                xdm, info = wire.build_xdm(base64.b64decode(cda), spec.get("cda_filename", "DOC0001.XML"))
                attachments.insert(0, (wire.XDM_NAME, "application/zip", xdm))
                headers.setdefault("X-MSS-CODECDA", info.code or "")
                headers.setdefault("X-MSS-INS", "O" if info.qualified_ins else "N")
                if not subject and info.birth:
                    subject = f"{wire.SUBJECT_PREFIX}{info.title} {info.family} {info.given} {info.birth:%d/%m/%Y}"
            headers.setdefault("X-MSS-NIL", "segur-bench-mss")
            raw = wire.build_message(sender=sender, to=list(to), subject=subject, body=str(spec.get("body") or ""),
                                     headers=headers, attachments_=attachments, when=self.clock.now())
        sub_id = uuid.uuid4().hex[:16]
        if wire.is_patient_address(sender):
            for rcpt in to:
                if self.channel_closed(sender, rcpt):
                    reason = (f"le patient {sender} ne peut pas répondre à {wire.normalise_address(rcpt)} : canal "
                              "fermé par X-MSS-MES: FIN")
                    self._record_submission(sub_id, "injection", sender, list(to), "", False, "refusé : " + reason,
                                            [{"code": "CANAL-FERME", "severity": "erreur", "message": reason}], {})
                    raise Refused(reason)
        uids = []
        for rcpt in dict.fromkeys(wire.normalise_address(r) for r in to):
            if self.mailbox(rcpt) is None:
                self.add_mailbox(rcpt)
            uids.append({"mailbox": rcpt, "uid": self.store_message(rcpt, "INBOX", raw, origin="injection",
                                                                    submission=sub_id)})
        self._record_submission(sub_id, "injection", sender, list(to), str(wire.parse_message(raw).get("Subject", "")),
                                True, "injecté", [], {})
        return {"id": sub_id, "delivered": uids}

    def send_mdn(self, spec: Mapping[str, Any]) -> dict:
        """MDN from the mailbox that received a message, back to its sender (error codes 900–906)."""
        address, uid = spec.get("mailbox"), spec.get("uid")
        error = spec.get("error")
        if error is not None and str(error) not in wire.MDN_ERRORS:
            raise ValueError(f"error must be one of {sorted(wire.MDN_ERRORS)} or null")
        row = self.message(str(address or ""), int(uid or 0))
        if row is None:
            raise ValueError(f"no message {uid} in mailbox {address}")
        mdn = wire.build_mdn(bytes(row["raw"]), reporter=row["mailbox"],
                             error=None if error is None else str(error), when=self.clock.now())
        target = wire.normalise_address(str(wire.parse_message(mdn).get("To", "")))
        if self.mailbox(target) is None:
            self.add_mailbox(target)
        new_uid = self.store_message(target, "INBOX", mdn, origin="mdn")
        return {"mailbox": target, "uid": new_uid}

    def state(self) -> dict:
        counts = {(r["mailbox"], r["folder"]): r["n"] for r in self.store.query(
            "SELECT mailbox, folder, count(*) AS n FROM mss_messages GROUP BY mailbox, folder")}
        boxes = []
        for r in self.store.query("SELECT * FROM mss_mailboxes ORDER BY kind, address"):
            boxes.append({"address": r["address"], "kind": r["kind"], "owner": r["owner"], "label": r["label"],
                          "messages": {f: counts.get((r["address"], f), 0) for f in FOLDERS}})
        channels = [dict(r) for r in self.store.query("SELECT * FROM mss_channels ORDER BY closed_at")]
        return {"mailboxes": boxes, "submissions": self.submissions(limit=50), "channels": channels,
                "settings": {k: self.settings.get(k) for k in ("strict", "legacy_auth", "check_owner")}}

    def apply(self, body: Any) -> dict:
        if not isinstance(body, Mapping):
            raise ValueError('expected {"mailboxes": [{"address": …, "kind": …}], "inject": [...]}')
        for box in body.get("mailboxes") or []:
            self.add_mailbox(box["address"], box.get("kind", KIND_OTHER), box.get("owner"), box.get("label"))
        for spec in body.get("inject") or []:
            self.inject(spec)
        return self.state()
