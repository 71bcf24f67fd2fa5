"""The cabinet's people, from the bench's personas: its physicians and the patients they see.

Patients are those every service serves normally: an INS that INSi finds (CR 00, no fault, not a provisional
NIA; digits only with a right key, as the DMP refuses Corsican and wrong-key INS), an open DMP that blocks none
of the physicians. A load test measures the services' work, not their refusals; those have their scenarios.
"""

from __future__ import annotations

import functools
from dataclasses import replace

from simulators.personas import load_personas

from .target import Patient, Practitioner

PHYSICIAN = "10"  # TRE_G15 médecin


@functools.cache
def physicians() -> tuple[Practitioner, ...]:
    personas = load_personas()
    found = [p for p in personas.professionals if p.profession == PHYSICIAN]
    mailboxes = tuple(p.mss_personnelle for p in found)
    return tuple(Practitioner(
        index=0, national_id=p.national_id, rpps=p.rpps, family_name=p.nom, given_name=p.prenom,
        profession=p.profession, speciality=p.savoir_faire or "", sector=p.secteur_activite,
        structure_id=p.structure.identifiant_national, structure_name=p.structure.nom,
        billing_id=p.identifiant_facturation, amo_speciality=p.code_specialite_amo, mailbox=p.mss_personnelle,
        correspondents=tuple(m for m in mailboxes if m != p.mss_personnelle)) for p in found)


@functools.cache
def patients() -> tuple[Patient, ...]:
    personas = load_personas()
    doctors = [p.national_id for p in physicians()]
    chosen = []
    for p in personas.patients:
        if (p.ins is None or p.oid is None or not p.ins.isdigit() or not p.nir_valid or p.is_nia
                or p.insi.expected != "00" or p.insi.fault
                or p.dmp.status != "ouvert" or any(p.dmp.is_blocked(nid) for nid in doctors)):
            continue
        chosen.append(Patient(ins=p.ins, oid=p.oid, dmp_oid=p.dmp_oid or p.oid, birth_name=p.nom_naissance,
                              first_names=tuple(p.prenoms), sex=p.sexe, birth_date=p.date_naissance,
                              birthplace=p.lieu_naissance, display_name=p.display_name))
    return tuple(chosen)


def practitioner(index: int) -> Practitioner:
    """The index-th simulated practitioner: the physicians of the personas in turn."""
    pool = physicians()
    return replace(pool[index % len(pool)], index=index)
