"""DMP consent rules and the DICA checklist (DMP accessible, INS qualifiée, Consentement, Authentification).

Feeding is allowed by default unless the informed patient objects; consultation needs explicit consent, or
*bris de glace* with a reason. Pure functions over plain values, unit-tested; the web layer renders the result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Consent:
    episode: str
    feeding_opposed: bool = False
    consultation_consent: bool = False
    emergency_reason: str = ""  # non-empty: bris de glace for this episode
    recorded_at: str = ""
    user_label: str = ""

    @property
    def emergency(self) -> bool:
        return bool(self.emergency_reason.strip())


class ConsentError(ValueError):
    pass


def check_consent_input(*, consultation_consent: bool, emergency: bool, emergency_reason: str) -> None:
    if emergency and not emergency_reason.strip():
        raise ConsentError("Bris de glace : indiquer le motif de l'accès en urgence (obligatoire, il est tracé)")
    if emergency and len(emergency_reason.strip()) < 5:
        raise ConsentError("Bris de glace : motif trop court, décrire la situation d'urgence")


@dataclass(frozen=True)
class DmpAccess:
    """What TD0.2 said about this patient's DMP for the calling professional."""

    state: str  # "en_cours" (check in flight) | "echec" (service failed) | "ouvert" | "ferme" | "absent"
    authorisation: str = "aucune"  # "valide" | "expiree" | "refusee" | "aucune"
    blocked: bool = False
    reason: str = ""  # the service failure, when state == "echec"


@dataclass(frozen=True)
class ChecklistItem:
    key: str  # D, I, C, A
    label: str
    ok: bool | None  # None: not known yet (check in flight)
    cause: str = ""
    fix_label: str = ""
    fix_href: str = ""


@dataclass(frozen=True)
class Dica:
    items: list[ChecklistItem]

    @property
    def can_consult(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def pending(self) -> bool:
        return any(i.ok is None for i in self.items)

    @property
    def unmet(self) -> list[ChecklistItem]:
        return [i for i in self.items if i.ok is False]


def dica(*, ins_qualified: bool, dmp: DmpAccess | None, consent: Consent | None, authenticated: bool,
         links: dict[str, str]) -> Dica:
    """`links` gives the fix pages: identity, consent, login, status (ANS service status)."""
    if not ins_qualified:
        d = ChecklistItem("D", "DMP accessible", False, "Accessibilité non vérifiée : l'INS doit être qualifiée "
                          "pour interroger le DMP", "Qualifier l'identité", links["identity"])
    elif dmp is None or dmp.state == "en_cours":
        d = ChecklistItem("D", "DMP accessible", None, "Vérification en cours auprès du DMP…")
    elif dmp.state == "echec":
        d = ChecklistItem("D", "DMP accessible", False, f"Service DMP indisponible : {dmp.reason}",
                          "État des services", links["status"])
    elif dmp.state == "absent":
        d = ChecklistItem("D", "DMP accessible", False, "Le patient n'a pas de DMP (Mon espace santé non activé)")
    elif dmp.state == "ferme":
        d = ChecklistItem("D", "DMP accessible", False, "Le DMP du patient est fermé")
    elif dmp.blocked:
        d = ChecklistItem("D", "DMP accessible", False, "Le patient vous a bloqué l'accès à son DMP")
    else:
        d = ChecklistItem("D", "DMP accessible", True)
    i = ChecklistItem("I", "INS qualifiée", True) if ins_qualified else ChecklistItem(
        "I", "INS qualifiée", False, "L'identité n'est pas qualifiée", "Qualifier l'identité", links["identity"])
    if consent is None:
        c = ChecklistItem("C", "Consentement", False, "Consentement du patient à la consultation non recueilli",
                          "Recueillir le consentement", links["consent"])
    elif consent.consultation_consent or consent.emergency:
        c = ChecklistItem("C", "Consentement", True, "Accès en bris de glace : " + consent.emergency_reason
                          if consent.emergency and not consent.consultation_consent else "")
    else:
        c = ChecklistItem("C", "Consentement", False, "Le patient n'a pas consenti à la consultation de son DMP",
                          "Modifier le consentement", links["consent"])
    a = ChecklistItem("A", "Authentification", True) if authenticated else ChecklistItem(
        "A", "Authentification", False, "Non authentifié par Pro Santé Connect", "Se connecter avec Pro Santé "
        "Connect", links["login"])
    return Dica([d, i, c, a])


def feeding_allowed(*, ins_qualified: bool, consent: Consent | None) -> tuple[bool, str]:
    """Feeding the DMP: default yes (informed patient), unless the patient objected; INS must be qualified."""
    if not ins_qualified:
        return False, "INS non qualifiée : aucun document ne peut être envoyé au DMP"
    if consent is not None and consent.feeding_opposed:
        return False, "Le patient s'est opposé à l'alimentation de son DMP"
    return True, ""


def authorisation_to_set(*, consent: Consent | None, dmp: DmpAccess | None) -> bool:
    """Set (or silently renew) the professional's DMP authorisation once consent is recorded (TD0.3)."""
    if consent is None or not (consent.consultation_consent or consent.emergency):
        return False
    if dmp is None or dmp.state != "ouvert" or dmp.blocked:
        return False
    return dmp.authorisation != "valide"
