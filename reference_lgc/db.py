"""SQLite storage with a versioned schema (PRAGMA user_version): each migration runs once, in order.

One connection per thread (request threads and service-call workers); WAL lets readers go on while a worker
writes, so a page never waits for a national-service call to store its result.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS: list[list[str]] = [
    # 1: accounts, PSC sessions, patients, identity traces, consents, service calls, local documents
    [
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY, login TEXT NOT NULL UNIQUE, family_name TEXT NOT NULL, given_name TEXT NOT NULL,
            national_id TEXT UNIQUE, rpps TEXT, profession TEXT NOT NULL DEFAULT '10',
            speciality TEXT NOT NULL DEFAULT 'SM26', sector TEXT NOT NULL DEFAULT 'SA07',
            structure_id TEXT NOT NULL DEFAULT '', structure_name TEXT NOT NULL DEFAULT '',
            billing_id TEXT NOT NULL DEFAULT '', amo_speciality TEXT NOT NULL DEFAULT '01',
            info_ack_at TEXT, created_at TEXT NOT NULL)""",
        """CREATE TABLE sessions (
            sid TEXT PRIMARY KEY, user_id INTEGER REFERENCES users(id), national_id TEXT NOT NULL,
            userinfo TEXT NOT NULL, access_token TEXT, refresh_token TEXT, id_token TEXT, expires_at REAL,
            created_at TEXT NOT NULL)""",
        """CREATE TABLE patients (
            id INTEGER PRIMARY KEY, birth_name TEXT NOT NULL, used_name TEXT NOT NULL DEFAULT '',
            first_names TEXT NOT NULL, used_first_name TEXT NOT NULL DEFAULT '', sex TEXT NOT NULL,
            birth_date TEXT NOT NULL, birthplace_cog TEXT NOT NULL, birthplace_label TEXT NOT NULL DEFAULT '',
            ins_matricule TEXT, ins_oid TEXT, retrieved INTEGER NOT NULL DEFAULT 0,
            validated INTEGER NOT NULL DEFAULT 0, validation_means TEXT NOT NULL DEFAULT '',
            homonyme INTEGER NOT NULL DEFAULT 0, douteuse INTEGER NOT NULL DEFAULT 0,
            fictive INTEGER NOT NULL DEFAULT 0, retrieved_at TEXT, last_record_visit TEXT,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX patients_name ON patients(birth_name, first_names)",
        "CREATE INDEX patients_ins ON patients(ins_matricule)",
        """CREATE TABLE identity_traces (
            id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL REFERENCES patients(id), at TEXT NOT NULL,
            user_label TEXT NOT NULL, operation TEXT NOT NULL, detail TEXT NOT NULL)""",
        """CREATE TABLE consents (
            id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL REFERENCES patients(id),
            episode TEXT NOT NULL, feeding_opposed INTEGER NOT NULL DEFAULT 0,
            consultation_consent INTEGER NOT NULL DEFAULT 0, emergency_reason TEXT NOT NULL DEFAULT '',
            recorded_at TEXT NOT NULL, user_label TEXT NOT NULL)""",
        """CREATE TABLE service_calls (
            id INTEGER PRIMARY KEY, service TEXT NOT NULL, operation TEXT NOT NULL, patient_id INTEGER,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', code TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0, params TEXT NOT NULL, result TEXT,
            user_id INTEGER, sid TEXT, retry_of INTEGER, created_at TEXT NOT NULL, started_at TEXT,
            finished_at TEXT)""",
        "CREATE INDEX calls_patient ON service_calls(patient_id, service, operation, id)",
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL REFERENCES patients(id), title TEXT NOT NULL,
            type_code TEXT NOT NULL, type_label TEXT NOT NULL, act_date TEXT NOT NULL, author TEXT NOT NULL,
            mime TEXT NOT NULL, content BLOB NOT NULL, origin TEXT NOT NULL DEFAULT 'local',
            created_at TEXT NOT NULL)""",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    # 2: documents as CDA (ids, versions, DMP state), prescriptions and ON, the durable DMP outbox, MSSanté
    # messages, the DMP metadata seen at the last consultation
    [
        "ALTER TABLE documents ADD COLUMN unique_id TEXT",  # CDA ClinicalDocument/id (root[.extension])
        "ALTER TABLE documents ADD COLUMN set_id TEXT",
        "ALTER TABLE documents ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE documents ADD COLUMN level TEXT NOT NULL DEFAULT ''",  # 'N1' | 'N3' | '' (not CDA)
        "ALTER TABLE documents ADD COLUMN cda BLOB",
        "ALTER TABLE documents ADD COLUMN pdf BLOB",
        "ALTER TABLE documents ADD COLUMN class_code TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE documents ADD COLUMN confidentiality TEXT NOT NULL DEFAULT 'N'",
        "ALTER TABLE documents ADD COLUMN validated_at TEXT",
        "ALTER TABLE documents ADD COLUMN replaces_id INTEGER REFERENCES documents(id)",
        "ALTER TABLE documents ADD COLUMN dmp_entry_uuid TEXT",  # set once the DMP registered it
        "ALTER TABLE documents ADD COLUMN dmp_sent_at TEXT",
        "ALTER TABLE documents ADD COLUMN dmp_state TEXT NOT NULL DEFAULT ''",  # '', envoye, supprime, remplace
        "ALTER TABLE documents ADD COLUMN source_ref TEXT",  # DMP entryUUID or MSS Message-ID it came from
        "CREATE UNIQUE INDEX documents_unique ON documents(patient_id, unique_id) WHERE unique_id IS NOT NULL",
        "ALTER TABLE patients ADD COLUMN previous_record_visit TEXT",  # "new since the last visit"
        """CREATE TABLE prescriptions (
            id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL REFERENCES patients(id), user_id INTEGER,
            created_at TEXT NOT NULL, validated_at TEXT, lines TEXT NOT NULL, notes TEXT NOT NULL DEFAULT '',
            on_state TEXT NOT NULL DEFAULT '', on_number TEXT, on_payload TEXT, on_reason TEXT NOT NULL DEFAULT '',
            document_id INTEGER REFERENCES documents(id))""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL REFERENCES documents(id),
            patient_id INTEGER NOT NULL REFERENCES patients(id), action TEXT NOT NULL DEFAULT 'envoi',
            state TEXT NOT NULL, due_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT '', unique_id TEXT NOT NULL, ins TEXT NOT NULL, ins_oid TEXT NOT NULL,
            invisible_to_patient INTEGER NOT NULL DEFAULT 0, replaces_entry_uuid TEXT, professional TEXT NOT NULL,
            metadata TEXT NOT NULL, entry_uuid TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            sent_at TEXT)""",
        "CREATE INDEX outbox_due ON outbox(state, due_at)",
        """CREATE TABLE mss_messages (
            id INTEGER PRIMARY KEY, patient_id INTEGER REFERENCES patients(id), document_id INTEGER,
            direction TEXT NOT NULL, message_id TEXT, sender TEXT, recipients TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '', at TEXT NOT NULL, call_id INTEGER)""",
        """CREATE TABLE dmp_entries (
            patient_id INTEGER NOT NULL REFERENCES patients(id), entry_uuid TEXT NOT NULL, lid TEXT,
            unique_id TEXT NOT NULL, title TEXT NOT NULL, type_code TEXT NOT NULL, class_code TEXT NOT NULL,
            creation_time TEXT, submission_time TEXT, author TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
            invisible_to_patient INTEGER NOT NULL DEFAULT 0, masked INTEGER NOT NULL DEFAULT 0,
            version INTEGER, first_seen TEXT NOT NULL, PRIMARY KEY (patient_id, entry_uuid))""",
    ],
    # 3: what the prescription and MSSanté need about the professional (PSC does not carry all of it)
    [
        "ALTER TABLE users ADD COLUMN mss_address TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE users ADD COLUMN structure_street TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE users ADD COLUMN structure_postal_code TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE users ADD COLUMN structure_city TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE users ADD COLUMN structure_phone TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE prescriptions ADD COLUMN options TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE prescriptions ADD COLUMN error TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE prescriptions ADD COLUMN n3_document_id INTEGER REFERENCES documents(id)",
    ],
]


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.connect().execute(sql, params)

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @property
    def version(self) -> int:
        return self.one("PRAGMA user_version")[0]

    def _migrate(self) -> None:
        conn = self.connect()
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise RuntimeError(f"{self.path}: schema version {current} is newer than this LGC "
                               f"({len(MIGRATIONS)}); upgrade the LGC")
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction() as tx:
                for statement in MIGRATIONS[version - 1]:
                    tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {version}")
