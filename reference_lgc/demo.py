"""Demo data loaded on the first start: the flagship patients (CLÉRICO Côme, BOUCHER François) with a local
document each, patients covering the identity cases, and a local account for the flagship physician.

Traits are the CNDA test identities' (INSi form); nothing here is read from the simulators."""

from __future__ import annotations

import json
from datetime import date, timedelta

from .calls import now_iso
from .db import Database
from .identity import Traits
from .records import Records

# (traits, attributes, note for the trainer)
PATIENTS: list[tuple[Traits, dict[str, bool], str]] = [
    (Traits("CLERICO", "COME", "M", "1943-11-07", "63220", used_name="CLERICO"), {},
     "Scénario phare LGC.DMP/UX.10.01"),
    (Traits("BOUCHER", "FRANCOIS", "M", "1967-10-12", "63220"), {}, "Scénario phare LGC.DMP/UX.10.01"),
    (Traits("DE VINCI", "LEONARDO", "M", "2014-02-01", "63220"), {"homonyme": True},
     "INSi : 02 sans le lieu de naissance, 00 avec le COG"),
    (Traits("HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27", "75056"), {}, "INSi : 01 (aucune identité)"),
    (Traits("D'AEION", "COEUR", "M", "1987-01-25", "99999"), {}, "INSi : erreur technique du téléservice"),
    (Traits("OPPOSANT", "GERARD", "M", "1971-06-30", "63220"), {}, "DMP : le patient a bloqué le médecin"),
    (Traits("DMPCLOS", "JULIETTE", "F", "1990-10-05", "63220"), {}, "DMP fermé"),
    (Traits("NESSI", "NATHALIE", "F", "1977-07-14", "63220"), {"douteuse": True}, "Identité douteuse"),
    (Traits("FICTIF", "PATIENT", "F", "1980-01-01", "99999"), {"fictive": True}, "Identité fictive (formation)"),
    (Traits("ADRUN", "ZOE", "F", "1975-12-31", "63220"), {},
     "Identité qualifiée en 2022 : vérification périodique INSi à l'ouverture"),
    (Traits("FAMILE", "LINA", "F", "2017-03-08", "63220"), {},
     "Nom mal saisi (FAMILE) : INSi par les traits 01 ; la carte Vitale de sa mère la retrouve (jumelle, rang 2)"),
]

# An identity retrieved and qualified long ago: its INS is due for the periodic INSi verification (SC.INS.13,
# "L'identité a été récupérée ou qualifiée depuis 4 ans"). Matricule, OID and the date of the retrieval.
QUALIFIED_LONG_AGO = {"ADRUN": ("275126322074974", "1.2.250.1.213.1.4.8", "2022-05-03T09:30:00+00:00")}

# A short consultation note per flagship patient: a local document that the DMP does not hold.
LOCAL_NOTES = {
    "CLERICO": ("Note de consultation — suivi tensionnel", "Tension 13/8, pas de modification du traitement."),
    "BOUCHER": ("Note de consultation — bilan annuel", "Bilan annuel sans particularité ; bilan lipidique demandé."),
}


def load_demo_data(db: Database, records: Records) -> bool:
    """Once per base (a flag in `settings`), so a user's changes are never overwritten."""
    if db.one("SELECT 1 FROM settings WHERE key='demo_loaded'"):
        return False
    now = now_iso()
    with db.transaction() as tx:
        tx.execute("INSERT INTO settings (key, value) VALUES ('demo_loaded', ?)", (now,))
        # The flagship physician's local account, not yet linked to PSC: the first login links it.
        tx.execute(
            "INSERT OR IGNORE INTO users (login, family_name, given_name, profession, speciality, sector, "
            "structure_name, billing_id, amo_speciality, mss_address, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            ("dr.doc0036624", "DOC0036624", "KIT", "10", "SM26", "SA07", "Cabinet du Dr DOC0036624", "999990013",
             "01", "kit.doc0036624@medecin.mssante.fr", now))
    _child(db, records)
    for traits, attrs, _note in PATIENTS:
        pid = records.create(traits, user_label="données de démonstration", **attrs)
        held = QUALIFIED_LONG_AGO.get(traits.birth_name)
        if held:
            matricule, oid, when = held
            db.execute("UPDATE patients SET ins_matricule=?, ins_oid=?, retrieved=1, retrieved_at=?, validated=1, "
                       "validation_means='cni' WHERE id=?", (matricule, oid, when, pid))
            db.execute("INSERT INTO identity_traces (patient_id, at, user_label, operation, detail) VALUES "
                       "(?,?,?,?,?)", (pid, when, "données de démonstration", "ins_recuperee", json.dumps(
                           {"matricule": matricule, "oid": oid, "source": "INSi", "validation": "cni"})))
        note = LOCAL_NOTES.get(traits.birth_name)
        if note:
            db.execute(
                "INSERT INTO documents (patient_id, title, type_code, type_label, act_date, author, mime, content, "
                "origin, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (pid, note[0], "11488-4", "Compte rendu de consultation", "2026-10-02", "Dr KIT DOC0036624",
                 "text/plain", note[1].encode(), "local", now))
    return True


def _child(db: Database, records: Records) -> None:
    """PETIT Louis, about ten months old whenever the base is created — the age of the 9th-month certificate
    (LGC.CSE.12) — with his INS retrieved and qualified at his birth (an invented NIR with a valid key)."""
    born = date.today() - timedelta(days=300)
    matricule = f"1{born:%y%m}63220123"
    ins = matricule + f"{97 - int(matricule) % 97:02d}"
    pid = records.create(Traits("PETIT", "LOUIS", "M", born.isoformat(), "63220"),
                         user_label="données de démonstration")
    at = f"{born.isoformat()}T10:00:00+00:00"
    db.execute("UPDATE patients SET ins_matricule=?, ins_oid=?, retrieved=1, retrieved_at=?, validated=1, "
               "validation_means='livret de famille' WHERE id=?", (ins, "1.2.250.1.213.1.4.8", at, pid))
