"""Step definitions in the user's language. Each "Alors" is judged twice when it can be: on screen, and from
the simulators' journals (server side), so the same scenario judges a vendor's LGC too."""

from __future__ import annotations

import base64
import email
import io
import json
import re
import time
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

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
