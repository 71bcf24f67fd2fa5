"""Appli carte Vitale client (ApCV_AUTH 1.0.0): authenticate the patient from the QR code their app shows,
read the ApCV context (insured, beneficiaries, INS and traits), destroy it.

Wire format (protocols.md §6): SOAP 1.2 + WS-Addressing, `wsse:Security` (PS assertion) and
`ctxlps:ContexteLPS`, **no ContexteBAM**; bodies in ns `http://www.sesam-vitale.fr/apcv/auth/1/0`. The
response layout of the context is not public: it follows the bench's documented assumption
(the bench ApCV README) and is read here only, so it can be corrected in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import httpx
from lxml import etree

from .context import CallContext, ServiceRefused, ServiceUnavailable
from .insi import Exchange, OnExchange, call_teleservice, child, child_text, children

NS_AUTH = "http://www.sesam-vitale.fr/apcv/auth/1/0"
ACTION_PREFIX = "urn:ApCV_AUTH:1.0.0:"
VERSION = "1.0"

# French hints for the QR/context faults (detail codes of the bench's ApCV, see its README).
_HINTS = {
    "apcv_010": "QR code illisible ou non reconnu : scannez à nouveau le QR code affiché par l'application",
    "apcv_011": "QR code expiré : demandez au patient d'afficher un nouveau QR code",
    "apcv_012": "QR code déjà utilisé : demandez au patient d'afficher un nouveau QR code",
    "apcv_020": "contexte ApCV inconnu : authentifiez à nouveau le patient",
    "apcv_021": "contexte ApCV expiré : authentifiez à nouveau le patient",
}


@dataclass(frozen=True)
class ApcvContext:
    """What authentication gives: the context to read (and destroy) afterwards."""

    context_id: str
    created_at: datetime | None
    expires_at: datetime | None
    exchange: Exchange


@dataclass(frozen=True)
class ApcvBeneficiary:
    """One beneficiary of the card; identity obtained through the ApCV counts as qualified (SC.INS.04)."""

    is_user: bool  # the person who showed the QR code
    rank: int | None  # rang de naissance
    card_birth_date: str  # date as on the card (may be lunar), AAAA-MM-JJ
    nir: str | None  # NIRIndividu, 15 characters
    ins: str | None  # matricule INS, 15 characters (13 + key)
    ins_oid: str | None
    birth_name: str
    used_name: str | None
    first_name: str  # first birth first name
    first_names: tuple[str, ...]
    first_names_text: str  # ListePrenom as returned
    used_first_name: str | None
    sex: str
    birth_date: date
    birthplace_cog: str | None


@dataclass(frozen=True)
class ApcvIdentities:
    """The restored ApCV context: insured person's card data and every beneficiary, the user first."""

    context_id: str
    created_at: datetime | None
    expires_at: datetime | None
    mode: str | None  # ModeAuthentification (QRCODE)
    nir_od: str | None  # NIR ouvrant droit, 15 characters
    regime: str | None
    caisse: str | None
    centre: str | None
    beneficiaries: tuple[ApcvBeneficiary, ...]
    exchange: Exchange

    @property
    def user(self) -> ApcvBeneficiary:
        return next(b for b in self.beneficiaries if b.is_user)


def authenticate_proximity(ctx: CallContext, qr_payload: str, *, client: httpx.Client | None = None,
                           on_exchange: OnExchange | None = None) -> ApcvContext:
    """authentifierUtilisateurProximite with the scanned QR code content (`Donnees`)."""
    payload = qr_payload.strip()  # scanners often append CR/LF
    if not payload:
        raise ServiceRefused("ApCV : QR code vide, scannez le QR code affiché par l'application", code="qr_vide")
    body = _root("AuthentifierUtilisateurProximiteReq")
    ps = _sub(body, "ProfessionnelSante")
    # Must be the assertion's identifiantFacturation: both come from the same professional.
    _sub(ps, "IdentifiantFacturation", ctx.professional.billing_id)
    _sub(ps, "CodeSpecialiteAMO", ctx.professional.amo_speciality)
    _sub(body, "Donnees", payload)
    root, exchange = _call(ctx, "authentifierUtilisateurProximite", body, client, on_exchange)
    head = _context_head(root, "AuthentifierUtilisateurProximiteResp")
    return ApcvContext(head[0], head[1], head[2], exchange)


def restore_context(ctx: CallContext, context_id: str, *, client: httpx.Client | None = None,
                    on_exchange: OnExchange | None = None) -> ApcvIdentities:
    """restituerContexteApCV: the beneficiaries of the card with their INS and traits."""
    root, exchange = _call(ctx, "restituerContexteApCV", _context_req("RestituerContexteApCVReq", context_id),
                           client, on_exchange)
    context_id, created, expires = _context_head(root, "RestituerContexteApCVResp")
    block = child(root, "ContexteApCV")
    try:
        beneficiaries = tuple(_beneficiary(b) for b in children(child(block, "Beneficiaires"), "Beneficiaire"))
    except ValueError as exc:
        raise _bad(f"bénéficiaire illisible ({exc})") from None
    if sum(b.is_user for b in beneficiaries) != 1:
        raise _bad("le contexte doit désigner exactement un bénéficiaire utilisateur")
    od_num, od_cle = child_text(block, "Assure/NIROuvrantDroit/NumIdentifiant"), child_text(
        block, "Assure/NIROuvrantDroit/Cle")
    return ApcvIdentities(
        context_id=context_id, created_at=created, expires_at=expires,
        mode=child_text(block, "ModeAuthentification"),
        nir_od=od_num + od_cle if od_num and od_cle else None,
        regime=child_text(block, "Assure/GrandRegime"), caisse=child_text(block, "Assure/CaisseGestionnaire"),
        centre=child_text(block, "Assure/CentreGestionnaire"),
        beneficiaries=tuple(sorted(beneficiaries, key=lambda b: not b.is_user)), exchange=exchange,
    )


def destroy_context(ctx: CallContext, context_id: str, *, client: httpx.Client | None = None,
                    on_exchange: OnExchange | None = None) -> datetime | None:
    """detruireContexteApCV; returns the destruction instant given by the service (None if absent)."""
    root, _ = _call(ctx, "detruireContexteApCV", _context_req("DetruireContexteApCVReq", context_id),
                    client, on_exchange)
    if root.tag != f"{{{NS_AUTH}}}DetruireContexteApCVResp":
        raise _bad(f"élément {etree.QName(root).localname} au lieu de DetruireContexteApCVResp")
    return _datetime(child_text(root, "DateDestruction"))


# ----------------------------------------------------------------------------------------------------


def _root(local: str) -> etree._Element:
    return etree.Element(f"{{{NS_AUTH}}}{local}", {"version": VERSION}, nsmap={"apcv": NS_AUTH})


def _sub(parent: etree._Element, local: str, value: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{NS_AUTH}}}{local}")
    if value is not None:
        el.text = value
    return el


def _context_req(local: str, context_id: str) -> etree._Element:
    body = _root(local)
    _sub(_sub(body, "ContexteApCV"), "Identifiant", context_id)
    return body


def _call(ctx: CallContext, operation: str, body: etree._Element, client: httpx.Client | None,
          on_exchange: OnExchange | None) -> tuple[etree._Element, Exchange]:
    try:
        return call_teleservice(ctx, "ApCV", ACTION_PREFIX + operation, body, client=client, on_exchange=on_exchange)
    except ServiceRefused as exc:
        hint = _HINTS.get(exc.detail or "")
        if hint is None:
            raise
        raise ServiceRefused(f"ApCV : {hint} ({exc.reason})", code=exc.code, detail=exc.detail) from None


def _bad(why: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"Réponse du service ApCV inattendue : {why}", code="reponse_invalide")


def _datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"date-heure {value!r} illisible") from None


def _context_head(root: etree._Element, expected: str) -> tuple[str, datetime | None, datetime | None]:
    if root.tag != f"{{{NS_AUTH}}}{expected}":
        raise _bad(f"élément {etree.QName(root).localname} au lieu de {expected}")
    block = child(root, "ContexteApCV")
    context_id = child_text(block, "Identifiant")
    if not context_id:
        raise _bad("ContexteApCV/Identifiant absent")
    return context_id, _datetime(child_text(block, "DateCreation")), _datetime(child_text(block, "DateExpiration"))


def _nir(block: etree._Element | None) -> str | None:
    num, cle = child_text(block, "NumIdentifiant"), child_text(block, "Cle")
    if num is None and cle is None:
        return None
    if not num or not cle or len(num) != 13 or len(cle) != 2:
        raise ValueError(f"matricule {num!r} clé {cle!r} mal formé")
    return num.upper() + cle


def _beneficiary(el: etree._Element) -> ApcvBeneficiary:
    ins_block = child(el, "INS")
    liste = child_text(el, "Traits/ListePrenom") or child_text(el, "Traits/Prenom") or ""
    rank = child_text(el, "Rang")
    ins = _nir(ins_block)
    oid = child_text(ins_block, "OID")
    if ins and not oid:
        raise ValueError("INS sans OID")
    return ApcvBeneficiary(
        is_user=el.get("utilisateur") == "true",
        rank=int(rank) if rank and rank.isdigit() else None,
        card_birth_date=child_text(el, "DateNaissance") or "",
        nir=_nir(child(el, "NIRIndividu")),
        ins=ins,
        ins_oid=oid,
        birth_name=child_text(el, "Traits/NomNaissance") or "",
        used_name=child_text(el, "Traits/NomUtilise"),
        first_name=child_text(el, "Traits/Prenom") or liste.split(" ")[0],
        first_names=tuple(liste.split()),
        first_names_text=liste,
        used_first_name=child_text(el, "Traits/PrenomUtilise"),
        sex=child_text(el, "Traits/Sexe") or "",
        birth_date=date.fromisoformat(child_text(el, "Traits/DateNaissance") or ""),
        birthplace_cog=child_text(el, "Traits/LieuNaissance"),
    )
