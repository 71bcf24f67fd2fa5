"""Identity operations: INSi retrieval (traits without the COG, then with it on 02), ApCV reading (qualified at
once, then INSi verifies), one-click acceptance of INSi's identity. Every operation is traced."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import identity as idn
from ..calls import REUSSI, Job, Operation
from ..records import Patient
from ..services import apcv, carte_vitale, insi
from ..services.context import ServiceError, ServiceRefused
from .base import OpsBase, iso_date, load_user

INSI_COG_NOTE = "Plusieurs identités trouvées sans le lieu de naissance : relance automatique avec le COG."


class IdentityOps(OpsBase):
    def identity_operations(self) -> list[Operation]:
        return [Operation("insi", "recherche_traits", "Recherche INS (INSi)", self._insi, self._after_insi),
                Operation("insi", "recherche_carte_vitale", "Recherche INS par carte Vitale (INSi)",
                          self._insi_vitale, self._after_insi),
                Operation("apcv", "lecture", "Lecture Appli carte Vitale", self._apcv, self._after_apcv)]

    def start_insi(self, p: Patient, user: Any, session_row: Any, *, reason: str,
                   traits: idn.Traits | None = None) -> int:
        t = traits or p.traits
        return self._submit("insi", "recherche_traits", p, user, session_row["sid"] if session_row else None,
                            {"reason": reason, "traits": asdict(t)})

    def start_insi_vitale(self, p: Patient, user: Any, session_row: Any, card: carte_vitale.Card,
                          beneficiary: carte_vitale.Beneficiary) -> int:
        """The INSi search by carte Vitale (SC.INS.14), for the card's beneficiary this file is about."""
        return self._submit("insi", "recherche_carte_vitale", p, user,
                            session_row["sid"] if session_row else None,
                            {"reason": "carte_vitale", "nir_od": card.nir_od, "regime": card.regime,
                             "caisse": card.caisse, "centre": card.centre, "birth_date": beneficiary.birth_date,
                             "rank": beneficiary.rank, "beneficiary_nir": beneficiary.nir,
                             "beneficiary": f"{beneficiary.first_name} {beneficiary.name}"})

    def start_apcv(self, p: Patient, user: Any, session_row: Any, payload: str) -> int:
        return self._submit("apcv", "lecture", p, user, session_row["sid"] if session_row else None,
                            {"payload": payload})


    # ------------------------------------------------------------------------------------------- INSi

    def _insi(self, job: Job) -> dict[str, Any]:
        t = job.params["traits"]
        attempts: list[dict[str, Any]] = []

        def search(cog: str | None) -> insi.InsiResult:
            res = insi.search_by_traits(job.ctx, birth_name=t["birth_name"], first_names=t["first_names"],
                                        sex=t["sex"], birth_date=t["birth_date"], birthplace_cog=cog)
            attempts.append({"cog": cog, "code": res.code, "label": res.label,
                             "message_id": res.exchange.message_id, "duree_s": round(res.exchange.elapsed_s, 3)})
            return res

        # Traits without the COG first; several identities → silent retry with the COG (INS guide).
        res = search(None)
        cog = t.get("birthplace_cog")
        if res.code == "02" and cog and cog != idn.COG_UNKNOWN:
            job.notes.append(INSI_COG_NOTE)
            res = search(cog)
        return _insi_result(res, attempts, job.params.get("reason", ""))

    def _insi_vitale(self, job: Job) -> dict[str, Any]:
        q = job.params
        res = insi.search_by_carte_vitale(job.ctx, nir_od=q["nir_od"], birth_date=q["birth_date"], rank=q["rank"],
                                          beneficiary_nir=q.get("beneficiary_nir"), regime=q.get("regime") or None,
                                          caisse=q.get("caisse") or None, centre=q.get("centre") or None)
        out = _insi_result(res, [{"carte_vitale": True, "rang": q["rank"], "code": res.code, "label": res.label,
                                  "message_id": res.exchange.message_id,
                                  "duree_s": round(res.exchange.elapsed_s, 3)}], "carte_vitale")
        job.notes.append(f"Recherche par la carte Vitale : bénéficiaire {q['beneficiary']} (rang {q['rank']}).")
        return out

    def _after_insi(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        pid, who = job.patient_id, job.params.get("user_label", "système")
        assert pid is not None
        verification = job.params.get("reason") == "verification"
        if error is not None:
            self.records.trace(pid, who, "insi_echec", {"motif": error.reason, "code": error.code or ""})
            p = self.records.get(pid)
            if verification and p is not None and p.qualified:
                self._chain_dmp(job, p)  # the INS held stays usable until the INSi can verify it
            return
        assert result is not None
        self.records.trace(pid, who, "insi_recherche", {"motif_appel": result.get("reason", ""),
                                                         "tentatives": result["attempts"]})
        ind = result.get("individual")
        p = self.records.get(pid)
        if ind is None or p is None:
            return
        rows = idn.compare(p.traits, p.ins_matricule, ind)
        previous = {h["matricule"] for h in ind.get("history") or []}
        if p.retrieved and p.ins_matricule and p.ins_matricule != ind["matricule"] and p.ins_matricule in previous \
                and idn.full_match([r for r in rows if r.field != "matricule"]):
            # The INSi answers a new INS with the held one in its history (SC.INS.13): the same person, whose INS
            # the Assurance maladie changed. The new one replaces it, the status stays, the old one is kept.
            self.records.replace_ins(pid, matricule=ind["matricule"], oid=ind["oid"], user_label=who,
                                     reason="vérification INSi" if verification else "recherche INSi")
            result["applied"] = True
            now = self.records.get(pid)
            if now is not None and now.qualified:
                self._chain_dmp(job, now)
            return
        # A full match (or a verification of the INS already held) is recorded without asking.
        if idn.full_match(rows) or (p.ins_matricule == ind["matricule"] and p.retrieved):
            self.records.apply_ins(pid, matricule=ind["matricule"], oid=ind["oid"], traits=_traits_of(ind, p),
                                   user_label=who, source="INSi (correspondance complète)")
            result["applied"] = True
            now = self.records.get(pid)
            if now is not None and now.qualified:
                self._chain_dmp(job, now)

    def accept_insi(self, patient_id: int, call_id: int, user_label: str) -> None:
        """One click: take the identity the INSi returned (traits replaced by the reference ones)."""
        call = self.runner.get(call_id)
        if call is None or call.patient_id != patient_id or call.status != REUSSI or not call.result \
                or not call.result.get("individual"):
            raise ValueError("Aucune identité INSi à enregistrer pour ce patient (relancer la recherche)")
        p = self.records.get(patient_id)
        assert p is not None
        if p.fictive or p.douteuse:
            raise ValueError("Identité fictive ou douteuse : l'INS ne peut pas lui être associée")
        ind = call.result["individual"]
        self.records.apply_ins(patient_id, matricule=ind["matricule"], oid=ind["oid"], traits=_traits_of(ind, p),
                               user_label=user_label, source="INSi (validée par l'utilisateur)")

    # ------------------------------------------------------------------------------------------- ApCV

    def _apcv(self, job: Job) -> dict[str, Any]:
        ctx = apcv.authenticate_proximity(job.ctx, job.params["payload"])
        try:
            ids = apcv.restore_context(job.ctx, ctx.context_id)
        finally:
            try:
                apcv.destroy_context(job.ctx, ctx.context_id)
            except ServiceError as exc:  # the context expires by itself; the reading succeeded anyway
                job.notes.append(f"Contexte ApCV non détruit : {exc.reason}")
        p = self.records.get(job.patient_id) if job.patient_id else None
        chosen = _pick_beneficiary(ids.beneficiaries, p)
        if chosen is None:
            names = ", ".join(f"{b.birth_name} {b.first_name} ({iso_date(b.birth_date)})" for b in ids.beneficiaries)
            raise ServiceRefused(f"L'Appli carte Vitale présentée ne correspond pas à ce patient (bénéficiaires : "
                                 f"{names})", code="apcv_autre_patient")
        return {"beneficiary": {
            "ins": chosen.ins, "ins_oid": chosen.ins_oid, "nir": chosen.nir, "birth_name": chosen.birth_name,
            "first_name": chosen.first_name, "first_names": chosen.first_names_text, "sex": chosen.sex,
            "birth_date": iso_date(chosen.birth_date), "birthplace_cog": chosen.birthplace_cog or "",
            "used_name": chosen.used_name or "", "used_first_name": chosen.used_first_name or ""},
            "context_id": ids.context_id, "beneficiaries": len(ids.beneficiaries)}

    def _after_apcv(self, job: Job, result: dict[str, Any] | None, error: ServiceError | None) -> None:
        pid, who = job.patient_id, job.params.get("user_label", "système")
        assert pid is not None
        if error is not None:
            self.records.trace(pid, who, "apcv_echec", {"motif": error.reason, "code": error.code or ""})
            return
        assert result is not None
        b = result["beneficiary"]
        p = self.records.get(pid)
        if p is None:
            return
        if b.get("ins"):
            # Identity from the Appli carte Vitale: qualified at once (SC.INS.04, SC.INS.22).
            self.records.apply_ins(pid, matricule=b["ins"], oid=b["ins_oid"] or idn.OID_NIR,
                                   traits=_traits_of(b, p), user_label=who, source="Appli carte Vitale",
                                   validated_by=idn.APCV_MEANS)
        else:
            self.records.validate(pid, idn.APCV_MEANS, user_label=who)
        now = self.records.get(pid)
        assert now is not None
        # Then the INSi, in the background, with the traits the ApCV gave (verification of the INS).
        self._submit("insi", "recherche_traits", now, load_user(self.db, job.user_id), job.sid,
                     {"reason": "verification_apcv", "traits": asdict(now.traits)})
        if now.qualified:
            self._chain_dmp(job, now)

    # -------------------------------------------------------------------------------------------- DMP


def _traits_of(ident: dict[str, Any], p: Patient) -> idn.Traits:
    """Reference traits from a teleservice; names the service does not carry stay as they were."""
    return idn.Traits(birth_name=idn.normalize(ident["birth_name"]),
                      first_names=idn.normalize(ident.get("first_names") or ident.get("first_name") or ""),
                      sex=ident["sex"], birth_date=ident["birth_date"],
                      birthplace_cog=ident.get("birthplace_cog") or p.traits.birthplace_cog,
                      used_name=idn.normalize(ident.get("used_name") or "") or p.traits.used_name,
                      used_first_name=idn.normalize(ident.get("used_first_name") or "") or p.traits.used_first_name)


def _insi_result(res: insi.InsiResult, attempts: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    """What an INSi search leaves in its call (traits or carte Vitale alike): code, attempts, the identity."""
    out: dict[str, Any] = {"code": res.code, "label": res.label, "attempts": attempts, "reason": reason}
    if res.individual is not None:
        ind = res.individual
        out["individual"] = {
            "matricule": ind.matricule, "oid": ind.oid, "birth_name": ind.birth_name,
            "first_name": ind.first_name, "first_names": ind.first_names_text, "sex": ind.sex,
            "birth_date": iso_date(ind.birth_date), "birthplace_cog": ind.birthplace_cog or "",
            "history": [{"matricule": h.matricule, "oid": h.oid} for h in ind.history]}
    return out


def card_beneficiaries_for(card: carte_vitale.Card, p: Patient) -> list[carte_vitale.Beneficiary]:
    """The card's beneficiaries this file may be about: same birth date; among several (twins), those whose
    first name or birth name is the file's. One left: that one; none or several: the user chooses."""
    dated = [b for b in card.beneficiaries if b.birth_date == p.traits.birth_date.replace("-", "")]
    if len(dated) <= 1:
        return dated
    named = [b for b in dated if idn.normalize(b.first_name) == p.traits.first_first_name
             or idn.normalize(b.birth_name) == p.traits.birth_name]
    return named if len(named) == 1 else dated


def _pick_beneficiary(beneficiaries: tuple[apcv.ApcvBeneficiary, ...], p: Patient | None
                      ) -> apcv.ApcvBeneficiary | None:
    """The card's beneficiary this file is about: same birth date and birth name (or first name for a child)."""
    if p is None:
        return next((b for b in beneficiaries if b.is_user), None)
    for b in beneficiaries:
        if iso_date(b.birth_date) == p.traits.birth_date and (
                idn.normalize(b.birth_name) == p.traits.birth_name
                or idn.normalize(b.first_name) == p.traits.first_first_name):
            return b
    return None
