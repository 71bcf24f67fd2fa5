"""SMTP submission with stdlib smtplib: STARTTLS, SASL bearer tokens, message checks, strict mode, faults."""

from __future__ import annotations

import base64
import smtplib
import socket
import time

import pytest

from .conftest import (
    CLERICO_BAL,
    CSE,
    KIT_BAL,
    KIT_ORG,
    ROBERT,
    ROBERT_BAL,
    SUBJECT,
    Mss,
    cda,
    mail,
    oauthbearer,
    token,
    xdm_zip,
    xoauth2,
)


def connect(mss: Mss, *, tls: bool = True) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", mss.smtp_port, timeout=10)
    client.ehlo("lgc.test")
    if tls:
        client.starttls(context=mss.ca)
        client.ehlo("lgc.test")
    return client


def auth_xoauth2(client: smtplib.SMTP, user: str, tok: str) -> tuple[int, bytes]:
    return client.auth("XOAUTH2", lambda challenge=None: xoauth2(user, tok) if challenge is None else "")


def send(mss: Mss, msg, *, user: str = KIT_BAL, tok: str | None = None) -> dict:
    with connect(mss) as client:
        auth_xoauth2(client, user, tok or token())
        return client.send_message(msg)


def codes(findings: list[dict], severity: str = "erreur") -> set[str]:
    return {f["code"] for f in findings if f["severity"] == severity}


def test_starttls_xoauth2_send_to_patient_with_xdm_passes_the_checks(mss):
    with connect(mss, tls=False) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # no AUTH offered in clear text
        client.starttls(context=mss.ca)
        client.ehlo("lgc.test")
        assert client.esmtp_features["auth"].split() == ["OAUTHBEARER", "XOAUTH2"]
        code, _ = auth_xoauth2(client, KIT_BAL, token())
        assert code == 235
        assert client.send_message(mail(xdm=xdm_zip())) == {}
    sub = mss.findings()[-1]
    assert sub["accepted"] and sub["sender"] == KIT_BAL and sub["rcpts"] == [CLERICO_BAL]
    assert codes(sub["findings"]) == set() and codes(sub["findings"], "avertissement") == set(), sub["findings"]
    doc = sub["summary"]["documents"][0]
    assert (doc["code"], doc["ins"], doc["family"], doc["birth"]) == ("11488-4", "143110095083713", "CLERICO",
                                                                      "1943-11-07")
    inbox = mss.inbox(CLERICO_BAL)
    assert [m["subject"] for m in inbox] == [SUBJECT]
    assert inbox[0]["x_mss"]["X-MSS-MES"] == "FIN"
    assert [a["filename"] for a in inbox[0]["attachments"]] == ["IHE_XDM.zip", "20261125_CR_CLERICO_COME.pdf"]
    assert [m["subject"] for m in mss.inbox(KIT_BAL, "Sent")] == [SUBJECT]
    state = mss.get("/_bench/state")["state"]
    assert [(c["patient"], c["professional"]) for c in state["channels"]] == [(CLERICO_BAL, KIT_BAL)]
    data = mss.journal("SMTP DATA")[-1]
    assert data["protocol"] == "smtp" and data["status"] == 250
    assert "IHE_XDM.zip" in data["request"]["body"]
    auth = mss.journal("SMTP AUTH")[-1]
    assert auth["status"] == 235 and "Bearer" not in auth["request"]["body"]


def test_oauthbearer_on_the_organisational_mailbox(mss):
    with connect(mss) as client:
        tok = token()
        code, _ = client.auth("OAUTHBEARER", lambda c=None: oauthbearer(KIT_ORG, tok) if c is None else "")
        assert code == 235
        client.send_message(mail(sender=KIT_ORG, to=(ROBERT_BAL,), subject="Avis", xdm=None, pdf=False,
                                 headers={"X-MSS-CODECDA": None, "X-MSS-INS": None, "X-MSS-MES": None}))
    assert mss.last_findings() == []
    assert [m["from"] for m in mss.inbox(ROBERT_BAL)] == [KIT_ORG]


def test_bad_subject_and_missing_mss_headers_are_findings(mss):
    msg = mail(subject="Compte rendu CLERICO", xdm=xdm_zip(),
               headers={"X-MSS-NIL": None, "X-MSS-CODECDA": None, "X-MSS-INS": None, "X-MSS-MES": None})
    assert send(mss, msg) == {}  # accepted: the default mode only records
    findings = mss.last_findings()
    assert codes(findings) == {"OBJET", "X-MSS-NIL", "X-MSS-CODECDA", "X-MSS-INS", "X-MSS-MES"}
    by_code = {f["code"]: f["message"] for f in findings}
    assert "XDM/1.0/DDM+" in by_code["OBJET"]
    assert "attendu 11488-4" in by_code["X-MSS-CODECDA"]
    assert "attendu O" in by_code["X-MSS-INS"]
    entry = mss.journal("SMTP DATA")[-1]
    assert any(name == "x-mss-finding" and value.startswith("OBJET erreur")
               for name, value in entry["response"]["headers"])


@pytest.mark.parametrize(
    ("kwargs", "code", "words"),
    [
        ({"subject": "XDM/1.0/DDM+COMPTE RENDU DE CONSULTATION CLERICO COME 08/11/1943"}, "OBJET",
         "différente de celle du CDA"),
        ({"subject": "XDM/1.0/DDM+COMPTE RENDU CLERICO COME 07/11/1943"}, "OBJET", "d'après le CDA"),
        ({"xdm": xdm_zip(drop=("INDEX.HTM",))}, "XDM-STRUCTURE", "INDEX.HTM absent"),
        ({"xdm": xdm_zip(drop=("README.TXT",))}, "XDM-STRUCTURE", "README.TXT absent"),
        ({"xdm": xdm_zip(drop=("IHE_XDM/SUBSET01/METADATA.XML",))}, "XDM-STRUCTURE", "METADATA.XML absent"),
        ({"xdm": xdm_zip(type_code="11490-0")}, "XDM-METADATA-CDA", "typeCode 11490-0"),
        ({"xdm": xdm_zip(unique_id="1.2.3")}, "XDM-METADATA-CDA", "uniqueId 1.2.3"),
        ({"xdm": xdm_zip(ins="279035121518989")}, "XDM-METADATA-CDA", "patientId 279035121518989"),
        ({"xdm": xdm_zip(uri="DOC0002.XML")}, "XDM-METADATA", "DOC0002.XML"),
        ({"xdm_name": "document.zip"}, "XDM-NOM", "IHE_XDM.zip"),
        ({"headers": {"X-MSS-CODECDA": "34112-3"}}, "X-MSS-CODECDA", "34112-3"),
        ({"headers": {"X-MSS-INS": "N"}}, "X-MSS-INS", "contient"),
        ({"headers": {"X-MSS-MES": "OUVERT"}}, "X-MSS-MES", "FIN"),
        ({"xdm": xdm_zip(files={"IHE_XDM/SUBSET01/DOC0001.XML": cda(ins="279035121518989")},
                         ins="279035121518989")}, "PATIENT-INS", "279035121518989"),
        ({"xdm": None, "headers": {"X-MSS-CODECDA": "11488-4"}}, "OBJET", "aucune pièce jointe"),
    ],
    ids=["birth-date", "title", "no-index", "no-readme", "no-metadata", "typecode", "uniqueid", "patientid",
         "uri", "zip-name", "codecda", "ins-flag", "mes-value", "patient-ins", "subject-without-xdm"],
)
def test_each_defect_is_flagged_precisely(mss, kwargs, code, words):
    kwargs.setdefault("xdm", xdm_zip())
    send(mss, mail(**kwargs))
    findings = [f for f in mss.last_findings() if f["severity"] == "erreur"]
    assert code in {f["code"] for f in findings}, findings
    assert any(words in f["message"] for f in findings if f["code"] == code), findings


def test_missing_pdf_is_a_warning_and_related_document_is_noted(mss):
    related = xdm_zip(files={"IHE_XDM/SUBSET01/DOC0001.XML": cda(related="1.2.250.1.999.1.2.3.4.4")})
    send(mss, mail(xdm=related, pdf=False))
    findings = mss.last_findings()
    assert codes(findings) == set()
    assert codes(findings, "avertissement") == {"PDF-LISIBLE"}
    assert codes(findings, "info") == {"CDA-RELATED"}


def test_strict_mode_refuses_with_5xx_and_the_reasons(mss):
    mss.settings["strict"] = True
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(mss, mail(xdm=xdm_zip(), headers={"X-MSS-NIL": None}))
    assert err.value.smtp_code == 554
    text = err.value.smtp_error.decode()
    assert "mode strict" in text and "X-MSS-NIL" in text
    assert mss.inbox(CLERICO_BAL) == []
    assert mss.findings()[-1]["accepted"] is False
    send(mss, mail(xdm=xdm_zip()))  # a clean message still goes through
    assert len(mss.inbox(CLERICO_BAL)) == 1


def test_legacy_plain_and_login_refused_unless_switched_on(mss):
    with connect(mss) as client:
        assert "PLAIN" not in client.esmtp_features["auth"]
        code, reply = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0" + KIT_BAL.encode() + b"\0x").decode())
        assert code == 504, reply
        with pytest.raises(smtplib.SMTPException):
            client.login(KIT_BAL, "mssante-banc")
    mss.settings["legacy_auth"] = True
    with connect(mss) as client:
        assert set(client.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN", "OAUTHBEARER", "XOAUTH2"}
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(KIT_BAL, "wrong")
    with connect(mss) as client:
        code, _ = client.login(KIT_BAL, "mssante-banc")
        assert code == 235
        client.send_message(mail(xdm=xdm_zip()))
    assert len(mss.inbox(CLERICO_BAL)) == 1


def test_expired_token_is_refused_with_535(mss):
    with connect(mss) as client:
        challenges = []

        def answer(challenge=None):
            if challenge is not None:
                challenges.append(challenge)
                return ""
            return xoauth2(KIT_BAL, token(exp_in=-120))

        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.auth("XOAUTH2", answer)
        assert err.value.smtp_code == 535 and "expir" in err.value.smtp_error.decode()
        assert b'"status": "invalid_token"' in challenges[0]  # RFC 7628 error challenge


def test_token_of_someone_else_or_unknown_mailbox_is_refused(mss):
    with connect(mss) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            auth_xoauth2(client, KIT_BAL, token(ROBERT))
        assert "n'est pas une BAL de" in err.value.smtp_error.decode()
    with connect(mss) as client, pytest.raises(smtplib.SMTPAuthenticationError):
        auth_xoauth2(client, CLERICO_BAL, token())


def test_token_expiry_during_the_session_then_reauthentication(mss):
    with connect(mss) as client:
        auth_xoauth2(client, KIT_BAL, token(exp_in=300))
        mss.post("/_bench/clock", {"advance": "PT10M"})
        code, reply = client.mail(KIT_BAL)
        assert code == 530 and b"expir" in reply
        code, _ = auth_xoauth2(client, KIT_BAL, token(now=mss.sim_now()))
        assert code == 235
        assert client.send_message(mail(xdm=xdm_zip())) == {}


def test_envelope_rules(mss):
    with connect(mss) as client:
        auth_xoauth2(client, KIT_BAL, token())
        code, reply = client.mail(ROBERT_BAL)
        assert code == 553 and KIT_BAL.encode() in reply
        assert client.mail(KIT_BAL)[0] == 250
        code, reply = client.rcpt("someone@gmail.com")
        assert code == 550 and b"espace de confiance" in reply
        assert client.rcpt("inconnu@medecin.mssante.fr")[0] == 550
        assert client.rcpt("12345@patient.mssante.fr")[0] == 550
        assert client.rcpt(CSE)[0] == 250
    with connect(mss, tls=False) as client:
        assert client.mail(KIT_BAL)[0] == 530  # STARTTLS first


def test_latency_fault_on_data_delays_the_final_reply(mss):
    mss.fault({"service": "mss", "operation": "SMTP DATA", "effect": {"type": "latency", "ms": 700}})
    with connect(mss) as client:
        auth_xoauth2(client, KIT_BAL, token())
        started = time.monotonic()
        client.send_message(mail(xdm=xdm_zip()))
        assert time.monotonic() - started >= 0.7
    entry = mss.journal("SMTP DATA")[-1]
    assert entry["faults"][0]["effect"] == "latency" and entry["duration_ms"] >= 700


def test_drop_closes_the_connection(mss):
    mss.fault({"service": "mss", "operation": "SMTP MAIL", "effect": {"type": "drop"}})
    client = connect(mss)
    auth_xoauth2(client, KIT_BAL, token())
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError, socket.error)):
        client.send_message(mail(xdm=xdm_zip()))
    client.close()
    entry = mss.journal("SMTP MAIL")[-1]
    assert entry["status"] is None and entry["faults"][0]["effect"] == "drop"


def test_4xx_and_5xx_outcomes(mss):
    mss.fault({"service": "mss", "operation": "SMTP RCPT", "effect": {"type": "outcome", "name": "mss.smtp-4xx"},
               "first": 1})
    mss.fault({"service": "mss", "operation": "SMTP DATA", "effect": {"type": "outcome", "name": "mss.smtp-5xx"},
               "first": 1})
    with connect(mss) as client:
        auth_xoauth2(client, KIT_BAL, token())
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            client.send_message(mail(xdm=xdm_zip()))
        assert err.value.recipients[CLERICO_BAL][0] == 451
        client.rset()
        with pytest.raises(smtplib.SMTPDataError) as data_err:
            client.send_message(mail(xdm=xdm_zip()))
        assert data_err.value.smtp_code == 554
        assert client.send_message(mail(xdm=xdm_zip())) == {}  # both rules were for the first call only
    assert len(mss.inbox(CLERICO_BAL)) == 1


def test_auth_outcomes(mss):
    mss.fault({"service": "mss", "operation": "SMTP AUTH", "effect": {"type": "outcome", "name": "mss.auth-refusee"},
               "first": 1})
    with connect(mss) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            auth_xoauth2(client, KIT_BAL, token())
        assert auth_xoauth2(client, KIT_BAL, token())[0] == 235


def test_slow_replies(mss):
    mss.fault({"service": "mss", "operation": "SMTP EHLO", "effect": {"type": "dribble", "chunk_bytes": 8,
                                                                       "interval_ms": 20}})
    started = time.monotonic()
    with connect(mss, tls=False) as client:
        assert client.has_extn("starttls")
    assert time.monotonic() - started >= 0.2


def test_the_cse_platform_takes_child_health_certificates_only(mss):
    """LGC.CSE.12: a message to the CSE platform carries the CS9 or CS24 certificate in CDA (the volet's templateIds,
    code CERT_DECL); a report sent there instead is an error finding."""
    certificate = cda(code="CERT_DECL", title="Certificat de santé du 24ème mois de l'enfant").replace(
        b'<id root="1.2.250.1.999.1.2.3.4.5"/>',
        b'<templateId root="1.2.250.1.213.1.1.1.5"/><templateId root="1.2.250.1.213.1.1.1.5.3"/>'
        b'<id root="1.2.250.1.999.1.2.3.4.5"/>')
    with connect(mss) as client:
        assert auth_xoauth2(client, KIT_BAL, token())[0] == 235
        client.send_message(mail(to=(CSE,), xdm=xdm_zip(), headers={"X-MSS-MES": None}))
        wrong = mss.findings()[-1]["findings"]
        client.send_message(mail(to=(CSE,), xdm=xdm_zip(files={"IHE_XDM/SUBSET01/DOC0001.XML": certificate}),
                                 headers={"X-MSS-MES": None, "X-MSS-CODECDA": "CERT_DECL"}))
        right = mss.findings()[-1]["findings"]
    assert [f["message"] for f in wrong if f["code"] == "CSE" and f["severity"] == "erreur"] == [
        "IHE_XDM/SUBSET01/DOC0001.XML n'est pas un certificat CS9 ou CS24 (templateId absent, code 11488-4) : la "
        "plateforme CSE ne reçoit que ceux-là"]
    cse = [f for f in right if f["code"] == "CSE"]
    assert [(f["severity"], "CS24" in f["message"]) for f in cse] == [("info", True)], right
