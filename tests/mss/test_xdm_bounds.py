"""IHE_XDM.zip bounds (issue 16): a zip bomb is refused from its declared sizes, before anything is inflated, and a
broken member is a finding, not an exception. The archives are written here by the standard library's zipfile."""

from __future__ import annotations

import io
import zipfile

from simulators.mss import wire


def _zip(members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _codes(info: wire.XdmInfo) -> list[str]:
    return [f["code"] for f in info.findings]


def test_an_archive_inflating_beyond_the_bound_is_refused_uninflated():
    # Stored, not compressed (ratio 1:1): only the total bound can refuse it.
    big = b"\0" * (wire.XDM_MAX_INFLATED // 2 + 1)
    data = _zip({"INDEX.HTM": b"x", "README.TXT": b"x", "IHE_XDM/SUBSET01/A.XML": big, "IHE_XDM/SUBSET01/B.XML": big},
                method=zipfile.ZIP_STORED)
    info = wire.parse_xdm(data)
    assert _codes(info) == ["XDM-ZIP-VOLUMINEUX"] and "Mo" in info.findings[0]["message"]
    assert not info.documents


def test_a_member_compressed_beyond_the_ratio_is_refused():
    data = _zip({"INDEX.HTM": b"x", "README.TXT": b"x", "IHE_XDM/SUBSET01/METADATA.XML": b"\0" * (4 * 1024 * 1024)})
    info = wire.parse_xdm(data)
    assert _codes(info) == ["XDM-ZIP-VOLUMINEUX"] and "taux de compression" in info.findings[0]["message"]


def test_a_corrupted_member_is_a_finding_not_an_exception():
    meta = b"<lcm:SubmitObjectsRequest xmlns:lcm='urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0'/>"
    data = bytearray(_zip({"INDEX.HTM": b"x", "README.TXT": b"x", "IHE_XDM/SUBSET01/METADATA.XML": meta,
                           "IHE_XDM/SUBSET01/DOC.XML": b"<x/>"}, method=zipfile.ZIP_STORED))
    at = bytes(data).index(meta)
    data[at + 5] ^= 0xFF  # the stored bytes no longer match the CRC the archive declares
    info = wire.parse_xdm(bytes(data))
    assert "XDM-ZIP-ILLISIBLE" in _codes(info) and "illisible" in info.findings[-1]["message"]


def test_an_ordinary_archive_passes_the_bounds():
    cda = b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>" * 2000
    data = _zip({"INDEX.HTM": b"x", "README.TXT": b"x", "IHE_XDM/SUBSET01/METADATA.XML": b"<x/>",
                 "IHE_XDM/SUBSET01/DOC0001.XML": cda})
    assert "XDM-ZIP-VOLUMINEUX" not in _codes(wire.parse_xdm(data))
