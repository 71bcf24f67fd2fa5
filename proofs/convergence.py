"""Export of a bundle's proofs in the fields of the ANS Convergence deposit.

One row per proof file: SEGUR_REM (requirement id), REF_PREUVE (stable reference), NATPREUVE (nature of the
proof as Convergence names them), FICHIER (path inside the bundle) and a French DESCRIPTION.

The CSV is UTF-8 *with BOM* and `;`-separated, CRLF line ends: that is what French-locale Excel opens
correctly with a double click (without the BOM it reads UTF-8 as Windows-1252 and mangles "vidéo"; with
`,` it puts the whole row in one cell, since `,` is the decimal separator there). The XLSX sidesteps
locale issues entirely and is written when openpyxl is installed.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

NATURE_VIDEO = "vidéo"
NATURE_SCREENSHOT = "capture d'écran"
NATURE_LOG = "log"
NATURE_FILE = "fichier"
NATURES = (NATURE_VIDEO, NATURE_SCREENSHOT, NATURE_LOG, NATURE_FILE)

HEADER = ("SEGUR_REM", "REF_PREUVE", "NATPREUVE", "FICHIER", "DESCRIPTION")
CSV_NAME = "convergence.csv"
XLSX_NAME = "convergence.xlsx"


@dataclass(frozen=True)
class ProofRow:
    requirement_id: str
    ref: str
    nature: str
    file: str
    description: str

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.requirement_id, self.ref, self.nature, self.file, self.description)


def safe_requirement_id(requirement_id: str) -> str:
    """"LGC.DMP/UX.10.01" -> "LGC.DMP-UX.10.01": usable in file names and references on every OS."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", requirement_id.strip()).strip("-.")
    return safe or "exigence"


def proof_ref(requirement_id: str, number: int) -> str:
    return f"{safe_requirement_id(requirement_id)}-P{number:02d}"


def csv_bytes(rows: Sequence[ProofRow]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(HEADER)
    writer.writerows(row.cells() for row in rows)
    return buf.getvalue().encode("utf-8-sig")


def write_csv(rows: Sequence[ProofRow], path: Path) -> Path:
    path.write_bytes(csv_bytes(rows))
    return path


def xlsx_available() -> bool:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        return False
    return True


def write_xlsx(rows: Sequence[ProofRow], path: Path, *, when: datetime) -> Path | None:
    """Write the XLSX, or return None when openpyxl is not installed (the CSV is then the only export).
    `when` stamps the document properties and zip entries so the same run always gives the same bytes."""
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Alignment, Font
    except ImportError:
        return None
    wb = Workbook()
    ws = wb.active
    ws.title = "Preuves"
    ws.append(HEADER)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append(row.cells())
    for column, width in zip("ABCDE", (20, 26, 18, 48, 90), strict=True):
        ws.column_dimensions[column].width = width
    for (cell,) in ws.iter_rows(min_row=2, min_col=5, max_col=5):
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"
    naive = when.replace(tzinfo=None)
    wb.properties.created = naive
    wb.properties.modified = naive
    wb.properties.creator = "segur-bench"
    buf = io.BytesIO()
    wb.save(buf)
    path.write_bytes(_restamp_zip(buf.getvalue(), when))
    return path


def _restamp_zip(data: bytes, when: datetime) -> bytes:
    # openpyxl stamps each zip entry with the wall clock: rewrite them with the run's time.
    stamp = zip_time(when)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fresh = zipfile.ZipInfo(info.filename, date_time=stamp)
            fresh.compress_type = zipfile.ZIP_DEFLATED
            fresh.external_attr = 0o644 << 16
            data = src.read(info)
            if info.filename == "docProps/core.xml":
                # openpyxl sets dcterms:modified to the wall clock at save time, whatever we asked for.
                iso = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when.tzinfo else \
                    when.strftime("%Y-%m-%dT%H:%M:%SZ")
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                              rb"\g<1>" + iso.encode() + rb"\g<2>", data)
            dst.writestr(fresh, data)
    return out.getvalue()


def zip_time(when: datetime) -> tuple[int, int, int, int, int, int]:
    """A zip entry timestamp (zip cannot store dates before 1980)."""
    t = max(when.replace(tzinfo=None), datetime(1980, 1, 1))
    return (t.year, t.month, t.day, t.hour, t.minute, t.second)
