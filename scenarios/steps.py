"""Step definitions in the user's language. Each "Alors" is judged twice when it can be: on screen, and from
the simulators' journals (server side), so the same scenario judges a vendor's LGC too."""

from __future__ import annotations

import base64
import email
import email.header
import email.utils
import io
import itertools
import json
import re
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from lxml import etree
from pytest_bdd import given, parsers, then, when

from reference_lgc.services import dmp
from reference_lgc.services.context import CallContext, Endpoint, Professional, Software
from reference_lgc.services.xds import Code, DocumentMetadata

from .conftest import Run

PRESCRIPTION = [("PARACETAMOL 500 mg, comprimé", "1 comprimé 3 fois par jour si douleur", "5"),
                ("AMOXICILLINE 1 g, comprimé dispersible", "1 comprimé matin et soir", "6")]
DMP_TEST_OID = "1.2.250.1.213.1.4.10"


def _check(run: Run, assertion: str, ok: bool, detail: str = "", source: str = "") -> None:
    run.rec.verdict(assertion, ok, detail, source)
    assert ok, f"{assertion} — {detail}"


def _har_delayed(har: Path, since: float, exchanges: list[dict]) -> set[str]:
    """Services whose exchanges (journal entries) the network layer delayed by ≥ 3 s since `since`.

    Plain HTTP: the proxy's HAR entries of that service. HTTPS: TLS stays end to end, so the HAR has a record per
    connection with its delayed turns and the local port of its upstream connection, which the simulator journals
    as the client's port: each exchange is joined to its connection on that port. The HAR flushes every 2 s."""
    deadline = time.monotonic() + 5
    found: set[str] = set()
    wanted = {e["service"] for e in exchanges}
    while time.monotonic() < deadline:
        try:
            log = json.loads(har.read_text(encoding="utf-8"))["log"]
        except (OSError, ValueError, KeyError):
            log = {}
        found = {e.get("_service") for e in log.get("entries", []) if float(e.get("_injected_ms") or 0) >= 2900
                 and datetime.fromisoformat(e["startedDateTime"].replace("Z", "+00:00")).timestamp() >= since}
        delayed_ports = {c["upstream_port"] for c in log.get("_connections", []) if c.get("kind") == "tls"
                         and any(float(t.get("_injected_ms") or 0) >= 2900 for t in c.get("turns", []))}
        found |= {e["service"] for e in exchanges if e.get("tls") and e.get("client")
                  and int(e["client"].rsplit(":", 1)[1]) in delayed_ports}
        if wanted <= found:
            break
        time.sleep(0.5)
    return found


def _xdm_ok(raw: bytes, ins: str) -> bool:
    """IHE XDM: METADATA.XML parses and lists a document whose CDA carries the patient's INS."""
    message = email.message_from_bytes(raw)
    zips = [part.get_payload(decode=True) for part in message.walk() if part.get_filename() == "IHE_XDM.zip"]
    if not zips:
        return False
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    with zipfile.ZipFile(io.BytesIO(zips[0])) as z:
        names = z.namelist()
        if "IHE_XDM/SUBSET01/METADATA.XML" not in names:
            return False
        etree.fromstring(z.read("IHE_XDM/SUBSET01/METADATA.XML"), parser)
        docs = [n for n in names if n.startswith("IHE_XDM/SUBSET01/") and n.upper().endswith(".XML")
                and not n.endswith("METADATA.XML")]
        return any(etree.fromstring(z.read(n), parser).xpath(
            "string(//*[local-name()='recordTarget']//*[local-name()='id']/@extension)") == ins for n in docs)


# ------------------------------------------------------------------------------------------------ given


@given(parsers.parse('le médecin "{national_id}" connecté avec Pro Santé Connect'))
def logged_in(run: Run, national_id: str) -> None:
    run.rec.meta["personas"].append({"role": "professionnel", "name": "Dr KIT DOC0036624", "rpps": national_id})
    run.facts.setdefault("psc_since", time.time())  # this run's exchanges with PSC start here (steps.py _psc_login)
    run.driver.login(national_id)


@given(parsers.parse('le patient "{name}" d\'INS "{ins}" a un DMP contenant au moins un document'))
def patient_has_dmp_documents(run: Run, name: str, ins: str) -> None:
    run.rec.meta["personas"].append({"role": "patient", "name": name, "ins": ins})
    run.facts.update(patient=name, ins=ins)
    state = run.sims.call("dmp", "GET", f"/state?ins={ins}")
    state = state.get("state", state)
    docs = [d for d in state["documents"] if d.get("status", "").endswith("Approved")]
    _check(run, f"Le DMP de {name} contient au moins un document", len(docs) >= 1, f"{len(docs)} document(s)",
           "état du simulateur DMP")


@given(parsers.parse('le dossier local de "{name}" contient un document absent de son DMP'))
def local_document_not_in_dmp(run: Run, name: str) -> None:
    run.driver.open_patient(name)
    text = run.driver.local_documents()
    _check(run, f"Le dossier local de {name} contient un document propre", "Note de consultation" in text,
           text.splitlines()[1] if len(text.splitlines()) > 1 else text, "écran du LGC")


@given("le réseau est bridé avec une latence de 3 secondes sur tous les services")
def throttled(run: Run) -> None:
    run.facts["latency_ms"] = 3000
    run.facts["throttled_at"] = time.time()
    run.set_network(3000)


@given(parsers.parse('l\'identité de "{name}" est qualifiée par l\'Appli carte Vitale "{ins}"'))
@when(parsers.parse('l\'identité de "{name}" est qualifiée par l\'Appli carte Vitale "{ins}"'))
def qualified_by_apcv(run: Run, name: str, ins: str) -> None:
    run.rec.meta["personas"].append({"role": "patient", "name": name, "ins": ins})
    run.facts.update(patient=name, ins=ins)
    run.driver.open_patient(name)
    run.driver.read_apcv(ins)
    run.driver.wait_identity("qualifiee")


@given("le DMP est injoignable")
def dmp_down(run: Run) -> None:
    run.sims.faults("dmp", {"operation": "ITI-41", "effect": {"type": "http_status", "status": 503}})


@given(parsers.parse("le service Ordonnance numérique {case}"))
def on_failing(run: Run, case: str) -> None:
    outcome = {"répond KO": "on.ko", "ne répond pas": "on.sans-reponse"}[case]
    run.facts["on_case"] = case
    run.sims.faults("on", {"operation": "*", "effect": {"type": "outcome", "name": outcome}})


@given(parsers.parse('un confrère et le patient d\'INS "{ins}" ont écrit à "{doctor}" par MSSanté, le confrère '
                    'avec un document'))
def messages_for_the_doctor(run: Run, ins: str, doctor: str) -> None:
    tag = run.id[-6:]
    run.facts["ins"] = ins
    run.facts["inbox"] = {"doctor": doctor, "patient_address": f"{ins}@patient.mssante.fr",
                          "pro_subject": f"Résultats de votre patient ({tag})", "patient_subject": f"Question ({tag})"}
    cda = _lab_cda(f"1.2.250.1.999.2.{uuid.uuid4().int % 10**12}", str(uuid.uuid4()), 1, ins,
                   "Résultats d'analyses", None)
    run.sims.call("mss", "POST", "/mss/inject", {
        "from": "jean-marie.dupont@medecin.mssante.fr", "to": doctor, "subject": run.facts["inbox"]["pro_subject"],
        "body": "Bonjour, ci-joints les résultats.", "cda_base64": base64.b64encode(cda).decode()})
    # From Mon espace santé: the address is the INS, with no name (the patient writes from the platform)
    run.sims.call("mss", "POST", "/mss/inject", {
        "from": run.facts["inbox"]["patient_address"], "to": doctor, "subject": run.facts["inbox"]["patient_subject"],
        "body": "Bonjour docteur, dois-je poursuivre le traitement ?"})


def _mss_outcome(run: Run, since: str, operation: str, outcome: str, label: str, first: int | None = None) -> None:
    """This run's MSSanté fault rules replaced by one business outcome on `operation` (from now: facts[since])."""
    run.sims.clear_faults("mss")
    run.facts[since] = time.time()
    run.sims.faults("mss", {"operation": operation, "label": label, "effect": {"type": "outcome", "name": outcome},
                            **({"first": first} if first else {})})


@given("le jeton Pro Santé Connect de la session MSSanté expire à la première commande d'envoi")
def mss_token_expires(run: Run) -> None:
    _mss_outcome(run, "mss_since", "SMTP MAIL", "mss.jeton-expire", "jeton expiré en cours de session", first=1)


@given("le jeton Pro Santé Connect de la session IMAP expire à sa première commande")
def imap_token_expires(run: Run) -> None:
    _mss_outcome(run, "imap_since", "IMAP EXAMINE", "mss.jeton-expire", "jeton expiré en session IMAP", first=1)


@given("la messagerie refuse désormais toute authentification")
def mss_auth_refused(run: Run) -> None:
    _mss_outcome(run, "mss_refused_since", "SMTP AUTH", "mss.auth-refusee", "authentification refusée")


@given("le téléphone du professionnel attend sa décision")
def phone_waits(run: Run) -> None:
    # The simulated phone answers by itself after 3 s by default: the scenario decides instead (restored at the end;
    # PSC's state is the bench's, but no other scenario logs in by CIBA)
    run.sims.call("psc", "POST", "/state", {"ciba_auto_approve_s": None})
    run.facts["ciba_auto_off"] = True


def _send_report(run: Run, version: int, parent: str | None) -> None:
    facts = run.facts["report"]
    uid = f"1.2.250.1.999.2.{uuid.uuid4().int % 10**12}"
    cda = _lab_cda(uid, facts["set_id"], version, facts["ins"], facts["title"], parent)
    subject = f"{facts['title']} v{version} ({run.id[-6:]})"
    run.sims.call("mss", "POST", "/mss/inject", {
        "from": "jean-marie.dupont@medecin.mssante.fr", "to": facts["doctor"], "subject": subject,
        "body": "Bonjour, ci-joint le compte rendu.", "cda_base64": base64.b64encode(cda).decode()})
    facts.update(uid=uid, subject=subject, version=version)
    facts.setdefault("subjects", []).append(subject)


@given(parsers.parse('un confrère a envoyé à "{doctor}" le compte rendu "{title}" du patient d\'INS "{ins}"'))
def report_received(run: Run, doctor: str, title: str, ins: str) -> None:
    run.facts["report"] = {"doctor": doctor, "title": title, "ins": ins, "set_id": str(uuid.uuid4())}
    _send_report(run, 1, None)


@given("le confrère envoie une nouvelle version du compte rendu, qui remplace la précédente")
def report_replaced(run: Run) -> None:
    facts = run.facts["report"]
    _send_report(run, facts["version"] + 1, facts["uid"])


@given("l'annuaire santé répond « 503 service indisponible »")
def directory_unavailable(run: Run) -> None:
    run.sims.faults("annuaire", {"operation": "Practitioner.search", "label": "annuaire indisponible",
                                 "effect": {"type": "http_status", "status": 503, "headers": {"Retry-After": "60"}}})


@given(parsers.parse('un autre poste a déposé au DMP de "{ins}" un document invisible pour le patient'))
def invisible_document_elsewhere(run: Run, ins: str) -> None:
    uid = f"2.25.{uuid.uuid4().int}"
    cda = (f'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><realmCode code="FR"/>'
           f'<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/><id root="{uid}"/>'
           f'<code code="11502-2" codeSystem="2.16.840.1.113883.6.1" displayName="CR de biologie"/>'
           f'<title>Résultats avant annonce</title><effectiveTime value="20261125090000+0100"/>'
           f'<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/><languageCode code="fr-FR"/>'
           f'<setId root="2.25.{uuid.uuid4().int}"/><versionNumber value="1"/><recordTarget><patientRole>'
           f'<id root="{DMP_TEST_OID}" extension="{ins}"/></patientRole></recordTarget><component><nonXMLBody>'
           f'<text mediaType="text/plain" representation="B64">{base64.b64encode(b"resultats").decode()}</text>'
           f'</nonXMLBody></component></ClinicalDocument>').encode()
    kit = Professional(national_id="899700366240", rpps="99700366240", family_name="DOC0036624", given_name="KIT",
                       structure_id="499700366240007", structure_name="CABINET M DOC0036624",
                       billing_id="999990013", amo_speciality="01")
    meta = DocumentMetadata(title="Résultats avant annonce", unique_id=uid, creation_time=datetime.now(UTC),
                            class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
                            type_code=Code("11502-2", "2.16.840.1.113883.6.1", "CR de biologie"),
                            format_code=Code("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Texte"),
                            invisible_to_patient=True)
    dmp.provide_document(CallContext(Software(), kit, _dmp_endpoint(run)), ins, DMP_TEST_OID, cda, meta)


ROBERT = Professional(national_id="899700218896", rpps="99700218896", family_name="SPECIALISTE0021889",
                      given_name="ROBERT", speciality="SM04", sector="SA01", structure_id="10B0172805",
                      structure_name="HOPITAL GENERIQUE FIN VARI", billing_id="999990021", amo_speciality="03")
NEWER = "Une version plus récente de ce document existe dans le DMP"
DELETED = "Ce document a été supprimé du DMP"


def _dmp_endpoint(run: Run) -> Endpoint:
    """The DMP as another workstation reaches it: straight, naming the run (it has no certificate bound to the
    run, and the run may have its own DMP state when runs share the bench)."""
    return Endpoint(url=run.sims.urls["dmp"] + "/si-dmp-server/v2/services", headers={"X-Bench-Run": run.id})


def _other_workstation(run: Run) -> CallContext:
    """Dr ROBERT SPECIALISTE0021889 on another workstation of his hospital: the author of the seeded documents."""
    return CallContext(Software(), ROBERT, _dmp_endpoint(run))


def _approved(run: Run, title: str) -> list[dict]:
    return [d for d in _dmp_state(run)["documents"] if d.get("title") == title and d["status"].endswith("Approved")]


def _lab_cda(uid: str, set_id: str, version: int, ins: str, title: str, parent: str | None) -> bytes:
    related = (f'<relatedDocument typeCode="RPLC"><parentDocument><id root="{parent}"/></parentDocument>'
               "</relatedDocument>") if parent else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><realmCode code="FR"/>'
            f'<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/><id root="{uid}"/>'
            f'<code code="11502-2" codeSystem="2.16.840.1.113883.6.1" displayName="CR d\'examens biologiques"/>'
            f"<title>{title}</title><effectiveTime value=\"{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}+0000\"/>"
            f'<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/><languageCode code="fr-FR"/>'
            f'<setId root="{set_id}"/><versionNumber value="{version}"/><recordTarget><patientRole>'
            f'<id root="{DMP_TEST_OID}" extension="{ins}"/></patientRole></recordTarget>{related}<component>'
            f'<nonXMLBody><text mediaType="text/plain" representation="B64">'
            f'{base64.b64encode(f"resultats v{version}".encode()).decode()}</text></nonXMLBody></component>'
            f"</ClinicalDocument>").encode()


def _lab_meta(title: str, uid: str) -> DocumentMetadata:
    return DocumentMetadata(title=title, unique_id=uid, creation_time=datetime.now(UTC),
                            class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
                            type_code=Code("11502-2", "2.16.840.1.113883.6.1", "CR d'examens biologiques"),
                            format_code=Code("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Texte"))


@given(parsers.parse('un autre poste remplace au DMP le document "{title}" par une nouvelle version'))
@when(parsers.parse('un autre poste remplace au DMP le document "{title}" par une nouvelle version'))
def replaced_elsewhere(run: Run, title: str) -> None:
    (old,) = _approved(run, title)
    uid = f"2.25.{uuid.uuid4().int}"
    cda = _lab_cda(uid, old["set_id"], int(old["version_number"]) + 1, run.facts["ins"], title, old["unique_id"])
    dmp.provide_document(_other_workstation(run), run.facts["ins"], DMP_TEST_OID, cda, _lab_meta(title, uid),
                         replaces=old["entry_uuid"])
    run.facts.update(replaced_uid=old["unique_id"], latest_uid=uid, latest_set=old["set_id"],
                     latest_version=int(old["version_number"]) + 1)


@when(parsers.parse('un autre logiciel dépose au DMP une copie de la dernière version de "{title}"'))
def copy_elsewhere(run: Run, title: str) -> None:
    uid = f"2.25.{uuid.uuid4().int}"  # another CDA id, the same setId and versionNumber: the same document
    cda = _lab_cda(uid, run.facts["latest_set"], run.facts["latest_version"], run.facts["ins"], title, None)
    dmp.provide_document(_other_workstation(run), run.facts["ins"], DMP_TEST_OID, cda, _lab_meta(title, uid))
    run.facts["copy_uid"] = uid


@when(parsers.parse('un autre poste supprime du DMP la dernière version de "{title}"'))
def deleted_elsewhere(run: Run, title: str) -> None:
    (latest,) = [d for d in _approved(run, title) if d["unique_id"] == run.facts["latest_uid"]]
    dmp.delete_document(_other_workstation(run), run.facts["ins"], DMP_TEST_OID, latest["entry_uuid"],
                        current_status=dmp.ST_APPROVED)


# ------------------------------------------------------------------------------------------------- when


@when(parsers.parse('le médecin ouvre le dossier de "{name}"'))
def open_file(run: Run, name: str) -> None:
    run.facts.setdefault("patient", name)
    t0 = time.perf_counter()
    run.driver.open_patient(name)
    run.rec.action("ouvrir le dossier", (time.perf_counter() - t0) * 1000,
                   "appels INSi/DMP lancés à l'ouverture")


@when(parsers.re(r'le médecin cherche "(?P<family>[^"]*)" "(?P<given>[^"]*)"'
                r'(?: exerçant à "(?P<city>[^"]*)")? dans l\'annuaire$'))
def search_directory(run: Run, family: str, given: str, city: str | None) -> None:
    run.facts.setdefault("directory_searches", []).append({"family": family, "given": given, "city": city or ""})
    run.facts["directory_shown"] = run.driver.search_directory(family, given, city or "")


@when("le médecin relève sa messagerie")
def read_inbox(run: Run) -> None:
    run.facts["inbox_shown"] = run.driver.read_inbox()


@when(parsers.parse('le médecin "{national_id}" demande à se connecter avec Pro Santé Connect par CIBA'))
def ciba_login(run: Run, national_id: str) -> None:
    run.rec.meta["personas"].append({"role": "professionnel", "name": "Dr KIT DOC0036624", "rpps": national_id})
    run.facts.update(ciba_since=time.time(), national_id=national_id)
    run.driver.login_ciba(national_id)


@when(parsers.re(r"le professionnel (?P<decision>valide|refuse) la demande sur son téléphone$"))
def ciba_decision(run: Run, decision: str) -> None:
    deadline, pending = time.monotonic() + 20, None
    while time.monotonic() < deadline and pending is None:
        pending = next((r for r in run.sims.call("psc", "GET", "/state")["state"]["ciba"]
                        if r["status"] == "pending" and r["national_id"] == run.facts["national_id"]
                        and (run.env.against != "reference"  # the reference LGC's client id names its port
                             or r["client_id"].endswith(str(urlsplit(run.lgc_url).port)))), None)
        if pending is None:
            time.sleep(0.3)
    assert pending is not None, "aucune demande CIBA de ce LGC en attente chez Pro Santé Connect"
    run.facts["auth_req_id"] = pending["auth_req_id"]
    run.sims.call("psc", "POST", "/state", {"ciba": {"auth_req_id": pending["auth_req_id"],
                                                     "decision": "approve" if decision == "valide" else "refuse"}})


@when("le médecin intègre au dossier le compte rendu reçu")
def integrate_report(run: Run) -> None:
    run.facts["report_integration"] = run.driver.integrate_from_inbox(run.facts["report"]["subject"])


@when("le médecin lit l'Appli carte Vitale du patient")
def read_apcv(run: Run) -> None:
    run.driver.read_apcv(run.facts["ins"])


@when("le médecin rédige une ordonnance de produits de santé")
def write_prescription(run: Run) -> None:
    run.driver.write_prescription(PRESCRIPTION, mss=True, delay_s=2 if run.facts.get("latency_ms") else 1)


@when(parsers.parse("le médecin rédige une ordonnance de produits de santé envoyée au DMP dans {seconds:d} secondes"))
def write_prescription_deferred(run: Run, seconds: int) -> None:
    run.facts["defer_s"] = seconds
    run.driver.write_prescription(PRESCRIPTION, mss=False, delay_s=seconds)


@when("le médecin valide l'ordonnance")
def validate_prescription(run: Run) -> None:
    run.facts["validated_at"] = time.time()
    run.driver.validate_prescription()


@when("le médecin enregistre l'opposition du patient à l'alimentation de son DMP")
def record_opposition(run: Run) -> None:
    run.facts["opposed_at"] = time.time()
    run.driver.record_consent(consultation=False, opposition=True)


@when("le médecin enregistre le retrait du consentement du patient")
def withdraw_consent(run: Run) -> None:
    run.facts["withdrawn_at"] = time.time()
    run.driver.record_consent(consultation=False)


@when(parsers.parse('le médecin déclare un accès en urgence au DMP (bris de glace) avec le motif "{reason}"'))
def emergency_access(run: Run, reason: str) -> None:
    run.facts["emergency_reason"] = reason
    run.driver.record_consent(consultation=False, emergency_reason=reason)


@when("le médecin rend l'ordonnance invisible au patient en un clic")
def make_invisible(run: Run) -> None:
    run.driver.outbox_action("invisible")


@when("le médecin envoie l'ordonnance au DMP sans attendre")
def send_now(run: Run) -> None:
    run.driver.outbox_action("envoyer")


@when(parsers.parse("le médecin {verb} l'envoi de l'ordonnance au DMP"))
def outbox_verb(run: Run, verb: str) -> None:
    action = {"suspend": "suspendre", "reprend": "reprendre", "annule": "annuler"}[verb]
    run.facts[f"{action}_at"] = time.time()
    run.driver.outbox_action(action)


@when("le médecin rend l'ordonnance visible au patient depuis la liste du DMP")
def make_visible(run: Run) -> None:
    run.facts["visible_at"] = time.time()
    run.driver.make_visible_in_dmp("Ordonnance")


@when(parsers.parse("le temps du DMP avance de {months:d} mois"))
def dmp_clock(run: Run, months: int) -> None:
    run.facts["clock_advanced_at"] = time.time()
    run.sims.call("dmp", "POST", "/clock", {"advance": f"P{months}M"})


@when(parsers.parse('le médecin tente de supprimer du DMP le document "{title}" d\'un confrère'))
def delete_colleagues_document(run: Run, title: str) -> None:
    run.facts["colleague_doc"] = title
    run.facts["delete_attempt_at"] = time.time()
    run.facts["delete_answer"] = run.driver.delete_in_dmp(title)


@when("le médecin supprime l'ordonnance du DMP")
def delete_own_prescription(run: Run) -> None:
    run.facts["deleted_at"] = time.time()
    run.facts["delete_answer"] = run.driver.delete_in_dmp("Ordonnance")


@when(parsers.parse('le médecin demande l\'envoi au DMP du document "{title}" de son dossier'))
def send_local(run: Run, title: str) -> None:
    run.facts["local_title"] = title
    run.facts.setdefault("send_answers", []).append(run.driver.send_local_document(title))


@when(parsers.parse('le médecin intègre au dossier, en une seule sélection, les documents "{a}" et "{b}" du DMP'))
def integrate_two(run: Run, a: str, b: str) -> None:
    run.facts["integrate_at"] = time.time()
    run.facts["integration_answer"] = run.driver.integrate_from_dmp([a, b])


@when(parsers.parse('le médecin intègre {which} de "{title}" depuis la liste du DMP'))
def integrate_one(run: Run, which: str, title: str) -> None:
    run.facts["integrate_at"] = time.time()
    run.facts["integration_answer"] = run.driver.integrate_from_dmp([title])


@when("le médecin demande d'actualiser les documents du DMP")
def refresh_dmp(run: Run) -> None:
    run.facts["refresh_answer"] = run.driver.refresh_dmp_documents()


@when("le DMP redevient joignable")
def dmp_back(run: Run) -> None:
    run.sims.clear_faults("dmp")


@when("le médecin qualifie l'identité en un clic avec la carte nationale d'identité")
def qualify(run: Run) -> None:
    run.driver.qualify_one_click("cni")


@when("le médecin enregistre le consentement du patient")
def consent(run: Run) -> None:
    run.driver.record_consent()


# ------------------------------------------------------------------------------------------------- then


@then("l'identité du patient est qualifiée d'après l'Appli carte Vitale")
def qualified_by_apcv_then(run: Run) -> None:
    run.driver.wait_identity("qualifiee")
    ops = [e["operation"] for e in run.sims.journal("apcv", run.id)]
    _check(run, "ApCV : authentification de proximité puis restitution du contexte",
           ops[:2] == ["authentifierUtilisateurProximite", "restituerContexteApCV"], ", ".join(ops),
           "journal ApCV")
    _check(run, "Identité qualifiée affichée sans clic", run.driver.identity_status() == "qualifiee",
           run.driver.identity_status(), "écran du LGC")


@then(parsers.re(r"l'identité du patient est (?P<status>récupérée|qualifiée|provisoire)$"))
def identity_status(run: Run, status: str) -> None:
    code = {"récupérée": "recuperee", "qualifiée": "qualifiee", "provisoire": "provisoire"}[status]
    run.driver.wait_identity(code)
    _check(run, f"Identité {status} affichée sans clic", run.driver.identity_status() == code, code, "écran du LGC")


@then("l'appel INSi passe de « en cours » à « réussi » sans bloquer l'interface")
def insi_transitions(run: Run) -> None:
    seen = run.driver.watch_call("insi", within="#identite", during="INSi en cours")
    _check(run, "État INSi : en cours puis réussi", seen == ["en_cours", "reussi"], " → ".join(seen), "écran du LGC")


@then("l'appel Ordonnance numérique passe de « en cours » à « réussi » sans bloquer l'interface")
def on_transitions(run: Run) -> None:
    seen = run.driver.watch_call("on", within="#ordonnance", during="Ordonnance numérique en cours")
    _check(run, "État Ordonnance numérique : en cours puis réussi", seen == ["en_cours", "reussi"], " → ".join(seen),
           "écran du LGC")


@then("le numéro unique et le QR code figurent sur l'ordonnance")
def on_number_and_qr(run: Run) -> None:
    number = run.driver.on_number() or ""
    created = [e for e in run.sims.journal("on", run.id, "creerEPrescription") if (e.get("status") or 0) < 400]
    _check(run, "ON a créé l'ordonnance et renvoyé le numéro affiché",
           bool(number) and any(number in (e["response"]["body"] or "") for e in created), number, "journal ON")
    ok, detail = run.driver.prescription_has_qr()
    _check(run, "L'ordonnance imprimée (PDF/A) porte le QR code", ok, detail, "document produit par le LGC")
    run.facts["on_number"] = number


@then("l'ordonnance est envoyée au DMP")
def sent_to_dmp(run: Run) -> None:
    state = run.driver.wait_dmp_sent()
    _check(run, "Envoi au DMP réussi (file d'attente)", state == "envoye", state, "écran du LGC")
    subs = [e for e in run.sims.journal("dmp", run.id, "ITI-41") if run.facts["ins"] in (e["request"]["body"] or "")]
    ok = any("57833-6" in (e["request"]["body"] or "") for e in subs)
    _check(run, "Le DMP a reçu l'ordonnance (ITI-41, typeCode 57833-6, INS du patient)", ok,
           f"{len(subs)} requête(s) ITI-41", "journal DMP")


@then("l'ordonnance est envoyée au patient par MSSanté")
def sent_by_mss(run: Run) -> None:
    seen = run.driver.wait_call_done("mss", within="#ordonnance")
    _check(run, "Envoi MSSanté au patient réussi", seen == "reussi", str(seen), "écran du LGC")
    address = f"{run.facts['ins']}@patient.mssante.fr"
    box = run.sims.call("mss", "GET", f"/mss/mailboxes/{address}")
    msgs = [m for m in box.get("messages", []) if "XDM/1.0/DDM" in (m.get("subject") or "")]
    _check(run, f"La messagerie {address} a reçu le message XDM", bool(msgs), f"{len(msgs)} message(s)",
           "état du simulateur MSSanté")
    raw = run.sims.call("mss", "GET", f"/mss/mailboxes/{address}/messages/{msgs[-1]['uid']}")
    _check(run, "Archive IHE_XDM.zip valide : METADATA.XML et le CDA du patient", _xdm_ok(raw, run.facts["ins"]),
           f"{len(raw)} octets", "message reçu par le simulateur MSSanté")


def _patient_message(run: Run) -> tuple[dict, email.message.Message, bytes]:
    """The LGC's last submission to the patient's MSSanté address (the simulator's record of it, with its findings),
    and the message as the patient's mailbox received it."""
    address = f"{run.facts['ins']}@patient.mssante.fr"
    # This run's submissions, by the ids the simulator gave in its DATA replies (mailboxes are shared by the runs)
    ids = {m for e in run.sims.journal("mss", run.id, "SMTP DATA")
           for m in re.findall(r"\(id ([0-9a-f]+)", (e.get("response") or {}).get("body") or "")}
    subs = [s for s in run.sims.call("mss", "GET", "/mss/findings") if s["id"] in ids and address in s["rcpts"]]
    assert subs, f"aucune soumission SMTP de ce déroulé vers {address} ({len(ids)} soumission(s) du déroulé)"
    box = run.sims.call("mss", "GET", f"/mss/mailboxes/{address}")
    msgs = [m for m in box.get("messages", []) if m.get("submission") == subs[-1]["id"]]
    assert msgs, f"la soumission {subs[-1]['id']} n'est pas dans la boîte {address}"
    raw = run.sims.call("mss", "GET", f"/mss/mailboxes/{address}/messages/{msgs[-1]['uid']}")
    return subs[-1], email.message_from_bytes(raw), raw


def _xdm_cda(raw: bytes) -> etree._Element | None:
    """The CDA document inside the message's IHE_XDM.zip."""
    message = email.message_from_bytes(raw)
    zips = [part.get_payload(decode=True) for part in message.walk() if part.get_filename() == "IHE_XDM.zip"]
    if not zips:
        return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    with zipfile.ZipFile(io.BytesIO(zips[0])) as z:
        docs = [n for n in z.namelist() if n.startswith("IHE_XDM/SUBSET01/") and n.upper().endswith(".XML")
                and not n.endswith("METADATA.XML")]
        return etree.fromstring(z.read(docs[0]), parser) if docs else None


@then("le message au patient porte l'INS qualifiée, le type du document et la référence du logiciel, sans anomalie")
def patient_message_headers(run: Run) -> None:
    sub, msg, raw = _patient_message(run)
    errors = [f"{f.get('code')}: {f.get('message')}" for f in sub.get("findings", []) if f.get("severity") == "erreur"]
    _check(run, "Aucune anomalie relevée par le simulateur MSSanté (celles que le mode strict refuse)", not errors,
           "; ".join(errors) or f"{len(sub.get('findings', []))} constat(s), aucun en erreur",
           "constats du simulateur MSSanté")
    cda = _xdm_cda(raw)
    cda_ins = cda.xpath("string(//*[local-name()='recordTarget']//*[local-name()='id']/@extension)") \
        if cda is not None else ""
    cda_code = cda.xpath("string(/*/*[local-name()='code']/@code)") if cda is not None else ""
    to = email.utils.getaddresses(msg.get_all("To", []))
    _check(run, "Destinataire construit depuis l'INS qualifiée du dossier : <INS>@patient.mssante.fr, l'INS du CDA",
           [a for _n, a in to] == [f"{run.facts['ins']}@patient.mssante.fr"] and cda_ins == run.facts["ins"],
           f"To: {msg.get('To')} ; INS du CDA {cda_ins or '?'}", "message reçu par le simulateur MSSanté")
    _check(run, "Canal de réponse fermé : en-tête « X-MSS-MES: FIN »", (msg.get("X-MSS-MES") or "").strip() == "FIN",
           f"X-MSS-MES: {msg.get('X-MSS-MES')}", "message reçu par le simulateur MSSanté")
    stats = {h: (msg.get(h) or "").strip() for h in ("X-MSS-INS", "X-MSS-CODECDA", "X-MSS-NIL")}
    _check(run, "En-têtes statistiques : X-MSS-INS « O » (INS qualifiée), X-MSS-CODECDA = code du CDA, X-MSS-NIL",
           stats["X-MSS-INS"] == "O" and bool(cda_code) and stats["X-MSS-CODECDA"] == cda_code
           and bool(stats["X-MSS-NIL"]),
           " ; ".join(f"{k}: {v or '(absent)'}" for k, v in stats.items()) + f" ; code du CDA {cda_code or '?'}",
           "message reçu par le simulateur MSSanté")
    subject = str(email.header.make_header(email.header.decode_header(msg.get("Subject", ""))))
    _check(run, "Objet « XDM/1.0/DDM » suivi du patient, comme le CDA", subject.startswith("XDM/1.0/DDM")
           and "BOUCHER" in subject.upper(), subject, "message reçu par le simulateur MSSanté")
    run.facts["mss_sender"] = sub["sender"]


@then("une réponse du patient au médecin est refusée car le canal de réponse est fermé")
def patient_reply_refused(run: Run) -> None:
    patient, doctor = f"{run.facts['ins']}@patient.mssante.fr", run.facts["mss_sender"]
    before = len(run.sims.call("mss", "GET", f"/mss/mailboxes/{doctor}").get("messages", []))
    # The patient answers from Mon espace santé: the platform delivers it to the MSSanté operator (the simulator's
    # injection route), which applies the closed channel.
    resp = run.sims.http.post(f"{run.sims.urls['mss']}/_bench/mss/inject", json={
        "from": patient, "to": doctor, "subject": "Re: votre ordonnance", "body": "Merci docteur, une question…"})
    detail = resp.json().get("detail", "") if "json" in resp.headers.get("content-type", "") else resp.text[:200]
    _check(run, "La réponse du patient est refusée : canal fermé par X-MSS-MES: FIN", resp.status_code == 409
           and "canal" in detail, f"{resp.status_code} {detail}", "simulateur MSSanté (injection)")
    after = len(run.sims.call("mss", "GET", f"/mss/mailboxes/{doctor}").get("messages", []))
    refused = [s for s in run.sims.call("mss", "GET", "/mss/findings") if s.get("sender") == patient
               and any(f.get("code") == "CANAL-FERME" for f in s.get("findings", []))]
    _check(run, "Rien n'arrive dans la boîte du médecin ; le refus est tracé (CANAL-FERME)",
           after == before and bool(refused), f"{before} → {after} message(s) ; {len(refused)} refus tracé(s)",
           "état du simulateur MSSanté")


_FINGERPRINT = re.compile(r"\*\*\*MASQUE:([0-9a-f]+)\*\*\*")


def _psc_login(run: Run) -> tuple[str, list[dict], list[dict]]:
    """This run's LGC as a PSC client: its client_id, its token exchanges and its browser's authorization requests.
    PSC asks for no client certificate (a browser has none), so its exchanges carry no run: they are this run's LGC's
    by the redirect_uri (the LGC's own URL) and the client_id it names, since this run's login."""
    since = run.facts.get("psc_since", 0) - 1
    every = run.sims.call("psc", "GET", "/journal")["entries"]
    # a vendor's LGC (a desktop one redirects to a loopback port of its own): this run's requests since its login
    mine = (lambda uri: uri.startswith(run.lgc_url)) if run.env.against == "reference" else (lambda uri: True)
    authorize = [e for e in every if e["operation"] == "authorize" and e.get("method") == "GET"
                 and e["received_at"] >= since
                 and mine(dict(parse_qsl(urlsplit(e["url"]).query)).get("redirect_uri", ""))]
    assert authorize, f"aucune demande d'autorisation de ce LGC ({run.lgc_url}) dans le journal Pro Santé Connect"
    client_id = dict(parse_qsl(urlsplit(authorize[0]["url"]).query)).get("client_id", "")

    def of_client(e: dict) -> bool:
        auth = dict((k.lower(), v) for k, v in e["request"]["headers"]).get("authorization", "")
        form = dict(parse_qsl(e["request"]["body"] or ""))
        return f"(client_id {client_id})" in auth or form.get("client_id") == client_id

    tokens = [e for e in every if e["operation"] == "token" and e["received_at"] >= since
              and (e.get("status") or 0) < 400 and of_client(e)]
    assert tokens, f"aucun échange de jeton du client {client_id} avec Pro Santé Connect"
    return client_id, tokens, authorize


@then("Pro Santé Connect a authentifié le médecin par un code d'autorisation avec PKCE (S256) et le niveau eIDAS 1")
def psc_code_flow(run: Run) -> None:
    client_id, tokens, authorize = _psc_login(run)
    query = dict(parse_qsl(urlsplit(authorize[-1]["url"]).query)) if authorize else {}
    _check(run, "Demande d'autorisation : response_type=code, PKCE (code_challenge, méthode S256), acr_values=eidas1",
           query.get("response_type") == "code" and query.get("code_challenge_method") == "S256"
           and bool(query.get("code_challenge")) and "eidas1" in query.get("acr_values", "").split(),
           f"client {client_id} : " + ", ".join(f"{k}={query.get(k, '(absent)')}" for k in
                                                ("response_type", "code_challenge_method", "acr_values")),
           "journal Pro Santé Connect")
    form = dict(parse_qsl(tokens[0]["request"]["body"] or ""))
    _check(run, "Échange du code côté serveur : grant_type=authorization_code avec code_verifier, jetons délivrés",
           form.get("grant_type") == "authorization_code" and bool(form.get("code_verifier"))
           and "access_token" in ((tokens[0].get("response") or {}).get("body") or ""),
           f"grant_type={form.get('grant_type')}, code_verifier {'présent' if form.get('code_verifier') else 'absent'}",
           "journal Pro Santé Connect")
    run.facts["psc_client_id"] = client_id


@then(parsers.parse('le LGC a associé l\'identité Pro Santé Connect au compte local "{login}" qui existait déjà'))
def psc_account_linked(run: Run, login: str) -> None:
    shown = run.driver.account()
    _check(run, f"Connecté sous le compte local « {login} », associé à l'identité Pro Santé Connect",
           login in shown and "899700366240" in shown, shown, "écran du LGC")


@then("le DMP et la messagerie ont accepté le jeton de cette connexion, sans nouvelle authentification")
def psc_session_reused(run: Run) -> None:
    client_id, tokens, authorize = _psc_login(run)
    issued = {m for e in tokens for m in _FINGERPRINT.findall(
        json.loads((e.get("response") or {}).get("body") or "{}").get("access_token", ""))}
    dmp = run.sims.journal("dmp", run.id)
    bearers = {m for e in dmp for m in _FINGERPRINT.findall(
        dict((k.lower(), v) for k, v in e["request"]["headers"]).get("authorization", ""))}
    _check(run, "Les requêtes DMP portent un jeton délivré par Pro Santé Connect à cette connexion (même empreinte)",
           bool(dmp) and bool(bearers) and bearers <= issued,
           f"{len(dmp)} requête(s) DMP ; jetons {sorted(bearers)} ; délivrés {sorted(issued)}", "journaux DMP et PSC")
    auths = [e for e in run.sims.journal("mss", run.id, "SMTP AUTH") if "XOAUTH2" in (e["request"]["body"] or "")]
    _check(run, "La messagerie a accepté l'authentification XOAUTH2 par le jeton Pro Santé Connect",
           bool(auths) and all(((e.get("response") or {}).get("body") or "").startswith("235") for e in auths),
           "; ".join(((e.get("response") or {}).get("body") or "")[:40] for e in auths) or "aucune", "journal MSSanté")
    _check(run, "Une seule authentification auprès de Pro Santé Connect pour toute la session",
           len(authorize) == 1, f"{len(authorize)} demande(s) d'autorisation du client {client_id}",
           "journal Pro Santé Connect")


# ------------------------------------------------------------ periodic INS verification, INS changed (SC.INS.13)

@given(parsers.parse('l\'Assurance maladie a attribué à "{name}", qualifiée il y a plus de 4 ans, le nouveau '
                     'matricule INS "{matricule}"'))
def ins_changed(run: Run, name: str, matricule: str) -> None:
    before = {c["new_ins"] for c in run.sims.call("insi", "GET", "/state")["state"]["changes"]}
    persona = {"ADRUN": "275126322074974"}[name]  # the INS the file holds (personas, reference LGC demo data)
    state = run.sims.call("insi", "POST", "/state", {"changes": [{"ins": persona, "new_matricule": matricule}]})
    state = state.get("state", state)
    new = next(c for c in state["changes"] if c["old_ins"] == persona and c["new_ins"] not in before)
    run.rec.meta["personas"].append({"role": "patient", "name": name, "ins": persona})
    # the INS as the file and the services carry it: the matricule and its key (15 characters)
    run.facts.update(patient=name, old_matricule=persona, new_matricule=new["new_ins"])


@then("le LGC a vérifié l'identité auprès de l'INSi sans action de l'utilisateur, et l'INSi a répondu le nouvel INS "
      "avec l'ancien dans son historique")
def insi_verified(run: Run) -> None:
    run.driver.wait_call_done("insi", within="#identite")
    requests = _insi_requests(run)
    # INSi writes the 13-character matricule and its key apart (NumIdentifiant, Cle)
    old, new = run.facts["old_matricule"][:13], run.facts["new_matricule"][:13]

    def answered_change(e: dict) -> bool:
        body = (e.get("response") or {}).get("body") or ""
        histo = body.split("INSHISTO", 1)[1] if "INSHISTO" in body else ""
        return e.get("status") == 200 and f">{new}<" in body and f">{old}<" in histo

    _check(run, "Interrogation INSi (traits) à l'ouverture d'une identité récupérée depuis plus de 4 ans ; réponse : "
           "nouvel INS, l'ancien dans INSHISTO", bool(requests) and any(answered_change(e) for e in requests),
           f"{len(requests)} requête(s) INSi", "journal INSi")


@then("le dossier porte le nouvel INS, l'ancien dans son historique, et l'identité reste qualifiée")
def ins_replaced_on_screen(run: Run) -> None:
    old, new = run.facts["old_matricule"], run.facts["new_matricule"]
    shown = run.driver.ins_shown(wait_for=new)
    _check(run, "Nouvel INS au dossier, ancien INS dans l'historique, statut qualifié conservé",
           shown.get("ins") == new and old in shown.get("precedents", []) and shown.get("statut") == "qualifiee",
           f"INS {shown.get('ins')}, précédents {shown.get('precedents')}, statut {shown.get('statut')}",
           "écran du LGC")


@then("les traces du dossier reprennent la vérification INSi et le remplacement de l'INS, avec l'utilisateur")
def ins_replacement_traced(run: Run) -> None:
    old, new = run.facts["old_matricule"], run.facts["new_matricule"]
    traces = run.driver.identity_traces()
    checked = [t for t in traces if t["operation"] == "insi_recherche"
               and t["detail"].get("motif_appel") == "verification"]
    replaced = [t for t in traces if t["operation"] == "ins_remplacee"
                and (t["detail"].get("ancien") or {}).get("matricule") == old
                and (t["detail"].get("nouveau") or {}).get("matricule") == new]
    _check(run, "Traces : la vérification INSi (motif « verification ») et le remplacement ancien → nouvel INS, "
           "datés, avec l'utilisateur", bool(checked) and bool(replaced) and all(t.get("user") for t in replaced),
           "; ".join(f"{t['at']} {t['user']} {t['operation']}" for t in checked + replaced) or "aucune",
           "écran du LGC (traces)")


@then("le DMP n'est interrogé qu'avec le nouvel INS")
def dmp_with_new_ins(run: Run) -> None:
    old, new = run.facts["old_matricule"], run.facts["new_matricule"]
    deadline = time.monotonic() + 30
    entries: list[dict] = []
    while time.monotonic() < deadline:  # the DMP call follows the verification in the background
        entries = run.sims.journal("dmp", run.id)
        if any(new in (e["request"]["body"] or "") for e in entries):
            break
        time.sleep(0.5)
    bodies = [e["request"]["body"] or "" for e in entries]
    _check(run, "Requêtes DMP avec le nouvel INS, aucune avec l'ancien (pas d'envoi avant la vérification)",
           any(new in b for b in bodies) and not any(old in b for b in bodies),
           f"{sum(new in b for b in bodies)} requête(s) avec le nouvel INS, {sum(old in b for b in bodies)} avec "
           "l'ancien", "journal DMP")


# ------------------------------------------------------ child health certificates to the CSE platform (LGC.CSE.12)

CSE_ADDRESS = "certificatsdesante@plateformecse.mssante.fr"


def _cse_submissions(run: Run) -> list[dict]:
    """This run's SMTP submissions to the CSE platform (by the ids of its DATA replies), with their findings."""
    ids = {m for e in run.sims.journal("mss", run.id, "SMTP DATA")
           for m in re.findall(r"\(id ([0-9a-f]+)", (e.get("response") or {}).get("body") or "")}
    return [s for s in run.sims.call("mss", "GET", "/mss/findings") if s["id"] in ids and CSE_ADDRESS in s["rcpts"]]


@when(parsers.parse("le médecin rédige le certificat de santé {kind} de l'enfant, sans le valider"))
def write_certificate(run: Run, kind: str) -> None:
    exam = datetime.now(UTC).date().isoformat()
    run.facts.update(certificate=kind, certificate_exam=exam)
    run.driver.write_child_certificate(kind, exam, 8.9, 71.5, 44.5)


@then("aucun message n'est parti à la plateforme des certificats de santé")
def nothing_to_cse(run: Run) -> None:
    subs = _cse_submissions(run)
    _check(run, "Certificat non validé : aucun envoi à la plateforme CSE", not subs, f"{len(subs)} envoi(s)",
           "journal et constats du simulateur MSSanté")


@when("le médecin valide le certificat")
def validate_certificate(run: Run) -> None:
    run.facts["certificate_send"] = run.driver.validate_child_certificate()


@then("le LGC a envoyé de lui-même un seul message à la plateforme des certificats de santé, le certificat en CDA "
      "dans IHE_XDM, sans anomalie")
def certificate_sent(run: Run) -> None:
    kind = run.facts["certificate"]
    _check(run, "Envoi à la plateforme CSE affiché réussi, sans autre action", run.facts["certificate_send"] ==
           "reussi", str(run.facts["certificate_send"]), "écran du LGC")
    subs = _cse_submissions(run)
    findings = [f for s in subs for f in s.get("findings", [])]
    errors = [f"{f['code']}: {f['message']}" for f in findings if f.get("severity") == "erreur"]
    cse = [f["message"] for f in findings if f.get("code") == "CSE" and f.get("severity") == "info"]
    _check(run, f"Un seul message à {CSE_ADDRESS}, accepté, portant le certificat {kind} (templateId du volet CSE, "
           "code CERT_DECL)", len(subs) == 1 and subs[0].get("accepted") and len(cse) == 1 and f" {kind} " in cse[0],
           f"{len(subs)} envoi(s) ; {'; '.join(cse) or 'aucun certificat reconnu'}",
           "constats du simulateur MSSanté")
    _check(run, "Aucune anomalie relevée par le simulateur (objet XDM, X-MSS-CODECDA, X-MSS-INS, X-MSS-NIL…)",
           bool(subs) and not errors, "; ".join(errors) or f"{len(findings)} constat(s), aucun en erreur",
           "constats du simulateur MSSanté")


# --------------------------------------------------------------- mailbox auto-configuration (SC.MSS/CONF.04)

def _advertised(document: str) -> dict[str, int]:
    """The STARTTLS ports an auto-configuration document advertises, by protocol."""
    out = {}
    for kind, block in re.findall(r'<(?:incoming|outgoing)Server type="(\w+)">([\s\S]*?)</(?:incoming|outgoing)Server>',
                                  document):
        port = re.search(r"<port>(\d+)</port>", block)
        if port and "<socketType>STARTTLS</socketType>" in block and "OAuth2" in block:
            out.setdefault(kind.lower(), int(port.group(1)))
    return out


@when("le médecin configure automatiquement sa messagerie MSSanté")
def configure_mailbox(run: Run) -> None:
    run.facts["servers_shown"] = run.driver.configure_mailbox()


@then("le LGC a lu le document de configuration automatique de l'opérateur et affiche les serveurs qu'il annonce")
def autoconfig_read(run: Run) -> None:
    reads = [e for e in run.sims.journal("mss", run.id) if e.get("method") == "GET"
             and "config-v1.1.xml" in (e.get("url") or "") and e.get("status") == 200]
    advertised = _advertised(((reads[-1].get("response") or {}).get("body") or "") if reads else "")
    run.facts.update(advertised=advertised, autoconfig_read_at=reads[0]["received_at"] if reads else 0.0)
    _check(run, "Document de configuration automatique lu (GET …/config-v1.1.xml, 200) : SMTP et IMAP en STARTTLS "
           "avec OAuth2", bool(reads) and set(advertised) == {"smtp", "imap"},
           f"{len(reads)} lecture(s) ; annoncés {advertised}", "journal MSSanté")
    shown = run.facts["servers_shown"]
    _check(run, "Le LGC affiche les serveurs annoncés",
           bool(advertised) and all(f":{port}" in shown for port in advertised.values()), shown, "écran du LGC")


@then("la relève s'est connectée au serveur IMAP annoncé, en STARTTLS avec XOAUTH2, après la lecture du document")
def imap_as_advertised(run: Run) -> None:
    port = run.facts["advertised"].get("imap")
    imap = [e for e in run.sims.journal("mss", run.id) if e.get("protocol") == "imap"]
    auth = [e for e in imap if e["operation"] == "IMAP AUTHENTICATE"]
    _check(run, f"Connexions IMAP au port annoncé ({port}), après la lecture du document",
           bool(imap) and all((e.get("url") or "").endswith(f":{port}") for e in imap)
           and min(e["received_at"] for e in imap) > run.facts["autoconfig_read_at"],
           ", ".join(sorted({e.get("url") or "?" for e in imap})) or "aucune connexion", "journal MSSanté")
    _check(run, "Authentification XOAUTH2 acceptée, sous TLS (STARTTLS)",
           bool(auth) and all("XOAUTH2" in (e["request"]["body"] or "") and e.get("tls") and e.get("status") == 200
                              for e in auth), f"{len(auth)} authentification(s)", "journal MSSanté")


# ------------------------------------------------------------------- INSi by carte Vitale (SC.INS.14)

def _insi_code(entry: dict) -> str:
    found = re.search(r"CodeCR>(\d\d)<", (entry.get("response") or {}).get("body") or "")
    return found.group(1) if found else ""


@then("l'INSi n'a trouvé aucune identité avec les traits du dossier")
def traits_not_found(run: Run) -> None:
    run.driver.wait_call_done("insi", within="#identite")
    requests = _insi_requests(run)
    _check(run, "Recherche INSi par les traits saisis : aucune identité (CR 01)",
           bool(requests) and all(_insi_code(e) == "01" for e in requests),
           ", ".join(f"CR {_insi_code(e) or '?'}" for e in requests) or "aucune requête", "journal INSi")


@when(parsers.parse('le médecin lit la carte Vitale de test "{card}" de la patiente'))
def read_card(run: Run, card: str) -> None:
    run.facts["card"] = run.sims.call("apcv", "GET", f"/carte-vitale/{card}")  # what the card holds
    run.driver.read_carte_vitale(card)


@then(parsers.parse("l'INSi a été interrogé par la carte Vitale : NIR de l'ouvrant droit, date et rang de naissance "
                    "{rank:d} de la patiente, couverture renseignée"))
def insi_by_card(run: Run, rank: int) -> None:
    run.driver.wait_call_done("insi", operation="recherche_carte_vitale", within="#identite")
    od = run.facts["card"]["ouvrant_droit"]["nir"]
    requests = run.sims.journal("insi", run.id, "rechercherInsAvecCarteVitale")

    def complete(e: dict) -> bool:
        body = e["request"]["body"] or ""
        recvitale = body.split("RECVITALE", 1)[1] if "RECVITALE" in body else ""
        coverage = body.split("COUVERTURE", 1)[1] if "COUVERTURE" in body else ""
        return (f">{od[:13]}<" in recvitale and f">{rank}<" in recvitale and "ASSURE" in coverage
                and "BENEFICIAIRE" in coverage and _insi_code(e) == "00")

    _check(run, f"rechercherInsAvecCarteVitale : MatriculeOD de la carte, date et rang de naissance ({rank}), "
           "ContexteBAM/COUVERTURE renseignée ; réponse 00", len(requests) == 1 and complete(requests[0]),
           f"{len(requests)} requête(s), CR {', '.join(_insi_code(e) for e in requests)}", "journal INSi")


@when("le médecin enregistre l'identité renvoyée par l'INSi")
def accept_insi(run: Run) -> None:
    run.driver.accept_insi()


@then(parsers.parse('aucune requête n\'est partie au DMP pour l\'INS "{ins}" tant que l\'identité n\'est pas '
                    'qualifiée'))
def no_dmp_before_qualification(run: Run, ins: str) -> None:
    sent = [e for e in run.sims.journal("dmp", run.id) if ins in (e["request"]["body"] or "")]
    _check(run, "Identité récupérée (non qualifiée) : aucun appel au DMP", not sent, f"{len(sent)} requête(s) DMP",
           "journal DMP")


# ---------------------------------------------------------------- API Pro Santé Connectée (SC.INS/PSC.50)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def _issued(entry: dict) -> str:
    """The fingerprint of the access token a PSC token answer issued (the journal masks it, keeping 8 hex)."""
    try:
        body = json.loads((entry.get("response") or {}).get("body") or "{}")
    except ValueError:
        return ""
    found = _FINGERPRINT.search(str(body.get("access_token", ""))) if isinstance(body, dict) else None
    return found.group(1) if found else ""


def _bearer(entry: dict) -> str:
    auth = dict((k.lower(), v) for k, v in entry["request"]["headers"]).get("authorization", "")
    found = _FINGERPRINT.search(auth) if auth.lower().startswith("bearer") else None
    return found.group(1) if found else ""


def _api_exchanges(run: Run) -> tuple[list[dict], set[str]]:
    """This LGC's token exchanges at PSC since its login — {"subject", "issued", "audience", "at"}, fingerprints as
    PSC's journal keeps them — and the PSC access tokens its login (and refreshes) received."""
    _client_id, tokens, _authorize = _psc_login(run)
    exchanges, session = [], set()
    for e in tokens:
        form = dict(parse_qsl(e["request"]["body"] or ""))
        if form.get("grant_type") == TOKEN_EXCHANGE:
            subject = _FINGERPRINT.search(form.get("subject_token", ""))
            exchanges.append({"subject": subject.group(1) if subject else "", "issued": _issued(e),
                              "audience": form.get("audience", ""), "at": e["received_at"]})
        elif _issued(e):
            session.add(_issued(e))
    return exchanges, session


def _insi_requests(run: Run, since: float = 0.0) -> list[dict]:
    return [e for e in run.sims.journal("insi", run.id, "rechercherInsAvecTraitsIdentite") if e["received_at"] >= since]


@given("le LGC appelle l'INSi, le DMP et l'Ordonnance numérique par l'API Pro Santé Connectée")
def api_psc_mode(run: Run) -> None:
    run.driver.use_api_psc()


@then("Pro Santé Connect a échangé le jeton de la session du médecin contre un jeton d'API, une seule fois")
def api_token_exchanged(run: Run) -> None:
    exchanges, session = _api_exchanges(run)
    _check(run, "Échange de jeton (RFC 8693) : le jeton de la session Pro Santé Connect du médecin contre un jeton "
           "d'API, une fois pour toutes les requêtes",
           len(exchanges) == 1 and exchanges[0]["subject"] in session and bool(exchanges[0]["issued"]),
           "; ".join(f"jeton {x['subject']} → jeton d'API {x['issued']} (audience {x['audience'] or 'par défaut'})"
                     for x in exchanges) or "aucun échange", "journal Pro Santé Connect")
    run.facts["api_tokens"] = [x["issued"] for x in exchanges]


@then("chaque requête INSi porte le jeton d'API, l'assertion du médecin et le contexte LPS, et l'INSi y a répondu")
def insi_with_api_token(run: Run) -> None:
    api = set(run.facts.get("api_tokens", []))
    requests = _insi_requests(run)
    nid = next((p["rpps"] for p in run.rec.meta["personas"] if p["role"] == "professionnel"), "")

    def complete(e: dict) -> bool:
        body = e["request"]["body"] or ""
        return (_bearer(e) in api and "ContexteLPS" in body and "Assertion" in body and f">{nid}<" in body
                and e.get("status") == 200)

    _check(run, "INSi : Authorization: Bearer <jeton d'API>, avec l'assertion du professionnel et le ContexteLPS ; "
           "réponse 200", bool(requests) and all(complete(e) for e in requests),
           "; ".join(f"HTTP {e.get('status')} jeton {_bearer(e) or 'aucun'}" for e in requests) or "aucune requête",
           "journaux INSi et Pro Santé Connect")


@when("l'INSi refuse une fois le jeton d'API (HTTP 401)")
def insi_refuses_api_token(run: Run) -> None:
    run.facts["refused_at"] = time.time()
    run.sims.faults("insi", {"operation": "rechercherInsAvecTraitsIdentite", "first": 1, "effect": {
        "type": "http_status", "status": 401,
        "headers": {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="The token expired"'}}})


@when("le médecin interroge à nouveau l'INSi pour ce patient")
def insi_again(run: Run) -> None:
    run.facts["insi_again"] = run.driver.query_insi()


@then("le LGC a obtenu un nouveau jeton d'API, sans nouvelle connexion du médecin, et l'INSi a répondu")
def api_token_renewed(run: Run) -> None:
    since = run.facts["refused_at"]
    _check(run, "L'interrogation INSi aboutit à l'écran", run.facts["insi_again"] == "reussi",
           str(run.facts["insi_again"]), "écran du LGC")
    old = set(run.facts.get("api_tokens", []))
    exchanges, _session = _api_exchanges(run)
    new = [x["issued"] for x in exchanges if x["at"] >= since]
    requests = _insi_requests(run, since)
    seen = [(e.get("status"), _bearer(e)) for e in requests]
    _check(run, "Jeton d'API refusé (401), puis la recherche renvoyée avec un nouveau jeton d'API, accepté",
           len(new) == 1 and new[0] not in old and len(seen) >= 2 and seen[0][0] == 401 and seen[0][1] in old
           and all(st == 200 and fp == new[0] for st, fp in seen[1:]),
           "; ".join(f"HTTP {st} jeton {fp or 'aucun'}" for st, fp in seen) + f" ; nouveaux jetons {new}",
           "journaux INSi et Pro Santé Connect")
    _client_id, _tokens, authorize = _psc_login(run)
    again = [e for e in authorize if e["received_at"] >= since]
    _check(run, "Pas de nouvelle connexion : aucune demande d'autorisation à Pro Santé Connect depuis le refus",
           not again, f"{len(again)} demande(s) d'autorisation", "journal Pro Santé Connect")


def _directory_blocks(shown: str, family: str, given: str) -> list[str]:
    """The results' text cut into one block per professional named `given family` (the screen lists each with its
    fields below its name)."""
    # a name line, e.g. "DR SOPHIE MARTIN"
    title = rf"^[ \t]*(?:[A-Z]{{2,4}}[ \t]+)?{re.escape(given)}[ \t]+{re.escape(family)}[ \t]*$"
    parts = re.split(rf"(?m)(?={title})", shown)
    return [p for p in parts if re.match(title, p.split("\n")[0])]


@then(parsers.parse('l\'annuaire affiche {count:d} professionnelles "{given} {family}", distinguées par leur '
                    'profession, leur lieu d\'exercice et leur adresse MSSanté'))
def directory_homonyms(run: Run, count: int, given: str, family: str) -> None:
    shown = run.facts["directory_shown"]
    blocks = _directory_blocks(shown, family, given)
    _check(run, f"{count} professionnelles « {given} {family} » affichées", len(blocks) == count,
           f"{len(blocks)} trouvée(s)", "écran du LGC")
    fields = [(re.search(r"Profession\s+(\S+)", b), re.search(r"Lieu d'exercice\s+([^\n]+)", b),
               re.findall(r"[\w.+-]+@[\w.-]+\.mssante\.fr", b)) for b in blocks]
    professions = {f[0].group(1) for f in fields if f[0]}
    places = {f[1].group(1) for f in fields if f[1]}
    boxes = [frozenset(f[2]) for f in fields]
    _check(run, "Chacune avec sa profession, son lieu d'exercice et son adresse MSSanté, toutes différentes",
           len(professions) == count and len(places) == count and all(boxes) and len(set(boxes)) == count,
           f"professions {sorted(professions)} ; lieux {sorted(places)} ; adresses {[sorted(b) for b in boxes]}",
           "écran du LGC")


@then("l'adresse en liste rouge renvoyée par l'annuaire n'est pas affichée")
def directory_liste_rouge(run: Run) -> None:
    red = set()
    for e in run.sims.journal("annuaire", run.id, "PractitionerRole.search"):
        try:
            bundle = json.loads((e.get("response") or {}).get("body") or "{}")
        except ValueError:
            continue
        for entry in bundle.get("entry", []):
            for t in entry.get("resource", {}).get("telecom", []):
                meta = {x["url"]: x for x in t.get("extension", [])}
                mss = next((x for u, x in meta.items() if u.endswith("as-ext-mailbox-mss-metadata")), None)
                flags = {x.get("url"): x.get("valueBoolean") for x in (mss or {}).get("extension", [])}
                if flags.get("listeRouge"):
                    red.add(t.get("value"))
    shown = run.facts["directory_shown"]
    _check(run, "L'annuaire a renvoyé une adresse en liste rouge, que le LGC n'affiche pas",
           bool(red) and not any(a in shown for a in red), f"liste rouge : {sorted(red)}",
           "journal de l'annuaire santé et écran du LGC")


@then(parsers.parse('l\'annuaire n\'affiche que la professionnelle de "{city}"'))
def directory_by_city(run: Run, city: str) -> None:
    last = run.facts["directory_searches"][-1]
    blocks = _directory_blocks(run.facts["directory_shown"], last["family"], last["given"])
    _check(run, f"Une seule professionnelle, celle qui exerce à {city}", len(blocks) == 1 and city in blocks[0],
           " | ".join(b.replace("\n", " ")[:160] for b in blocks) or "aucune", "écran du LGC")


@then("l'annuaire a reçu ces recherches avec la clé d'API, le nom, le prénom et la ville en critère chaîné")
def directory_queries(run: Run) -> None:
    searches = [e for e in run.sims.journal("annuaire", run.id) if e["operation"].endswith(".search")]
    keyed = all(dict((k.lower(), v) for k, v in e["request"]["headers"]).get("esante-api-key") for e in searches)
    _check(run, "Chaque requête à l'annuaire porte la clé d'API (ESANTE-API-KEY)", bool(searches) and keyed,
           f"{len(searches)} requête(s)", "journal de l'annuaire santé")
    queries = [dict(parse_qsl(urlsplit(e["url"]).query)) for e in searches]
    by_name = any(q.get("family") == "MARTIN" and q.get("given") == "SOPHIE" for q in queries)
    last = run.facts["directory_searches"][-1]
    chained = any(q.get("organization.address-city") == last["city"] and q.get("practitioner.family") == "MARTIN"
                  and q.get("practitioner.given") == "SOPHIE" for q in queries)
    _check(run, "Recherche par nom et prénom, puis par nom, prénom et ville (organization.address-city, chaînée)",
           by_name and chained, " ; ".join(urlsplit(e["url"]).query[:120] for e in searches),
           "journal de l'annuaire santé")


@then("la recherche est en échec avec son motif, sans bloquer le logiciel")
def directory_failed(run: Run) -> None:
    shown = run.facts["directory_shown"]
    _check(run, "Échec affiché avec son motif (service indisponible, HTTP 503)", "503" in shown and "indisponible"
           in shown, shown.replace("\n", " ")[:200], "écran du LGC")
    failed = [e for e in run.sims.journal("annuaire", run.id) if e.get("status") == 503]
    _check(run, "L'annuaire a bien répondu 503 à cette recherche", bool(failed), f"{len(failed)} réponse(s) 503",
           "journal de l'annuaire santé")
    started = time.monotonic()
    run.driver.open_patient("BOUCHER")
    took = time.monotonic() - started
    _check(run, "Le logiciel reste utilisable : un dossier s'ouvre aussitôt après l'échec", took < 10,
           f"{took:.1f} s", "écran du LGC")


def _inbox_rows(run: Run) -> tuple[dict | None, dict | None]:
    facts, shown = run.facts["inbox"], run.facts["inbox_shown"]
    pro = next((m for m in shown if m["objet"].endswith(facts["pro_subject"])), None)
    patient = next((m for m in shown if m["objet"].endswith(facts["patient_subject"])), None)
    return pro, patient


@then("les deux messages sont listés, celui du patient marqué « patient », celui du confrère « professionnel »")
def inbox_origins(run: Run) -> None:
    pro, patient = _inbox_rows(run)
    _check(run, "Le message du patient (Mon espace santé) est marqué « patient », celui du confrère « professionnel »",
           pro is not None and patient is not None and patient["origine"] == "patient"
           and pro["origine"] == "professionnel", f"confrère : {pro} ; patient : {patient}", "écran du LGC")


@then("le patient est nommé comme dans son dossier, pas par le matricule INS de son adresse")
def inbox_patient_named(run: Run) -> None:
    _pro, patient = _inbox_rows(run)
    shown = (patient or {}).get("expediteur", "")
    _check(run, "Expéditeur affiché : le nom du patient tel que son dossier le porte, sans le matricule INS",
           "DE VINCI" in shown.upper() and run.facts["ins"][:13] not in shown, shown or "(message absent)",
           "écran du LGC")


@then("la plomberie XDM reste cachée : ni l'archive IHE_XDM.zip ni l'objet technique ne sont montrés")
def inbox_xdm_hidden(run: Run) -> None:
    facts = run.facts["inbox"]
    box = run.sims.call("mss", "GET", f"/mss/mailboxes/{facts['doctor']}")
    received = next((m for m in box.get("messages", []) if facts["pro_subject"] in (m.get("subject") or "")), None)
    raw = run.sims.call("mss", "GET", f"/mss/mailboxes/{facts['doctor']}/messages/{received['uid']}") \
        if received else b""
    has_xdm = b"IHE_XDM.zip" in raw
    pro, _patient = _inbox_rows(run)
    text = " ".join(str(v) for v in (pro or {}).values())
    _check(run, "Le message reçu porte une archive IHE_XDM.zip, que la liste ne montre pas",
           has_xdm and pro is not None and "IHE_XDM" not in text and "METADATA" not in text,
           f"archive dans le message : {'oui' if has_xdm else 'non'} ; affiché : {text[:160]}",
           "simulateur MSSanté et écran du LGC")


@then("la messagerie a été relevée par IMAP avec le jeton Pro Santé Connect")
def inbox_imap(run: Run) -> None:
    entries = run.sims.journal("mss", run.id)
    auth = [e for e in entries if e["operation"].startswith("IMAP") and "XOAUTH2" in (e["request"]["body"] or "")]
    ok = [e for e in auth if " OK" in ((e.get("response") or {}).get("body") or "")]
    fetched = [e for e in entries if e["operation"] in ("IMAP FETCH", "IMAP UID FETCH")]
    _check(run, "Connexion IMAP par XOAUTH2 (jeton Pro Santé Connect) acceptée, puis lecture des messages",
           bool(ok) and bool(fetched), f"{len(ok)} authentification(s) ; {len(fetched)} lecture(s)",
           "journal MSSanté")


@then("les traces du dossier reprennent chaque recherche INSi du journal du téléservice, l'INS récupérée et la "
      "qualification, avec l'utilisateur")
def identity_traces(run: Run) -> None:
    traces = run.driver.identity_traces()
    calls = [e for e in run.sims.journal("insi", run.id) if e["operation"].startswith("rechercherIns")]
    searches = [t for t in traces if t["operation"] == "insi_recherche"]
    # "tentatives": the attempts of one search (the LGC retries silently with the birthplace on answer 02)
    attempts = sum(len(t["detail"]["tentatives"]) if isinstance(t["detail"].get("tentatives"), list)
                   else int(t["detail"].get("tentatives") or 1) for t in searches)
    _check(run, "Chaque requête reçue par INSi est tracée dans le dossier (recherches et leurs tentatives)",
           bool(calls) and attempts == len(calls), f"{len(calls)} requête(s) au journal INSi ; {len(searches)} "
           f"trace(s) pour {attempts} tentative(s)", "traces du LGC et journal INSi")
    got = [t for t in traces if t["operation"] == "ins_recuperee"]
    matricule = got[-1]["detail"].get("matricule", "") if got else ""
    answered = any(matricule and matricule[:13] in ((e.get("response") or {}).get("body") or "") for e in calls)
    _check(run, "L'INS récupérée tracée est celle que le téléservice a renvoyée", bool(got) and answered,
           f"matricule tracé {matricule or '(aucun)'}", "traces du LGC et journal INSi")
    validated = [t for t in traces if t["operation"] == "validation"]
    order = [t["operation"] for t in traces if t["operation"] in ("insi_recherche", "ins_recuperee", "validation")]
    users = {t["user"] for t in traces if t["operation"] in ("insi_recherche", "ins_recuperee", "validation")}
    _check(run, "La qualification est tracée après la récupération, chaque trace datée et signée de l'utilisateur",
           bool(validated) and order.index("validation") > order.index("ins_recuperee")
           and all(t["at"] for t in traces) and bool(users) and all("DOC0036624" in u for u in users),
           f"ordre {order} ; utilisateurs {sorted(users)}", "traces du LGC")
    if calls:
        first = datetime.fromtimestamp(min(e["received_at"] for e in calls), UTC).strftime("%Y-%m-%d %H:%M:%S")
        traced = min(t["at"] for t in searches) if searches else ""
        _check(run, "Les traces sont datées du moment des appels (au plus tôt celui de la première requête reçue)",
               bool(traced) and traced >= first, f"1re requête {first} ; 1re trace {traced}",
               "traces du LGC et journal INSi")


def _smtp_since(run: Run, since: float) -> list[dict]:
    return [e for e in run.sims.journal("mss", run.id) if e["operation"].startswith("SMTP ")
            and e["received_at"] >= since - 0.5]


def _reply_of(e: dict) -> str:
    """A command's final reply line (DATA's entry holds the 354 then the final reply, AUTH's a 334 challenge too)."""
    lines = ((e.get("response") or {}).get("body") or "").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _refreshes(run: Run, since: float) -> list[dict]:
    _client, tokens, _authorize = _psc_login(run)
    return [t for t in tokens if t["received_at"] >= since - 0.5
            and dict(parse_qsl(t["request"]["body"] or "")).get("grant_type") == "refresh_token"]


@then("la messagerie a signalé l'expiration, le LGC a rafraîchi le jeton et s'est authentifié de nouveau, et le "
      "message n'a été remis qu'une fois")
def mss_expiry_recovered(run: Run) -> None:
    smtp = _smtp_since(run, run.facts["mss_since"])
    expired = next((e for e in smtp if e["operation"] == "SMTP MAIL" and _reply_of(e).startswith("530")), None)
    _check(run, "La messagerie a répondu 530 (jeton expiré) à la commande MAIL", expired is not None,
           _reply_of(expired)[:90] if expired else "aucun 530", "journal MSSanté")
    at = expired["received_at"] if expired else time.time()
    again = [e for e in smtp if e["operation"] == "SMTP AUTH" and e["received_at"] > at
             and _reply_of(e).startswith("235")]
    refreshed = [t for t in _refreshes(run, at) if not again or t["received_at"] <= again[0]["received_at"]]
    _check(run, "Puis : rafraîchissement du jeton auprès de Pro Santé Connect (refresh_token), nouvelle "
           "authentification XOAUTH2 acceptée", bool(refreshed) and bool(again),
           f"{len(refreshed)} rafraîchissement(s) ; {len(again)} authentification(s) acceptée(s) après le 530",
           "journaux MSSanté et Pro Santé Connect")
    data = [e for e in smtp if e["operation"] == "SMTP DATA" and _reply_of(e).startswith("250")]
    ids = {m for e in data for m in re.findall(r"\(id ([0-9a-f]+)", _reply_of(e))}
    box = run.sims.call("mss", "GET", f"/mss/mailboxes/{run.facts['ins']}@patient.mssante.fr")
    delivered = [m for m in box.get("messages", []) if m.get("submission") in ids]
    _check(run, "Le message a été remis une seule fois", len(data) == 1 and len(delivered) == 1,
           f"{len(data)} DATA acceptée(s) ; {len(delivered)} message(s) dans la boîte du patient",
           "journal et état du simulateur MSSanté")


@then("la messagerie a fermé la session IMAP, et le LGC en a rouvert une avec un jeton rafraîchi, sans action du "
      "médecin")
def imap_reopened(run: Run) -> None:
    since = run.facts["imap_since"]
    imap = [e for e in run.sims.journal("mss", run.id) if e["operation"].startswith("IMAP ")
            and e["received_at"] >= since - 0.5]
    bye = next((e for e in imap if "BYE [ALERT]" in ((e.get("response") or {}).get("body") or "")), None)
    _check(run, "La messagerie a fermé la session IMAP (BYE, jeton expiré)", bye is not None,
           ((bye.get("response") or {}).get("body") or "")[:90] if bye else "aucun BYE", "journal MSSanté")
    at = bye["received_at"] if bye else time.time()
    after = [e for e in imap if e["received_at"] > at]
    reauth = [e for e in after if e["operation"] == "IMAP AUTHENTICATE"
              and " OK" in ((e.get("response") or {}).get("body") or "")]
    read = [e for e in after if e["operation"] in ("IMAP UID SEARCH", "IMAP UID FETCH")]
    refreshed = [t for t in _refreshes(run, at) if not reauth or t["received_at"] <= reauth[0]["received_at"]]
    _check(run, "Nouvelle session : jeton rafraîchi auprès de Pro Santé Connect, authentification acceptée, relève",
           bool(refreshed) and bool(reauth) and bool(read),
           f"{len(refreshed)} rafraîchissement(s) ; {len(reauth)} authentification(s) ; {len(read)} lecture(s)",
           "journaux MSSanté et Pro Santé Connect")
    _check(run, "La relève a abouti à l'écran, sans action du médecin", isinstance(run.facts.get("inbox_shown"), list),
           f"{len(run.facts.get('inbox_shown') or [])} message(s) listé(s)", "écran du LGC")


@then("l'envoi MSSanté au patient est en échec")
def mss_send_failed(run: Run) -> None:
    seen = run.driver.wait_call_done("mss", within="#ordonnance")
    _check(run, "L'envoi MSSanté au patient est affiché en échec", seen == "echec", str(seen), "écran du LGC")


@then("le LGC n'a retenté qu'une fois, après avoir rafraîchi le jeton, sans relancer en boucle")
def mss_no_retry_loop(run: Run) -> None:
    since = run.facts["mss_refused_since"]
    time.sleep(5)  # long enough for a loop to show
    smtp = _smtp_since(run, since)
    auths = [e for e in smtp if e["operation"] == "SMTP AUTH"]
    _check(run, "Deux tentatives d'authentification en tout, refusées, et aucun message soumis",
           len(auths) == 2 and all(_reply_of(e).startswith("535") for e in auths)
           and not any(e["operation"] == "SMTP DATA" for e in smtp),
           " ; ".join(_reply_of(e)[:40] for e in auths) or "aucune", "journal MSSanté")
    between = [t for t in _refreshes(run, since) if len(auths) == 2
               and auths[0]["received_at"] <= t["received_at"] <= auths[1]["received_at"]]
    _check(run, "Le jeton a été rafraîchi entre les deux tentatives", bool(between),
           f"{len(between)} rafraîchissement(s)", "journaux MSSanté et Pro Santé Connect")


def _restore_phone(run: Run) -> None:
    if run.facts.pop("ciba_auto_off", False):
        run.sims.call("psc", "POST", "/state", {"ciba_auto_approve_s": 3})


@then(parsers.parse('le LGC ouvre la session du médecin "{national_id}"'))
def ciba_logged_in(run: Run, national_id: str) -> None:
    try:
        outcome = run.driver.ciba_outcome()
        shown = run.driver.account() if outcome == "connecte" else ""
    finally:
        _restore_phone(run)
    _check(run, "Session ouverte après la validation sur le téléphone, sous le compte associé à l'identifiant national",
           outcome == "connecte" and national_id in shown, f"{outcome} ; {shown}", "écran du LGC")


def _ciba_exchanges(run: Run) -> tuple[list[dict], list[dict]]:
    since = run.facts["ciba_since"] - 1
    every = [e for e in run.sims.call("psc", "GET", "/journal")["entries"] if e["received_at"] >= since]
    asks = [e for e in every if e["operation"] == "ciba"
            and dict(parse_qsl(e["request"]["body"] or "")).get("login_hint") == run.facts["national_id"]]
    polls = [e for e in every if e["operation"] == "token"
             and dict(parse_qsl(e["request"]["body"] or "")).get("auth_req_id") == run.facts.get("auth_req_id")]
    return asks, polls


@then("Pro Santé Connect a reçu la demande CIBA puis des interrogations espacées de l'intervalle, sans « slow_down »")
def ciba_polling(run: Run) -> None:
    asks, polls = _ciba_exchanges(run)
    form = dict(parse_qsl(asks[-1]["request"]["body"] or "")) if asks else {}
    answer = json.loads((asks[-1].get("response") or {}).get("body") or "{}") if asks else {}
    _check(run, "Demande CIBA authentifiée : login_hint = identifiant national, scope openid, acr_values eidas1",
           bool(asks) and asks[-1].get("status") == 200 and "openid" in form.get("scope", "")
           and form.get("acr_values") == "eidas1" and bool(answer.get("auth_req_id")),
           f"{len(asks)} demande(s) ; intervalle {answer.get('interval')} s ; expire en {answer.get('expires_in')} s",
           "journal Pro Santé Connect")
    interval = float(answer.get("interval") or 5)
    times = [asks[-1]["received_at"], *(e["received_at"] for e in polls)] if asks else []
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    bodies = " ".join((e.get("response") or {}).get("body") or "" for e in polls)
    _check(run, "Interrogations du jeton (grant CIBA) espacées d'au moins l'intervalle, sans « slow_down », jusqu'aux "
           "jetons", bool(polls) and all(g >= interval - 0.5 for g in gaps) and "slow_down" not in bodies
           and polls[-1].get("status") == 200, f"écarts {gaps} s ; statuts {[e.get('status') for e in polls]}",
           "journal Pro Santé Connect")


@then("le LGC affiche que la connexion a été refusée, sans ouvrir de session")
def ciba_refused(run: Run) -> None:
    try:
        outcome = run.driver.ciba_outcome()
    finally:
        _restore_phone(run)
    _check(run, "Refus affiché par le LGC", outcome != "connecte" and "refusée" in outcome, outcome, "écran du LGC")
    _asks, polls = _ciba_exchanges(run)
    denied = [e for e in polls if "access_denied" in ((e.get("response") or {}).get("body") or "")]
    _check(run, "Pro Santé Connect a répondu « access_denied », après quoi le LGC n'a plus interrogé",
           len(denied) == 1 and polls[-1] is denied[0], f"{len(polls)} interrogation(s), dont {len(denied)} refus",
           "journal Pro Santé Connect")


def _report_row(run: Run) -> dict | None:
    subject = run.facts["report"]["subject"]
    return next((m for m in run.facts["inbox_shown"] if m["objet"].endswith(subject)), None)


@then(parsers.parse('le compte rendu "{title}" est dans le dossier de "{name}", marqué « reçu par MSSanté », une seule '
                    'fois'))
def report_integrated(run: Run, title: str, name: str) -> None:
    _check(run, "Intégration du document reçu réussie", run.facts.get("report_integration") == "reussi",
           str(run.facts.get("report_integration")), "écran du LGC")
    run.driver.open_patient(name)
    versions = run.driver.local_document_versions(title)
    markers = run.driver.local_document_markers(title, wait_for="recu-mss")
    _check(run, f"« {title} » une seule fois dans le dossier, marqué « reçu par MSSanté »",
           len(versions) == 1 and "recu-mss" in markers, f"{len(versions)} exemplaire(s) ; marqueurs {markers}",
           "écran du LGC")


@then("le message du compte rendu est marqué « déjà intégré » et ne propose plus de l'intégrer")
def report_already_integrated(run: Run) -> None:
    row = _report_row(run)
    _check(run, "Le message est marqué « déjà intégré », sans bouton d'intégration",
           row is not None and "deja-integre" in row["marques"] and not row["integrable"], str(row), "écran du LGC")


@then("le message est signalé comme la nouvelle version d'un document déjà intégré")
def report_update_flagged(run: Run) -> None:
    row = _report_row(run)
    _check(run, "La nouvelle version est signalée comme la mise à jour d'un document déjà intégré, à intégrer",
           row is not None and "mise-a-jour" in row["marques"] and row["integrable"], str(row), "écran du LGC")


@then(parsers.parse('le dossier de "{name}" tient les deux versions de "{title}", l\'ancienne signalée comme '
                    'remplacée'))
def report_both_versions(run: Run, name: str, title: str) -> None:
    _check(run, "Intégration de la nouvelle version réussie", run.facts.get("report_integration") == "reussi",
           str(run.facts.get("report_integration")), "écran du LGC")
    run.driver.open_patient(name)
    versions = run.driver.local_document_versions(title)
    _check(run, "Les versions 1 et 2 dans le dossier, la 1 signalée « remplacée » par la plus récente",
           [v["version"] for v in versions] == [1, 2] and "Remplacé" in versions[0]["warning"]
           and not versions[1]["warning"], str(versions), "écran du LGC")


@then("la messagerie a remis chaque message au LGC par IMAP, et le LGC ne l'a intégré qu'une fois")
def report_imap(run: Run) -> None:
    facts = run.facts["report"]
    box = run.sims.call("mss", "GET", f"/mss/mailboxes/{facts['doctor']}")
    uids = {m["uid"] for m in box.get("messages", []) if any(sub in (m.get("subject") or "")
                                                             for sub in facts["subjects"])}
    fetched = {int(u) for e in run.sims.journal("mss", run.id, "IMAP UID FETCH")
               for u in re.findall(r"\d+", (e["request"]["body"] or "").split("FETCH", 1)[-1].split("(", 1)[0])}
    _check(run, "Le LGC a lu par IMAP (UID FETCH) chacun des deux messages", len(uids) == 2 and uids <= fetched,
           f"messages {sorted(uids)} ; lus {sorted(fetched)}", "journal MSSanté")
    run.driver.open_patient("DE VINCI")
    versions = run.driver.local_document_versions(facts["title"])
    _check(run, "Aucun document reçu en double dans le dossier", len(versions) == len({v["version"] for v in versions})
           == 2, f"{len(versions)} document(s)", "écran du LGC")


@then("les journaux des services montrent INSi, puis ON, puis DMP et MSSanté pour ce patient")
def journal_order(run: Run) -> None:
    firsts: dict[str, float] = {}
    for service, op in (("insi", None), ("on", "creerEPrescription"), ("dmp", "ITI-41"), ("mss", None)):
        entries = run.sims.journal(service, run.id, op)
        if entries:
            firsts[service] = min(e["received_at"] for e in entries)
    order = sorted(firsts, key=firsts.get)
    # The DMP send is deferred (outbox) while MSSanté goes at once: both must come after ON, which follows INSi.
    ok = order[:2] == ["insi", "on"] and set(order[2:]) == {"dmp", "mss"}
    _check(run, "Ordre des appels : INSi, puis ON, puis DMP et MSSanté", ok, " → ".join(order),
           "journaux des simulateurs")
    if run.facts.get("latency_ms"):
        since = run.facts.get("throttled_at", 0)
        waited = [e for s in ("insi", "on") for e in run.sims.journal(s, run.id) if e["received_at"] >= since]
        if run.env.network.get("mode") == "proxy":
            # The delay is on the network: the proxy's HAR must show INSi and ON calls delayed by 3 s (an LGC
            # that bypasses the network layer would not be throttled, and this says so).
            slow = _har_delayed(Path(run.env.network["har"]), since, waited) >= {"insi", "on"}
        else:
            slow = bool(waited) and all((e.get("waited_ms") or 0) >= 2900 for e in waited)
        _check(run, "Latence de 3 s appliquée aux appels INSi et ON", slow,
               f"{len(waited)} échange(s) sous latence", "journaux des simulateurs")


@then("l'interface a répondu aux autres actions pendant chaque appel")
def responsiveness(run: Run) -> None:
    ms = [a["ms"] for a in run.rec.actions if a["during"] not in ("appels INSi/DMP lancés à l'ouverture",)]
    worst = max(ms) if ms else 0.0
    # Blocked, an action would wait for the 3-s call to end: every action must come back well before (< 2 s).
    _check(run, "Actions utilisateur pendant les appels en vol : toutes bien avant la fin de l'appel (< 2 s)",
           bool(ms) and worst < 2000, f"{len(ms)} action(s), pire {worst:.0f} ms", "mesures dans le navigateur")


@then(parsers.parse('le journal INSi montre une recherche sans lieu de naissance puis la même avec le COG "{cog}"'))
def insi_retry(run: Run, cog: str) -> None:
    run.driver.wait_call_done("insi", within="#identite")
    bodies = [e["request"]["body"] or "" for e in run.sims.journal("insi", run.id, "rechercherInsAvecTraitsIdentite")]
    ok = len(bodies) == 2 and "LieuNaissance" not in bodies[0] and f">{cog}<" in bodies[1]
    _check(run, "INSi : relance automatique avec le COG après une réponse 02", ok, f"{len(bodies)} requête(s)",
           "journal INSi")
    _check(run, "La relance est silencieuse (une note, pas de question)",
           "relance automatique avec le COG" in run.driver.identity_panel(), "", "écran du LGC")


@then(parsers.parse('l\'identité renvoyée par INSi est affichée avec le matricule "{matricule}"'))
def insi_shown(run: Run, matricule: str) -> None:
    _check(run, "Concordances et différences affichées côte à côte (NIR compris)",
           matricule in run.driver.insi_comparison(), matricule, "écran du LGC")


@then("l'ordonnance est en attente d'envoi au DMP avec le motif affiché")
def queued(run: Run) -> None:
    # Judged on what the wait saw (state and reason together): asking the state again afterwards raced the LGC's
    # automatic retry, which may already show "envoi en cours".
    text = run.driver.wait_queued_with_reason()
    _check(run, "Document en attente d'envoi, motif visible", bool(text), text[:200], "écran du LGC")


@then("le DMP contient l'ordonnance une seule fois")
def once(run: Run) -> None:
    state = run.sims.call("dmp", "GET", f"/state?ins={run.facts['ins']}")
    docs = [d for d in state.get("state", state)["documents"] if "Ordonnance" in (d.get("title") or "")]
    _check(run, "Une seule ordonnance dans le DMP (jamais deux fois)", len(docs) == 1, f"{len(docs)} document(s)",
           "état du simulateur DMP")


@then("l'appel Ordonnance numérique est en échec avec son motif")
def on_failed(run: Run) -> None:
    run.driver.wait_call_done("on", within="#ordonnance")
    _check(run, "ON en échec, l'utilisateur voit pourquoi et que l'ordonnance part sans QR code",
           "sans QR code" in run.driver.without_qr_reason(), run.driver.without_qr_reason()[:200], "écran du LGC")


def _sent_cdas(run: Run) -> list[etree._Element]:
    """The CDA documents (not their signatures) the run's ITI-41 requests carried inline, parsed."""
    out = []
    for e in run.sims.journal("dmp", run.id, "ITI-41"):
        for b64 in re.findall(r"<(?:\w+:)?Document[^>]*>([A-Za-z0-9+/=\s]+)</", e["request"]["body"] or ""):
            root = etree.fromstring(base64.b64decode(b64), etree.XMLParser(resolve_entities=False, no_network=True))
            if etree.QName(root).localname == "ClinicalDocument":
                out.append(root)
    return out


def _pdf_of(cda: etree._Element) -> bytes | None:
    """The PDF a CDA carries: an N1's body, or an N3's FR-Document-PDF-copie section (1.2.250.1.213.1.1.2.243)."""
    ns = {"h": "urn:hl7-org:v3"}
    found = cda.xpath("h:component/h:nonXMLBody/h:text[@mediaType='application/pdf'] | h:component/h:structuredBody"
                      "/h:component/h:section[h:templateId/@root='1.2.250.1.213.1.1.2.243']//h:observationMedia"
                      "/h:value[@mediaType='application/pdf']", namespaces=ns)
    return base64.b64decode("".join(found[0].itertext())) if found else None


@then("l'ordonnance reçue par le DMP ne contient pas de QR code")
def no_qr_in_dmp(run: Run) -> None:
    pdfs = [pdf for cda in _sent_cdas(run) if (pdf := _pdf_of(cda)) is not None]
    _check(run, "Le PDF envoyé au DMP n'a pas de QR code", bool(pdfs) and all(b"/Image" not in p for p in pdfs),
           f"{len(pdfs)} PDF", "journal DMP")


@then("la consultation du DMP est impossible et la liste DICA indique « Consentement »")
def dica_no_consent(run: Run) -> None:
    run.driver.wait_call_done("dmp", operation="acces", within="#dmp")
    run.driver.show_dica()
    items = run.driver.dica(expect={"C": ("ko", "Consentement du patient à la consultation non recueilli")})
    _check(run, "Icône DMP grisée (non consultable)", run.driver.dmp_icon() == "non-consultable",
           run.driver.dmp_icon(), "écran du LGC")
    no_consent = items["C"][0] == "ko" and "non recueilli" in items["C"][1]
    _check(run, "Cause affichée : consentement non recueilli", no_consent, items["C"][1], "écran du LGC")


@then("aucune consultation n'a été envoyée au DMP")
def no_consultation(run: Run) -> None:
    n = len(run.sims.journal("dmp", run.id, "ITI-18"))
    _check(run, "Aucune requête de consultation (ITI-18) sans consentement", n == 0, f"{n} requête(s)", "journal DMP")


@then("l'autorisation d'accès au DMP est posée")
def authorisation(run: Run) -> None:
    run.driver.wait_call_done("dmp", operation="autorisation", within="#dmp")
    td03 = run.sims.journal("dmp", run.id, "TD0.3")
    _check(run, "TD0.3 envoyé une fois avec AJOUT", len(td03) == 1 and "AJOUT" in (td03[0]["request"]["body"] or ""),
           f"{len(td03)} requête(s)", "journal DMP")


@then("le nombre de nouveaux documents apparaît sans clic, dont 1 invisible pour le patient")
def new_documents(run: Run) -> None:
    total, invisible, text = run.driver.new_documents()
    _check(run, "Nouveaux documents comptés sans clic, invisibles signalés", total >= 3 and invisible == 1,
           text.replace("\n", " ")[:200], "écran du LGC")
    run.driver.wait_dmp_icon("consultable")


def _dmp_requests(run: Run, *operations: str, since: float = 0.0) -> list[dict]:
    """The run's DMP exchanges of these transactions about the patient of the scenario, received after `since`."""
    ins = run.facts["ins"]
    return [e for op in operations for e in run.sims.journal("dmp", run.id, op)
            if e["received_at"] >= since and ins in (e["request"]["body"] or "")]


def _dmp_state(run: Run) -> dict:
    state = run.sims.call("dmp", "GET", f"/state?ins={run.facts['ins']}")
    return state.get("state", state)


@then("l'ordonnance est en attente d'envoi différé au DMP")
def deferred_in_outbox(run: Run) -> None:
    state = run.driver.wait_outbox_state("differe")
    _check(run, "Envoi au DMP différé, visible dans l'ordonnance", state == "differe", str(state), "écran du LGC")
    n = len(_dmp_requests(run, "ITI-41", since=run.facts.get("validated_at", 0.0)))
    _check(run, "Rien n'est parti au DMP pendant le délai", n == 0, f"{n} requête(s) ITI-41", "journal DMP")


@then("l'envoi au DMP de l'ordonnance est annulé")
def send_cancelled(run: Run) -> None:
    run.driver.open_prescription()
    state = run.driver.wait_outbox_state("annule")
    _check(run, "L'envoi en attente est annulé par l'opposition", state == "annule", str(state), "écran du LGC")


@then("le dossier indique que l'alimentation du DMP est impossible du fait de l'opposition du patient")
def feeding_impossible(run: Run) -> None:
    run.driver.open_patient(run.facts["patient"])
    status = run.driver.feeding_status()
    _check(run, "Alimentation du DMP impossible, cause affichée sans clic",
           status.startswith("impossible") and "oppos" in status, status[:200], "écran du LGC")


@then("l'ordonnance n'est pas envoyée au DMP, avec l'opposition du patient pour motif")
def prescription_not_fed(run: Run) -> None:
    why = run.driver.prescription_error()
    _check(run, "L'ordonnance dit pourquoi elle ne part pas au DMP", "DMP non alimenté" in why and "oppos" in why,
           why[:200], "écran du LGC")


@then("aucun document n'a été envoyé au DMP du patient, même après le délai d'envoi")
def nothing_fed(run: Run) -> None:
    due = run.facts.get("validated_at", time.time()) + run.facts.get("defer_s", 0) + 5
    time.sleep(max(0.0, due - time.time()))  # past the deferral of the cancelled send, with a margin
    n = len(_dmp_requests(run, "ITI-41"))
    _check(run, "Aucune alimentation (ITI-41) du DMP d'un patient opposé", n == 0, f"{n} requête(s) ITI-41",
           "journal DMP")
    docs = [d for d in _dmp_state(run)["documents"] if "Ordonnance" in (d.get("title") or "")]
    _check(run, "Aucune ordonnance dans le DMP du patient", not docs, f"{len(docs)} document(s)",
           "état du simulateur DMP")


@then("le DMP est consulté avec le consentement du patient")
def consulted_with_consent(run: Run) -> None:
    status = run.driver.wait_call_done("dmp", operation="consultation", within="#dmp")
    _check(run, "Consultation du DMP réussie", status == "reussi", str(status), "écran du LGC")
    found = _dmp_requests(run, "ITI-18")
    normal = bool(found) and all("bris_de_glace" not in (e["request"]["body"] or "") for e in found)
    _check(run, "Recherche ITI-18 envoyée au titre du consentement (purposeofuse normal)", normal,
           f"{len(found)} requête(s) ITI-18", "journal DMP")


@then("la consultation du DMP est impossible et la liste DICA indique le retrait du consentement")
def dica_withdrawn(run: Run) -> None:
    run.driver.show_dica()
    items = run.driver.dica(expect={"C": ("ko", "Le patient n'a pas consenti à la consultation de son DMP")})
    _check(run, "Icône DMP grisée (non consultable)", run.driver.dmp_icon() == "non-consultable",
           run.driver.dmp_icon(), "écran du LGC")
    c = items.get("C", ("?", ""))
    _check(run, "Cause affichée : le patient n'a pas consenti", c[0] == "ko" and "pas consenti" in c[1], c[1],
           "écran du LGC")


@then("le LGC refuse en expliquant que le patient n'a pas consenti")
def refresh_refused(run: Run) -> None:
    answer = run.facts.get("refresh_answer", "")
    _check(run, "Actualisation refusée par le LGC, avec sa cause",
           "Consultation du DMP impossible" in answer and "consenti" in answer, answer[:200], "écran du LGC")


@then("aucune consultation ni récupération de document n'a été envoyée au DMP après le retrait")
def nothing_consulted_after_withdrawal(run: Run) -> None:
    time.sleep(2)  # a request the refresh would have started has had time to reach the DMP
    after = _dmp_requests(run, "ITI-18", "ITI-43", since=run.facts["withdrawn_at"])
    _check(run, "Aucun ITI-18 ni ITI-43 après le retrait du consentement", not after,
           f"{len(after)} requête(s) ; {len(_dmp_requests(run, 'ITI-18'))} ITI-18 avant le retrait", "journal DMP")


@then("le recueil puis le retrait du consentement sont tracés dans le dossier")
def consent_traced(run: Run) -> None:
    expect = [{"consultation": True, "opposition": False, "bris_de_glace": ""},
              {"consultation": False, "opposition": False, "bris_de_glace": ""}]
    traces = run.driver.consent_traces(expect=expect)
    got = [{k: t.get(k) for k in ("consultation", "opposition", "bris_de_glace")} for t in traces]
    _check(run, "Recueil et retrait du consentement tracés, dans l'ordre", got[-2:] == expect,
           "; ".join(f"{t.get('at', '')} {t.get('user', '')}" for t in traces), "écran du LGC (traces)")


@then("le DMP est consulté en bris de glace, déclaré comme tel au DMP")
def consulted_in_emergency(run: Run) -> None:
    status = run.driver.wait_call_done("dmp", operation="consultation", within="#dmp")
    _check(run, "Consultation du DMP en urgence réussie", status == "reussi", str(status), "écran du LGC")
    found = _dmp_requests(run, "ITI-18")
    declared = bool(found) and all("bris_de_glace" in (e["request"]["body"] or "") for e in found)
    _check(run, "VIHF des recherches ITI-18 : purposeofuse bris_de_glace", declared,
           f"{len(found)} requête(s) ITI-18", "journal DMP")
    events = [e for e in _dmp_state(run).get("events", []) if e["kind"] == "acces_bris_de_glace"]
    _check(run, "Le DMP trace l'accès en urgence et le notifie au patient",
           bool(events) and all(e.get("patient_notified") and e.get("national_id") == "899700366240"
                                for e in events), f"{len(events)} événement(s)", "état du simulateur DMP")


@then("l'accès en urgence et son motif sont tracés dans le dossier")
def emergency_traced(run: Run) -> None:
    reason = run.facts["emergency_reason"]
    expect = [{"consultation": False, "opposition": False, "bris_de_glace": reason}]
    traces = run.driver.consent_traces(expect=expect)
    got = [{k: t.get(k) for k in ("consultation", "opposition", "bris_de_glace")} for t in traces]
    _check(run, "Bris de glace tracé avec son motif, la date et l'utilisateur", got[-1:] == expect,
           "; ".join(f"{t.get('at', '')} {t.get('user', '')} {t.get('bris_de_glace', '')}" for t in traces),
           "écran du LGC (traces)")


def _envelopes(run: Run, operation: str, since: float = 0.0) -> list[tuple[dict, etree._Element]]:
    """The run's DMP exchanges of this transaction about the patient, each with its SOAP Envelope parsed (plain
    SOAP or MTOM: the SOAP part is the multipart body's first XML document, the Envelope either way)."""
    out = []
    for e in _dmp_requests(run, operation, since=since):
        m = re.search(r"(<(?:\w+:)?Envelope[\s\S]*?</(?:\w+:)?Envelope>)", e["request"]["body"] or "")
        if m is not None:
            out.append((e, etree.fromstring(m.group(1).encode(),
                                            etree.XMLParser(resolve_entities=False, no_network=True))))
    return out


def _confidentiality_of_submissions(run: Run) -> list[list[str]]:
    """The confidentialityCode values of each DocumentEntry the run's ITI-41 requests sent for the patient."""
    out = []
    for _e, root in _envelopes(run, "ITI-41"):
        scheme = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"  # DocumentEntry.confidentialityCode
        for entry in root.iter("{*}ExtrinsicObject"):
            if any(c.get("nodeRepresentation") == "E1762" for c in entry.iter("{*}Classification")):
                continue  # the XAdES signature of the submission set (typeCode E1762), not a clinical document
            out.append([c.get("nodeRepresentation") for c in entry.iter("{*}Classification")
                        if c.get("classificationScheme") == scheme])
    return out


@then(parsers.re(r"le DMP a reçu l'ordonnance (?P<visibility>visible|invisible) pour le patient$"))
def received_with_visibility(run: Run, visibility: str) -> None:
    codes = _confidentiality_of_submissions(run)
    prescriptions = [c for c in codes if c]
    invisible = visibility == "invisible"
    ok = bool(prescriptions) and all(("INVISIBLE_PATIENT" in c) == invisible for c in prescriptions)
    _check(run, f"ITI-41 : confidentialityCode {'avec' if invisible else 'sans'} INVISIBLE_PATIENT", ok,
           "; ".join(",".join(c) for c in prescriptions), "journal DMP")
    docs = [d for d in _dmp_state(run)["documents"] if "Ordonnance" in (d.get("title") or "")]
    _check(run, f"Document {visibility} pour le patient dans le DMP",
           bool(docs) and all(d["visible_patient"] is not invisible for d in docs),
           ", ".join(str(d["visible_patient"]) for d in docs), "état du simulateur DMP")


@then("une seule mise à jour ITI-57 a rendu l'ordonnance visible au patient")
def made_visible(run: Run) -> None:
    updates = _dmp_requests(run, "ITI-57", since=run.facts["visible_at"])
    ok = len(updates) == 1 and "ResponseStatusType:Success" in ((updates[0].get("response") or {}).get("body") or "")
    _check(run, "Une mise à jour des métadonnées (ITI-57) acceptée par le DMP", ok, f"{len(updates)} requête(s)",
           "journal DMP")
    docs = [d for d in _dmp_state(run)["documents"] if "Ordonnance" in (d.get("title") or "")]
    _check(run, "Le document est désormais visible pour le patient",
           bool(docs) and all(d["visible_patient"] for d in docs), f"{len(docs)} document(s)",
           "état du simulateur DMP")
    shown = run.driver.dmp_document_visibility("Ordonnance", refresh=False)
    _check(run, "La liste du DMP dans le LGC le montre visible", shown == "visible", shown, "écran du LGC")


@then(parsers.parse('le DMP a {event} le document "{title}"'))
def dmp_event(run: Run, event: str, title: str) -> None:
    kind = {"informé le patient de l'existence du document invisible": "information_document_invisible",
            "rendu visible au patient, de lui-même,": "document_rendu_visible"}[event]
    state = _dmp_state(run)
    events = [e for e in state.get("events", []) if e["kind"] == kind]
    _check(run, f"Événement du DMP « {kind} », notifié au patient",
           bool(events) and all(e.get("patient_notified") for e in events), f"{len(events)} événement(s)",
           "état du simulateur DMP")
    if kind == "document_rendu_visible":
        docs = [d for d in state["documents"] if d.get("title") == title]
        _check(run, "Le document est visible pour le patient dans le DMP",
               bool(docs) and all(d["visible_patient"] for d in docs), f"{len(docs)} document(s)",
               "état du simulateur DMP")


@then(parsers.parse('après actualisation, le LGC montre le document "{title}" {visibility} pour le patient'))
def lgc_shows_visibility(run: Run, title: str, visibility: str) -> None:
    shown = run.driver.dmp_document_visibility(title)
    _check(run, f"Liste du DMP actualisée : « {title} » {visibility}", shown == visibility, shown, "écran du LGC")
    n = len(_dmp_requests(run, "ITI-18"))
    _check(run, "La liste vient d'une recherche ITI-18 du LGC", n >= 1, f"{n} requête(s) ITI-18", "journal DMP")


def _status_updates(run: Run, since: float) -> list[tuple[dict, etree._Element]]:
    """The run's ITI-57 availability-status updates (SubmitObjectsRequest with an UpdateAvailabilityStatus
    association) for the patient since `since`, with their parsed SOAP envelope."""
    return [(e, root) for e, root in _envelopes(run, "ITI-57", since=since)
            if any((a.get("associationType") or "").endswith("UpdateAvailabilityStatus")
                   for a in root.iter("{*}Association"))]


def _slots(assoc: etree._Element) -> dict[str, str]:
    return {s.get("name"): s.findtext("{*}ValueList/{*}Value") or "" for s in assoc.iter("{*}Slot")}


@then("le DMP refuse la suppression au non-auteur et le LGC affiche ce refus")
def deletion_refused(run: Run) -> None:
    answer = run.facts["delete_answer"]
    _check(run, "Le LGC affiche le refus du DMP", answer.startswith("echec") and "auteur" in answer, answer[:200],
           "écran du LGC")
    updates = _status_updates(run, run.facts["delete_attempt_at"])
    refused = [e for e, _ in updates if "DMPNotAuthor" in ((e.get("response") or {}).get("body") or "")]
    _check(run, "ITI-57 envoyé et refusé par le DMP (DMPNotAuthor)", len(updates) == 1 and len(refused) == 1,
           f"{len(updates)} requête(s), {len(refused)} refus DMPNotAuthor", "journal DMP")
    docs = [d for d in _dmp_state(run)["documents"] if d.get("title") == run.facts["colleague_doc"]]
    _check(run, "Le document du confrère reste dans le DMP",
           bool(docs) and all(d["status"].endswith("Approved") for d in docs), f"{len(docs)} document(s)",
           "état du simulateur DMP")


@then("le DMP a supprimé l'ordonnance à la demande de son auteur (ITI-57 d'Approved à Deleted)")
def deletion_done(run: Run) -> None:
    answer = run.facts["delete_answer"]
    _check(run, "Suppression réussie affichée", answer == "reussi", answer[:200], "écran du LGC")
    updates = _status_updates(run, run.facts["deleted_at"])
    ok = False
    if len(updates) == 1:
        e, root = updates[0]
        slots = [_slots(a) for a in root.iter("{*}Association")
                 if (a.get("associationType") or "").endswith("UpdateAvailabilityStatus")]
        ok = len(slots) == 1 and slots[0].get("OriginalStatus", "").endswith("Approved") \
            and slots[0].get("NewStatus", "").endswith("Deleted") \
            and "ResponseStatusType:Success" in ((e.get("response") or {}).get("body") or "")
    _check(run, "ITI-57 UpdateAvailabilityStatus Approved → Deleted accepté", ok, f"{len(updates)} requête(s)",
           "journal DMP")
    state = _dmp_state(run)
    left = [d for d in state["documents"] if "Ordonnance" in (d.get("title") or "")]
    events = [e for e in state.get("events", []) if e["kind"] == "document_supprime"]
    _check(run, "L'ordonnance n'est plus dans le DMP, suppression tracée par le DMP",
           not [d for d in left if d["status"].endswith("Approved")] and bool(events),
           f"{len(left)} document(s) restant(s), {len(events)} événement(s)", "état du simulateur DMP")


@then("le LGC ne liste plus l'ordonnance parmi les documents du DMP")
def deletion_shown(run: Run) -> None:
    shown = run.driver.dmp_document_visibility("Ordonnance")
    _check(run, "La liste du DMP actualisée ne montre plus l'ordonnance", shown == "absent", shown, "écran du LGC")


def _wait_past_deferral(run: Run) -> None:
    due = run.facts.get("validated_at", time.time()) + run.facts.get("defer_s", 0) + 4
    time.sleep(max(0.0, due - time.time()))


@then("l'envoi reste suspendu au-delà du délai, sans rien envoyer au DMP")
def held_past_due(run: Run) -> None:
    _wait_past_deferral(run)
    state = run.driver.wait_outbox_state("suspendu")
    _check(run, "Envoi toujours suspendu après l'échéance", state == "suspendu", str(state), "écran du LGC")
    n = len(_dmp_requests(run, "ITI-41", since=run.facts["validated_at"]))
    _check(run, "Aucun ITI-41 tant que l'envoi est suspendu", n == 0, f"{n} requête(s)", "journal DMP")


@then("le DMP a reçu l'ordonnance une seule fois, après la reprise")
def once_after_release(run: Run) -> None:
    sent = _dmp_requests(run, "ITI-41", since=run.facts["validated_at"])
    after = [e for e in sent if e["received_at"] >= run.facts["reprendre_at"]]
    _check(run, "Un seul ITI-41, parti après la reprise", len(sent) == 1 and len(after) == 1,
           f"{len(sent)} requête(s), {len(after)} après la reprise", "journal DMP")
    uids = re.findall(r'value="([0-9.]+)"', (sent[0]["request"]["body"] or "")) if sent else []
    docs = [d for d in _dmp_state(run)["documents"] if "Ordonnance" in (d.get("title") or "")]
    _check(run, "Le DMP tient l'ordonnance une fois, sous l'identifiant unique de l'ITI-41",
           len(docs) == 1 and docs[0]["unique_id"] in uids, f"{len(docs)} document(s)", "état du simulateur DMP")


@then("l'envoi annulé ne part jamais au DMP")
def cancelled_never_sent(run: Run) -> None:
    state = run.driver.wait_outbox_state("annule")
    _check(run, "Envoi annulé affiché", state == "annule", str(state), "écran du LGC")
    _wait_past_deferral(run)
    n = len(_dmp_requests(run, "ITI-41", since=run.facts["validated_at"]))
    _check(run, "Aucun ITI-41 après l'annulation, même passé le délai", n == 0, f"{n} requête(s)", "journal DMP")


@then(parsers.parse('le LGC refuse l\'envoi tant que l\'INS n\'est pas qualifiée, et le DMP de "{ins}" ne reçoit rien'))
def historical_refused(run: Run, ins: str) -> None:
    answer = run.facts["send_answers"][-1]
    _check(run, "Envoi refusé par le LGC, cause affichée", "INS non qualifiée" in answer, answer[:200],
           "écran du LGC")
    time.sleep(2)
    sent = [e for e in run.sims.journal("dmp", run.id, "ITI-41") if ins in (e["request"]["body"] or "")]
    _check(run, "Aucun ITI-41 sans INS qualifiée", not sent, f"{len(sent)} requête(s)", "journal DMP")


def _entry_metadata(run: Run) -> list[dict]:
    """creationTime, authorPerson, patientId, formatCode, title of each clinical DocumentEntry of the run's ITI-41
    requests for the patient."""
    out = []
    for _e, root in _envelopes(run, "ITI-41"):
        for entry in root.iter("{*}ExtrinsicObject"):
            classes = list(entry.iter("{*}Classification"))
            if any(c.get("nodeRepresentation") == "E1762" for c in classes):
                continue
            slots = {s.get("name"): [v.text or "" for v in s.iter("{*}Value")] for s in entry.findall("{*}Slot")}
            authors = [v.text or "" for c in classes for s in c.findall("{*}Slot") if s.get("name") == "authorPerson"
                       for v in s.iter("{*}Value")]
            ids = {x.get("identificationScheme"): x.get("value") for x in entry.findall("{*}ExternalIdentifier")}
            fmt = [c.get("nodeRepresentation") for c in classes
                   if c.get("classificationScheme") == "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"]
            title = entry.find("{*}Name/{*}LocalizedString")
            out.append({"creationTime": (slots.get("creationTime") or [""])[0], "authors": authors,
                        "patientId": ids.get("urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427", ""),
                        "formatCode": fmt[0] if fmt else "", "title": title.get("value") if title is not None else ""})
    return out


@then(parsers.parse('le DMP reçoit le document une fois, daté de l\'acte du {day}, signé de son auteur, avec l\'INS'))
def historical_sent(run: Run, day: str) -> None:
    answer = run.facts["send_answers"][-1]
    _check(run, "Envoi accepté par le LGC", "file d'envoi" in answer, answer[:200], "écran du LGC")
    run.driver.local_document_markers(run.facts["local_title"], wait_for="envoye-dmp")
    entries = [m for m in _entry_metadata(run) if m["title"] == run.facts["local_title"]]
    ymd = datetime.strptime(day, "%d/%m/%Y").strftime("%Y%m%d")
    one = len(entries) == 1
    _check(run, "Un seul ITI-41 pour ce document", one, f"{len(entries)} DocumentEntry", "journal DMP")
    m = entries[0] if one else {}
    _check(run, f"creationTime = date de l'acte ({day}), pas la date d'envoi",
           str(m.get("creationTime", "")).startswith(ymd), str(m.get("creationTime")), "journal DMP")
    _check(run, "Auteur : le médecin (identifiant national 899700366240)",
           any(a.startswith("899700366240^") for a in m.get("authors", [])), "; ".join(m.get("authors", [])),
           "journal DMP")
    _check(run, "patientId = INS qualifiée (INS^^^&OID&ISO^NH)",
           m.get("patientId") == f"{run.facts['ins']}^^^&{DMP_TEST_OID}&ISO^NH", str(m.get("patientId")),
           "journal DMP")
    _check(run, "Document CDA R2 N1 (formatCode PDF)", m.get("formatCode") == "urn:ihe:iti:xds-sd:pdf:2008",
           str(m.get("formatCode")), "journal DMP")


@then("le dossier marque le document « envoyé au DMP » et ne propose plus de l'envoyer")
def historical_marked(run: Run) -> None:
    title = run.facts["local_title"]
    markers = run.driver.local_document_markers(title, wait_for="envoye-dmp")
    _check(run, "Marqueur « envoyé au DMP » sans clic", "envoye-dmp" in markers, ", ".join(markers),
           "écran du LGC")
    again = run.driver.send_local_document(title)
    _check(run, "Pas de second envoi proposé", "Aucun bouton" in again or "déjà" in again, again[:200],
           "écran du LGC")
    time.sleep(2)
    entries = [m for m in _entry_metadata(run) if m["title"] == title]
    _check(run, "Toujours un seul ITI-41 pour ce document", len(entries) == 1, f"{len(entries)}", "journal DMP")


def _retrieved(run: Run, since: float) -> list[str]:
    """The document uniqueIds the run's ITI-43 requests asked for since `since`."""
    out = []
    for e in run.sims.journal("dmp", run.id, "ITI-43"):
        if e["received_at"] >= since:
            out += re.findall(r"DocumentUniqueId>\s*([^<\s]+)\s*<", e["request"]["body"] or "")
    return out


@then(parsers.parse('"{a}" et "{b}" sont récupérés une fois chacun et marqués « importé du DMP » dans le dossier'))
def two_integrated(run: Run, a: str, b: str) -> None:
    answer = run.facts["integration_answer"]
    _check(run, "Intégration multiple réussie", answer.startswith("reussi"), answer[:200], "écran du LGC")
    wanted = {d["unique_id"] for t in (a, b) for d in _approved(run, t)}
    got = _retrieved(run, run.facts["integrate_at"])
    _check(run, "Une récupération ITI-43 par document sélectionné, pas plus",
           sorted(got) == sorted(wanted) and len(got) == 2, f"{len(got)} document(s) demandé(s)", "journal DMP")
    for title in (a, b):
        rows = run.driver.local_document_versions(title, expect=[{"version": 1, "warning": "", "imported": True}])
        _check(run, f"« {title} » dans le dossier, marqué importé du DMP",
               len(rows) == 1 and rows[0]["imported"], str(rows), "écran du LGC")


@then(parsers.parse("après actualisation, le dossier avertit qu'une version plus récente de \"{title}\" existe "
                    "dans le DMP"))
def newer_warned(run: Run, title: str) -> None:
    since = time.time()
    run.driver.refresh_dmp_documents()
    rows = run.driver.local_document_versions(title, expect=[{"version": 1, "warning": NEWER, "imported": True}])
    _check(run, "Avertissement sans clic : version plus récente dans le DMP",
           len(rows) == 1 and "plus récente" in rows[0]["warning"], str(rows), "écran du LGC")
    n = len([e for e in run.sims.journal("dmp", run.id, "ITI-18") if e["received_at"] >= since])
    old = [d for d in _dmp_state(run)["documents"] if d["unique_id"] == run.facts["replaced_uid"]]
    _check(run, "Le LGC l'a appris du DMP (ITI-18), où l'ancienne version est remplacée (Deprecated)",
           n >= 1 and bool(old) and old[0]["status"].endswith("Deprecated"), f"{n} requête(s) ITI-18",
           "journal et état du simulateur DMP")


@then(parsers.parse('la nouvelle version de "{title}" est récupérée une seule fois et le dossier tient les deux '
                    "versions"))
def latest_integrated(run: Run, title: str) -> None:
    answer = run.facts["integration_answer"]
    _check(run, "Intégration de la dernière version réussie", answer.startswith("reussi"), answer[:200],
           "écran du LGC")
    got = _retrieved(run, run.facts["integrate_at"])
    _check(run, "ITI-43 de la seule nouvelle version", got == [run.facts["latest_uid"]], f"{len(got)} demande(s)",
           "journal DMP")
    expect = [{"version": 1, "warning": NEWER, "imported": True}, {"version": 2, "warning": "", "imported": True}]
    rows = run.driver.local_document_versions(title, expect=expect)
    _check(run, "Dossier : version 1 (signalée remplacée) et version 2", [r["version"] for r in rows] == [1, 2]
           and "plus récente" in rows[0]["warning"] and not rows[1]["warning"], str(rows), "écran du LGC")


@then(parsers.parse('le LGC n\'intègre pas ce doublon de "{title}" et le dit'))
def duplicate_refused(run: Run, title: str) -> None:
    answer = run.facts["integration_answer"]
    _check(run, "Doublon signalé : même setId et même version déjà dans le dossier",
           "même setId et même version" in answer, answer[:300], "écran du LGC")
    rows = run.driver.local_document_versions(title, expect=[{"version": 1, "warning": NEWER, "imported": True},
                                                             {"version": 2, "warning": "", "imported": True}])
    _check(run, "Toujours deux documents dans le dossier (pas de doublon)", len(rows) == 2, str(rows),
           "écran du LGC")
    got = _retrieved(run, run.facts["integrate_at"])
    _check(run, "La copie n'a été lue qu'une fois, pour la vérifier", got == [run.facts["copy_uid"]],
           f"{len(got)} demande(s)", "journal DMP")


@then(parsers.parse('après actualisation, le dossier avertit que la version 2 de "{title}" a été supprimée du DMP'))
def deletion_warned(run: Run, title: str) -> None:
    run.driver.refresh_dmp_documents()
    expect = [{"version": 1, "warning": NEWER, "imported": True}, {"version": 2, "warning": DELETED, "imported": True}]
    rows = run.driver.local_document_versions(title, expect=expect)
    _check(run, "Avertissement sans clic : la version intégrée a été supprimée du DMP",
           len(rows) == 2 and "supprimé" in rows[1]["warning"], str(rows), "écran du LGC")
    gone = [d for d in _dmp_state(run)["documents"] if d["unique_id"] == run.facts["latest_uid"]]
    _check(run, "Le DMP ne tient plus cette version", not gone or not gone[0]["status"].endswith("Approved"),
           gone[0]["status"] if gone else "absente", "état du simulateur DMP")


@then("chaque document lu dans le DMP l'a été par un accès tracé, que le LGC exporte")
def dmp_access_traced(run: Run) -> None:
    retrieved = sorted(set(_retrieved(run, 0.0)))
    traces = run.driver.dmp_access_traces(expect=retrieved)
    traced = sorted({d for t in traces for d in t["documents"]})
    _check(run, "Les documents récupérés (ITI-43) sont ceux que les traces exportées nomment",
           bool(retrieved) and traced == retrieved, f"{len(retrieved)} document(s) lus, {len(traced)} tracé(s)",
           "journal DMP et export CSV du LGC")
    _check(run, "Chaque trace dit quand et qui", all(t["at"] and t["user"] for t in traces),
           "; ".join(f"{t['at'][:19]} {t['user']}" for t in traces), "export CSV du LGC")


@then("le LGC renouvelle l'autorisation d'accès au DMP, expirée, sans action du médecin")
def authorisation_renewed(run: Run) -> None:
    since = run.facts["clock_advanced_at"]
    deadline = time.time() + 60  # the renewal follows the TD0.2 of the file's opening, in the background
    while time.time() < deadline and not [e for e in _dmp_requests(run, "TD0.3", since=since) if e.get("response")]:
        time.sleep(0.5)
    run.driver.wait_call_done("dmp", operation="autorisation", within="#dmp")
    td02 = [e for e in _dmp_requests(run, "TD0.2", since=since)
            if "AUTORISATION_PS" in ((e.get("response") or {}).get("body") or "")]
    expired = any("expiree" in ((e.get("response") or {}).get("body") or "") for e in td02)
    _check(run, "TD0.2 à l'ouverture : le DMP répond autorisation expirée", expired,
           f"{len(td02)} réponse(s) TD0.2", "journal DMP")
    renewals = [e for e in _dmp_requests(run, "TD0.3", since=since) if "AJOUT" in (e["request"]["body"] or "")]
    _check(run, "Un TD0.3 AJOUT de renouvellement, un seul", len(renewals) == 1, f"{len(renewals)} requête(s)",
           "journal DMP")
    auths = [a for a in _dmp_state(run).get("authorisations", []) if a.get("national_id") == "899700366240"]
    _check(run, "Autorisation de nouveau valide dans le DMP", any(a.get("status") == "valide" for a in auths),
           ", ".join(str(a.get("status")) for a in auths), "état du simulateur DMP")
    run.driver.wait_dmp_icon("consultable")
    _check(run, "Icône DMP : consultable, sans clic", run.driver.dmp_icon() == "consultable",
           run.driver.dmp_icon(), "écran du LGC")


@then(parsers.parse("l'icône DMP est grisée et la liste DICA indique « {cause} »"))
def dica_cause(run: Run, cause: str) -> None:
    run.driver.wait_call_done("dmp", operation="acces", within="#dmp")
    run.driver.show_dica()
    items = run.driver.dica(expect={"D": ("ko", cause)})
    _check(run, "Icône DMP grisée (non consultable), sans clic", run.driver.dmp_icon() == "non-consultable",
           run.driver.dmp_icon(), "écran du LGC")
    d = items.get("D", ("?", ""))
    _check(run, f"Condition « DMP accessible » non remplie, cause affichée : {cause}", d[0] == "ko" and cause in d[1],
           d[1], "écran du LGC")
    td02 = run.sims.journal("dmp", run.id, "TD0.2")
    _check(run, "La cause vient du DMP (TD0.2 à l'ouverture du dossier)", len(td02) >= 1,
           f"{len(td02)} requête(s) TD0.2", "journal DMP")


@then("le DMP a reçu l'ordonnance structurée (CDA R2 N3) : une entrée par produit, et sa copie PDF")
def structured_prescription(run: Run) -> None:
    entries = [m for m in _entry_metadata(run) if "Ordonnance" in m["title"]]
    _check(run, "ITI-41 : formatCode de la prescription structurée (urn:ihe:pharm:pre:2010)",
           len(entries) == 1 and entries[0]["formatCode"] == "urn:ihe:pharm:pre:2010",
           ", ".join(m["formatCode"] for m in entries), "journal DMP")
    ns = {"h": "urn:hl7-org:v3"}
    cdas = [c for c in _sent_cdas(run) if c.xpath("string(h:code/@code)", namespaces=ns) == "57833-6"]
    cda = cdas[0] if len(cdas) == 1 else None
    items = cda.xpath("h:component/h:structuredBody//h:substanceAdministration", namespaces=ns) if cda is not None \
        else []
    labels = [" ".join(i.xpath(".//h:manufacturedMaterial/h:name//text()", namespaces=ns)) for i in items]
    wanted = [label for label, _, _ in PRESCRIPTION]
    _check(run, "Corps structuré : une substanceAdministration par produit prescrit",
           len(items) == len(wanted) and all(any(w.split(",")[0] in lab for lab in labels) for w in wanted),
           "; ".join(labels)[:200], "journal DMP (CDA reçu)")
    pdf = _pdf_of(cda) if cda is not None else None
    _check(run, "Section FR-Document-PDF-copie : la copie PDF/A de l'ordonnance",
           bool(pdf) and pdf.startswith(b"%PDF") and b"pdfaid" in pdf, f"{len(pdf or b'')} octets",
           "journal DMP (CDA reçu)")
    ids = cda.xpath("string(h:id/@root)", namespaces=ns) if cda is not None else ""
    docs = [d for d in _dmp_state(run)["documents"] if "Ordonnance" in (d.get("title") or "")]
    _check(run, "Un seul document dans le DMP, sous l'identifiant du CDA",
           len(docs) == 1 and docs[0]["unique_id"] == ids, f"{len(docs)} document(s)", "état du simulateur DMP")
