"""What a test session leaves behind (docs/pytest-plugin.md): a failing test's exchanges as a HAR (plus the SMTP/IMAP
ones a HAR cannot hold, as JSON lines), the exchanges of every passing test that carries requirement ids, and the
session's Convergence export of those, in the deposit's fields (proofs/convergence.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proofs.convergence import NATURE_LOG, ProofRow, proof_ref, write_csv, write_xlsx

REPORT_NAME = "segur-bench-report.json"


def safe_name(nodeid: str) -> str:
    """A test's node id as a file name on every OS (kept readable, bounded)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("._")
    return name[-150:] or "test"


def write_exchanges(directory: Path, nodeid: str, har: dict[str, Any],
                    exchanges: list[dict[str, Any]]) -> tuple[Path, Path | None]:
    """<test>.har, and <test>.jsonl when some exchanges are not HTTP (SMTP, IMAP); their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / safe_name(nodeid)  # node ids hold dots: the suffix is appended, never substituted
    har_path = base.with_name(base.name + ".har")
    har_path.write_text(json.dumps(har, ensure_ascii=False, indent=1), encoding="utf-8")
    jsonl = None
    if any(e.get("protocol") != "http" for e in exchanges):
        jsonl = base.with_name(base.name + ".jsonl")
        jsonl.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in exchanges), encoding="utf-8")
    return har_path, jsonl


@dataclass
class TestRecord:
    nodeid: str
    run: str
    requirements: list[str]
    outcome: str = "passed"  # passed, failed, skipped, error
    har: str | None = None
    jsonl: str | None = None
    services: list[str] = field(default_factory=list)  # the services the test exchanged with


@dataclass
class SessionEvidence:
    directory: Path
    tests: dict[str, TestRecord] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def record(self, nodeid: str, run: str, requirements: list[str]) -> TestRecord:
        rec = self.tests.setdefault(nodeid, TestRecord(nodeid, run, requirements))
        return rec

    def convergence_rows(self) -> list[ProofRow]:
        """One row per (requirement, passing test): its exchanges as a log proof."""
        rows: list[ProofRow] = []
        numbers: dict[str, int] = {}
        for rec in self.tests.values():
            if rec.outcome != "passed" or not rec.har:
                continue
            for rid in rec.requirements:
                numbers[rid] = numbers.get(rid, 0) + 1
                with_whom = ", ".join(rec.services) or "aucun service"
                rows.append(ProofRow(rid, proof_ref(rid, numbers[rid]), NATURE_LOG,
                                     Path(rec.har).relative_to(self.directory).as_posix(),
                                     f"Test « {rec.nodeid} » réussi le {self.started:%d/%m/%Y} : échanges du "
                                     f"test avec le banc segur-bench ({with_whom}), au format HAR 1.2."))
        return rows

    def write(self) -> list[Path]:
        """The session's report (every test the plugin followed) and, when some passing test carries requirement
        ids, the Convergence export (CSV, and XLSX when openpyxl is there)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        report = self.directory / REPORT_NAME
        report.write_text(json.dumps({
            "started": self.started.isoformat(timespec="seconds"),
            "tests": [rec.__dict__ for rec in self.tests.values()],
        }, ensure_ascii=False, indent=2), encoding="utf-8")
        written = [report]
        rows = self.convergence_rows()
        if rows:
            written.append(write_csv(rows, self.directory / "convergence.csv"))
            xlsx = write_xlsx(rows, self.directory / "convergence.xlsx", when=self.started)
            if xlsx:
                written.append(xlsx)
        return written
