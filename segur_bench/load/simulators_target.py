"""The default target: each simulated practitioner calls the bench's simulators directly, with the reference
LGC's own wire clients (reference_lgc/services): the same SOAP, MTOM, VIHF and SMTP bytes the reference LGC sends.

Services are reached on their plain HTTP ports (the load is on the services, not on TLS handshakes); MSSanté's
SMTP asks for STARTTLS, checked against the bench CA when its file is on this machine.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from reference_lgc.services import dmp, insi, mss, on
from reference_lgc.services.context import CallContext, Endpoint, Professional, Software
from reference_lgc.services.xds import new_oid
from segur_bench.config import BenchConfig
from simulators.registry import SERVICES

from .target import LoadTarget, Patient, Practitioner, Reporter

PSC_CLIENT = ("segur-bench-lgc", "segur-bench-lgc-secret")  # the PSC simulator's default client (CIBA allowed)
TOKEN_MARGIN_S = 60  # renew the PSC token this long before it expires (PSC tokens live ~5 min)
NEEDED = ("insi", "dmp", "on", "psc", "mss")

DOC_CLASS = dmp.Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
DOC_TYPE = dmp.Code("11488-4", "2.16.840.1.113883.6.1", "CR de consultation")
DOC_FORMAT = dmp.Code("urn:ihe:iti:xds-sd:text:2008", "1.3.6.1.4.1.19376.1.2.3", "Texte")
LINES = (
    on.OnLine(label="PARACETAMOL 1 G CPR", dosage="1 comprimé jusqu'à 3 fois par jour si douleur", duration=5,
              quantity=1, quantity_unit="boite", product_code="3400930000001", product_code_system="CIP13"),
    on.OnLine(label="AMOXICILLINE 1 G CPR", dosage="1 comprimé matin et soir pendant 6 jours", duration=6,
              quantity=1, quantity_unit="boite"),
)


@dataclass(frozen=True)
class BenchAccess:
    """Where this process reaches the bench: from its segur-bench.toml (SEGUR_BENCH_CONFIG), as the CLI does."""

    urls: dict[str, str]  # service -> base URL of its business endpoint (plain HTTP)
    psc_root: str
    smtp_host: str
    smtp_port: int
    ca_file: str | None  # the bench CA, for MSSanté's STARTTLS; None: not on this machine (no verification)
    control_headers: dict[str, str]
    timeout: float

    @classmethod
    def from_config(cls, config: BenchConfig, *, timeout: float = 10.0) -> BenchAccess:
        urls = {name: config.url(name) + SERVICES[name].base_path for name in NEEDED}
        ca = config.pki_dir / "ca-chain.pem"
        mss_settings = config.settings.get("mss", {})
        return cls(urls=urls, psc_root=config.url("psc"), smtp_host=config.client_host.strip("[]"),
                   smtp_port=int(mss_settings.get("smtp_port", 2587)),
                   ca_file=str(ca.resolve()) if ca.is_file() else None,
                   control_headers=config.control_headers(), timeout=timeout)


def access_from_environment() -> BenchAccess:
    config_path = os.environ.get("SEGUR_BENCH_CONFIG")
    config = BenchConfig.load(Path(config_path) if config_path else None)
    return BenchAccess.from_config(config, timeout=float(os.environ.get("SEGUR_BENCH_LOAD_TIMEOUT") or 10))


class SimulatorTarget(LoadTarget):
    """Calls INSi, the DMP, ON, MSSanté (and PSC for the token) as the reference LGC does."""

    def __init__(self, practitioner: Practitioner, report: Reporter, access: BenchAccess | None = None) -> None:
        super().__init__(practitioner, report)
        self.access = access or access_from_environment()
        p = practitioner
        self.professional = Professional(
            national_id=p.national_id, rpps=p.rpps, family_name=p.family_name, given_name=p.given_name,
            profession=p.profession, speciality=p.speciality, role=p.profession, sector=p.sector,
            structure_id=p.structure_id, structure_name=p.structure_name, billing_id=p.billing_id,
            amo_speciality=p.amo_speciality)
        # One installation per practitioner, as each workstation of a SaaS cabinet has its own instance id.
        self.software = Software(instance=f"00000000-0000-4000-8000-{p.index:012d}")
        self.http = httpx.Client(timeout=self.access.timeout)  # INSi and PSC reuse one connection
        self.token: str | None = None
        self.token_expires = 0.0
        self.rng = random.Random(p.index)

    def ctx(self, service: str, **extra: str) -> CallContext:
        self._fresh_token()  # the DMP and MSSanté check the PSC token the reference LGC sends them
        professional = replace(self.professional, access_token=self.token)
        return CallContext(self.software, professional,
                           Endpoint(self.access.urls[service], timeout=self.access.timeout, extra=extra))

    # -- Pro Santé Connect --------------------------------------------------------------------------------

    def start(self) -> None:
        self._login()

    def _login(self) -> None:
        """A PSC access token by CIBA (the practitioner approves on their phone: here the bench's control API
        approves at once; without the control token, the simulated phone's automatic approval after ~3 s)."""
        oidc = f"{self.access.urls['psc']}/protocol/openid-connect/"
        with self.call("PSC", "CIBA login"):
            resp = self.http.post(oidc + "ext/ciba/auth", auth=PSC_CLIENT, data={
                "scope": "openid scope_all", "acr_values": "eidas1", "login_hint": self.practitioner.national_id,
                "binding_message": f"{self.practitioner.index % 100:02d}"})
            resp.raise_for_status()
            auth_req_id = resp.json()["auth_req_id"]
            approved = self.http.post(f"{self.access.psc_root}/_bench/state", headers=self.access.control_headers,
                                      json={"ciba": {"auth_req_id": auth_req_id, "decision": "approve"}})
            deadline = time.monotonic() + 30
            while True:
                token = self.http.post(oidc + "token", auth=PSC_CLIENT, data={
                    "grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": auth_req_id})
                if token.status_code == 200 or approved.status_code < 300 or time.monotonic() > deadline:
                    break
                time.sleep(1)  # authorization_pending: the simulated phone has not answered yet
            token.raise_for_status()
            body = token.json()
        self.token = body["access_token"]
        self.token_expires = time.monotonic() + float(body.get("expires_in", 300))

    def _fresh_token(self) -> None:
        if time.monotonic() > self.token_expires - TOKEN_MARGIN_S:
            self._login()

    # -- the five operations ------------------------------------------------------------------------------

    def search_identity(self, patient: Patient) -> None:
        with self.call("INSi", "rechercherInsAvecTraitsIdentite") as rec:
            result = insi.search_by_traits(self.ctx("insi"), birth_name=patient.birth_name,
                                           first_names=patient.first_names[0], sex=patient.sex,
                                           birth_date=patient.birth_date, client=self.http)
            rec.length = len(result.exchange.response or b"")

    def consult_dmp(self, patient: Patient) -> None:
        ctx = self.ctx("dmp")
        with self.call("DMP", "TD0.2 test d'existence"):
            status = dmp.test_existence(ctx, patient.ins, patient.dmp_oid)
        if status.can_feed and not status.can_consult:
            # The patient agrees to this practitioner's access (first consultation, or authorisation expired).
            with self.call("DMP", "TD0.3 autorisation"):
                dmp.set_authorisation(ctx, patient.ins, patient.dmp_oid)
        with self.call("DMP", "ITI-18 recherche de documents"):
            dmp.find_documents(ctx, patient.ins, patient.dmp_oid)

    def feed_dmp(self, patient: Patient) -> None:
        uid = new_oid()
        document = _cda(uid, patient, self.practitioner)
        meta = dmp.DocumentMetadata(title="CR de consultation", unique_id=uid, creation_time=datetime.now(UTC),
                                    class_code=DOC_CLASS, type_code=DOC_TYPE, format_code=DOC_FORMAT)
        with self.call("DMP", "ITI-41 alimentation") as rec:
            rec.length = len(document)
            dmp.provide_document(self.ctx("dmp"), patient.ins, patient.dmp_oid, document, meta)

    def prescribe(self, patient: Patient) -> None:
        who = on.OnPatient(ins=patient.ins, oid=patient.oid, birth_name=patient.birth_name,
                           first_names=patient.first_names, sex=patient.sex, birth_date=patient.birth_date,
                           birth_place=patient.birthplace)
        with self.call("ON", "creerEPrescription"):
            on.create_prescription(self.ctx("on"), patient=who, lines=LINES, prescription_date=date.today())

    def send_message(self, patient: Patient) -> None:
        a = self.access
        extra = {"mailbox": self.practitioner.mailbox, "smtp_host": a.smtp_host, "smtp_port": str(a.smtp_port)}
        extra |= {"ca_file": a.ca_file} if a.ca_file else {"tls_verify": "false"}
        to = self.rng.choice(self.practitioner.correspondents or (self.practitioner.mailbox,))
        body = (f"Cher confrère,\n\nJe vous adresse {patient.display_name}, né(e) le "
                f"{patient.birth_date:%d/%m/%Y}, pour avis.\n\nBien confraternellement,\n")
        with self.call("MSSanté", "SMTP envoi") as rec:
            sent = mss.send(self.ctx("mss", **extra), [to], f"Courrier : {patient.display_name}", body)
            rec.length = len(sent.raw)

    def stop(self) -> None:
        self.http.close()


def _cda(uid: str, patient: Patient, author: Practitioner) -> bytes:
    """A small CDA R2 consultation report (structured body as plain text) for the patient, by the practitioner."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    text = f"Consultation du {datetime.now(UTC):%d/%m/%Y}. Examen clinique sans particularité."
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="{uid}"/>
  <code code="{DOC_TYPE.code}" codeSystem="{DOC_TYPE.scheme}" displayName="{DOC_TYPE.display}"/>
  <title>CR de consultation</title>
  <effectiveTime value="{now}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{uid}.1"/>
  <versionNumber value="1"/>
  <recordTarget><patientRole><id root="{patient.dmp_oid}" extension="{patient.ins}"/></patientRole></recordTarget>
  <author><time value="{now}"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="{author.national_id}"/>
  </assignedAuthor></author>
  <component><nonXMLBody><text mediaType="text/plain">{text}</text></nonXMLBody></component>
</ClinicalDocument>
""".encode()
