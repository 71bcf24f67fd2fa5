"""The reference LGC's MSSanté client against the MSS simulator (SMTP + IMAP, STARTTLS with the bench CA) and
real Pro Santé Connect tokens from the PSC simulator."""

from __future__ import annotations

import base64
import email
import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from pathlib import Path

import pytest
from lxml import etree
from sims_messaging import (
    CLERICO_BAL,
    CLERICO_INS,
    KIT,
    KIT_BAL,
    PDF,
    PSC_REALM,
    ROBERT_BAL,
    ROBERT_NID,
    Sim,
    cda_clerico,
    ctx,
    psc_token,
    running,
    with_token,
)

from reference_lgc.services import mss, xdm
from reference_lgc.services.context import CallContext, Professional, ServiceRefused, ServiceUnavailable
from simulators.mss.app import SPEC as MSS
from simulators.psc.app import SPEC as PSC

NS = {"rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0", "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"}
ROBERT = Professional(national_id=ROBERT_NID, rpps=ROBERT_NID[1:], family_name="SPECIALISTE0021889",
                      given_name="ROBERT", speciality="SM04", billing_id="999990021", amo_speciality="03")


@dataclass
class Bench:
    psc: Sim
    mss: Sim
    ca_file: Path
    smtp_port: int
    imap_port: int
    kit_token: str

    def ctx(self, *, mailbox: str = KIT_BAL, token: str | None = None, professional: Professional = KIT,
            **extra: str) -> CallContext:
        settings = {"mailbox": mailbox, "smtp_port": str(self.smtp_port), "imap_port": str(self.imap_port),
                    "ca_file": str(self.ca_file), "nil": "SEGUR-BENCH-LGC-REF", **extra}
        return with_token(ctx("smtp://127.0.0.1", professional=professional, **settings), token or self.kit_token)

    def findings(self) -> list[dict]:
        return self.mss.control("GET", "/mss/findings")

    def inbox(self, address: str, folder: str = "INBOX") -> list[dict]:
        return self.mss.control("GET", f"/mss/mailboxes/{address}?folder={folder}")["messages"]

    def raw(self, address: str, uid: int) -> bytes:
        resp = self.mss.http.get(f"/_bench/mss/mailboxes/{address}/messages/{uid}")
        assert resp.status_code == 200, resp.text
        return resp.content


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    with running(PSC) as psc, running(MSS, psc_issuer=psc.url + PSC_REALM, smtp_port=0, imap_port=0) as sim:
        ca_file = tmp_path_factory.mktemp("mss") / "bench-ca.pem"
        ca_file.write_text(sim.http.get("/_bench/mss/ca.pem").text)
        ports = sim.control("GET", "/mss/ports")
        yield Bench(psc, sim, ca_file, ports["smtp"], ports["imap"], psc_token(psc.url))


@pytest.fixture
def b(bench: Bench) -> Bench:
    bench.mss.reset()
    return bench


def errors(findings: list[dict], severity: str = "erreur") -> list[str]:
    return [f"{f['code']}: {f['message']}" for f in findings if f["severity"] == severity]


# --------------------------------------------------------------------------------------------- sending


def test_send_to_patient_passes_every_check_and_the_xdm_is_valid(b: Bench) -> None:
    cda = cda_clerico()
    sent = mss.send_to_patient(b.ctx(), patient_ins=CLERICO_INS, cda=cda, document_pdf=PDF)
    assert sent.recipients == (CLERICO_BAL,) and sent.sender == KIT_BAL
    assert sent.subject == "XDM/1.0/DDM+Compte rendu de consultation CLERICO COME 07/11/1943"

    sub = b.findings()[-1]
    assert sub["accepted"] and sub["sender"] == KIT_BAL and sub["rcpts"] == [CLERICO_BAL]
    assert errors(sub["findings"]) == [] and errors(sub["findings"], "avertissement") == []
    assert sub["summary"]["closes_channel"] is True
    (received,) = b.inbox(CLERICO_BAL)
    assert received["subject"] == sent.subject
    assert received["x_mss"] == {"X-MSS-NIL": "SEGUR-BENCH-LGC-REF", "X-MSS-CODECDA": "11488-4", "X-MSS-INS": "O",
                                 "X-MSS-MES": "FIN"}
    assert [a["filename"] for a in received["attachments"]] == ["IHE_XDM.zip",
                                                               "20260110_CR_CLERICO_COME.pdf"]

    # The archive as the patient's mailbox got it, checked independently of the client's reader.
    msg = email.message_from_bytes(b.raw(CLERICO_BAL, received["uid"]), policy=policy.default)
    parts = {p.get_filename(): p.get_payload(decode=True) for p in msg.walk() if p.get_filename()}
    assert parts["20260110_CR_CLERICO_COME.pdf"] == PDF
    zf = zipfile.ZipFile(io.BytesIO(parts["IHE_XDM.zip"]))
    assert zf.namelist() == ["INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML",
                             "IHE_XDM/SUBSET01/DOC0001.XML"]
    meta = etree.fromstring(zf.read("IHE_XDM/SUBSET01/METADATA.XML"))
    assert meta.tag == "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest"
    (entry,) = meta.findall(".//rim:ExtrinsicObject", NS)

    def slot(name: str) -> str:
        return entry.xpath(f"string(rim:Slot[@name='{name}']/rim:ValueList/rim:Value)", namespaces=NS)

    doc = zf.read("IHE_XDM/SUBSET01/" + slot("URI"))
    assert doc == cda
    assert slot("hash") == hashlib.sha1(cda).hexdigest() and slot("size") == str(len(cda))
    ids = {e.get("identificationScheme"): e.get("value") for e in entry.findall("rim:ExternalIdentifier", NS)}
    assert ids[xdm.DE_PATIENT_ID] == f"{CLERICO_INS}^^^&1.2.250.1.213.1.4.8&ISO^NH"
    assert ids[xdm.DE_UNIQUE_ID] == "1.2.250.1.999.1.2.3.4.5"
    codes = {c.get("classificationScheme"): c.get("nodeRepresentation") for c in entry.findall("rim:Classification",
                                                                                                NS)}
    assert codes[xdm.DE_TYPE] == "11488-4" and codes[xdm.DE_CLASS] == "10"
    assert codes[xdm.DE_FORMAT] == "urn:ihe:iti:xds-sd:pdf:2008" and codes[xdm.DE_FACILITY] == "SA07"
    assert meta.findall(".//rim:RegistryPackage", NS) and meta.findall(".//rim:Association", NS)


def test_reply_channel_left_open_on_request(b: Bench) -> None:
    mss.send_to_patient(b.ctx(), patient_ins=CLERICO_INS, cda=cda_clerico(), document_pdf=PDF,
                        close_reply_channel=False)
    (received,) = b.inbox(CLERICO_BAL)
    assert "X-MSS-MES" not in received["x_mss"]
    assert b.mss.control("GET", "/state")["state"]["channels"] == []


def test_patient_ins_must_match_the_cda(b: Bench) -> None:
    with pytest.raises(ValueError, match="INS"):
        mss.send_to_patient(b.ctx(), patient_ins="167100093480710", cda=cda_clerico(), document_pdf=PDF)


def test_plain_message_with_oauthbearer_then_read_by_the_recipient(b: Bench) -> None:
    note = mss.Attachment("note.txt", "text/plain", b"Tension 13/8.")
    sent = mss.send(b.ctx(sasl="OAUTHBEARER"), [ROBERT_BAL], "Avis cardiologique CLERICO", "Bonjour Robert,",
                    [note])
    assert errors(b.findings()[-1]["findings"]) == []
    robert = b.ctx(mailbox=ROBERT_BAL, token=psc_token(b.psc.url, ROBERT_NID), professional=ROBERT)
    (summary,) = mss.list_inbox(robert)
    assert (summary.sender, summary.subject, summary.message_id) == (KIT_BAL, sent.subject, sent.message_id)
    assert not summary.from_patient and not summary.has_xdm and not summary.seen
    assert summary.attachments == (mss.AttachmentInfo("note.txt", "text/plain", len(note.data)),)
    assert summary.x_mss == {"X-MSS-NIL": "SEGUR-BENCH-LGC-REF"}
    full = mss.fetch(robert, summary.uid)
    assert full is not None and full.text.strip() == "Bonjour Robert," and full.attachments == (note,)
    assert mss.fetch(robert, summary.uid + 1000) is None


def test_sent_folder_holds_the_xdm_that_the_reader_validates(b: Bench) -> None:
    sent = mss.send_to_patient(b.ctx(), patient_ins=CLERICO_INS, cda=cda_clerico(), document_pdf=PDF)
    (summary,) = mss.list_inbox(b.ctx(), folder="Sent")
    assert summary.has_xdm and summary.subject == sent.subject
    assert summary.display_subject == "Compte rendu de consultation CLERICO COME 07/11/1943"
    assert [a.filename for a in summary.attachments] == ["20260110_CR_CLERICO_COME.pdf"]
    full = mss.fetch(b.ctx(), summary.uid, folder="Sent")
    assert full is not None and full.xdm is not None and full.xdm.problems == []
    (doc,) = full.xdm.documents
    assert doc.integrity_ok and doc.data == cda_clerico() and doc.type_code == "11488-4"
    assert doc.declared_size == len(doc.data)


# --------------------------------------------------------------------------------------------- reading


def test_inbox_tells_patients_and_xdm_apart(b: Bench) -> None:
    b.mss.control("POST", "/mss/inject", {"from": CLERICO_BAL, "to": KIT_BAL, "subject": "Question",
                                          "body": "Bonjour docteur"})
    b.mss.control("POST", "/mss/inject", {"from": ROBERT_BAL, "to": KIT_BAL, "body": "CR joint",
                                          "cda_base64": base64.b64encode(cda_clerico()).decode()})
    patient, robert = mss.list_inbox(b.ctx())
    assert patient.from_patient and patient.sender == CLERICO_BAL and patient.subject == "Question"
    assert not robert.from_patient and robert.has_xdm and robert.attachments == ()
    assert robert.display_subject == "Compte rendu de consultation CLERICO COME 07/11/1943"
    assert robert.x_mss["X-MSS-CODECDA"] == "11488-4"
    full = mss.fetch(b.ctx(), robert.uid)
    assert full is not None and full.xdm is not None
    assert [d.unique_id for d in full.xdm.documents] == ["1.2.250.1.999.1.2.3.4.5"]
    assert full.xdm.documents[0].data == cda_clerico()


# --------------------------------------------------------------------------------------------- failures


def test_expired_token_is_refused_so_the_lgc_can_refresh(b: Bench) -> None:
    b.mss.control("POST", "/clock", {"advance": "P1D"})  # the PSC token is now expired for MSSanté
    with pytest.raises(ServiceRefused) as err:
        mss.send_to_patient(b.ctx(), patient_ins=CLERICO_INS, cda=cda_clerico(), document_pdf=PDF)
    assert err.value.code == mss.CODE_TOKEN_EXPIRED and "expiré" in err.value.reason
    with pytest.raises(ServiceRefused) as err:
        mss.list_inbox(b.ctx())
    assert err.value.code == mss.CODE_TOKEN_EXPIRED
    assert b.inbox(CLERICO_BAL) == []


def test_invalid_or_foreign_token_is_refused(b: Bench) -> None:
    with pytest.raises(ServiceRefused) as err:
        mss.send(b.ctx(token="not-a-jwt"), [ROBERT_BAL], "Avis", "Bonjour")
    assert err.value.code == mss.CODE_TOKEN_REFUSED
    with pytest.raises(ServiceRefused) as err:  # KIT's token does not open ROBERT's mailbox
        mss.list_inbox(b.ctx(mailbox=ROBERT_BAL, sasl="OAUTHBEARER"))
    assert err.value.code == mss.CODE_TOKEN_REFUSED
    with pytest.raises(ServiceRefused) as err:
        mss.send(with_token(b.ctx(), None), [ROBERT_BAL], "Avis", "Bonjour")
    assert err.value.code == mss.CODE_NO_TOKEN


def test_smtp_4xx_is_unavailable_and_5xx_refused(b: Bench) -> None:
    b.mss.fault({"type": "outcome", "name": "mss.smtp-4xx"}, operation="SMTP RCPT", first=1)
    with pytest.raises(ServiceUnavailable) as err:
        mss.send(b.ctx(), [ROBERT_BAL], "Avis", "Bonjour")
    assert err.value.code == "451"
    b.mss.fault({"type": "outcome", "name": "mss.smtp-5xx"}, operation="SMTP DATA", first=1)
    with pytest.raises(ServiceRefused) as err:
        mss.send(b.ctx(), [ROBERT_BAL], "Avis", "Bonjour")
    assert err.value.code == "554"
    with pytest.raises(ServiceRefused) as err:  # outside the MSSanté trust space
        mss.send(b.ctx(), ["someone@gmail.com"], "Avis", "Bonjour")
    assert err.value.code == "550" and "gmail.com" in err.value.reason
    assert b.inbox(ROBERT_BAL) == []


def test_untrusted_certificate_is_unavailable_unless_verification_is_off(b: Bench) -> None:
    with pytest.raises(ServiceUnavailable) as err:
        mss.send(b.ctx(ca_file=""), [ROBERT_BAL], "Avis", "Bonjour")
    assert err.value.code == "tls"
    mss.send(b.ctx(ca_file="", tls_verify="false"), [ROBERT_BAL], "Avis", "Bonjour")
    assert [m["subject"] for m in b.inbox(ROBERT_BAL)] == ["Avis"]


def test_closed_port_is_unavailable(b: Bench) -> None:
    with pytest.raises(ServiceUnavailable) as err:
        mss.list_inbox(b.ctx(imap_port="1"))
    assert err.value.code == "network"
