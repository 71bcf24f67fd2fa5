"""VIHF: the SAML 2.0 assertion an LPS puts in ``wsse:Security`` to say who calls the DMP and for whom.

Checks the attributes DRIM lists as mandatory (protocols.md §2.6) plus the patient resource (INS), and the
value sets we can check (purpose of use, authentication mode, VIHF version, Ressource_URN). The assertion's
XML signature and issuer certificate are *not* verified (the bench has no IGC-Santé PKI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from simulators.core.xmlsafe import NS, find, findall, text

A_VERSION = "VIHF_Version"
A_AUTH_MODE = "Authentification_Mode"
A_ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
A_SECTEUR = "Secteur_Activite"
A_RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
A_RESOURCE_URN = "Ressource_URN"
A_SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
A_STRUCTURE = "Identifiant_Structure"
A_PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
A_LPS_ID = "LPS_ID"
A_LPS_NOM = "LPS_Nom"
A_LPS_VERSION = "LPS_Version"
A_LPS_HOMOLOGATION = "LPS_ID_HOMOLOGATION_DMP"

MANDATORY = (A_VERSION, A_ROLE, A_SECTEUR, A_RESOURCE_URN, A_PURPOSE, A_SUBJECT_ID, A_AUTH_MODE, A_STRUCTURE,
             A_LPS_HOMOLOGATION, A_LPS_NOM, A_RESOURCE_ID)

VERSIONS = ("3.0", "4.0")
AUTH_MODES = ("DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE")
PURPOSES = ("normal", "bris_de_glace", "centre_15")
PURPOSE_SYSTEM = "1.2.250.1.213.1.1.4.248"
ROLE_PROFESSION_SYSTEM = "1.2.250.1.71.1.2.7"  # TRE_G15
ROLE_AUTOMATE_SYSTEM = "1.2.250.1.213.1.1.4.6"

_CX = re.compile(r"^(?P<id>[^\^]+)\^\^\^&(?P<oid>[0-9.]+)&ISO\^(?P<type>[A-Z]+)$")
_SECTEUR = re.compile(r"^(?P<code>[^\^]+)\^(?P<system>[0-9.]+)$")


class VihfError(Exception):
    """The VIHF is missing or unacceptable; ``reason`` names the attribute (French, no accents)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Coded:
    code: str
    system: str | None = None


@dataclass(frozen=True)
class Vihf:
    national_id: str
    name_qualifier: str | None
    authn_context: str | None
    attributes: Mapping[str, tuple[Coded, ...]] = field(repr=False)
    patient_ins: str = ""
    patient_oid: str = ""

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name) or ()
        return values[0].code if values else None

    @property
    def purpose(self) -> str:
        return self.first(A_PURPOSE) or "normal"

    @property
    def roles(self) -> tuple[Coded, ...]:
        return tuple(self.attributes.get(A_ROLE) or ())

    @property
    def profession(self) -> str | None:
        return self.roles[0].code if self.roles else None

    @property
    def secteur(self) -> str | None:
        return self.first(A_SECTEUR)

    @property
    def lps(self) -> dict[str, str | None]:
        return {"id": self.first(A_LPS_ID), "nom": self.first(A_LPS_NOM), "version": self.first(A_LPS_VERSION),
                "homologation": self.first(A_LPS_HOMOLOGATION)}

    def summary(self) -> dict:
        return {"national_id": self.national_id, "purpose": self.purpose, "profession": self.profession,
                "secteur": self.secteur, "lps": self.lps, "auth_mode": self.first(A_AUTH_MODE)}


def _value(av: etree._Element) -> Coded:
    """An AttributeValue: plain text, or an HL7v3 coded element (Role / PurposeOfUse, code + codeSystem)."""
    child = next((c for c in av if isinstance(c.tag, str)), None)
    if child is not None and child.get("code") is not None:
        return Coded(child.get("code", "").strip(), (child.get("codeSystem") or "").strip() or None)
    return Coded(text(av) or "")


def parse_cx(value: str) -> tuple[str, str] | None:
    """``INS^^^&OID&ISO^NH`` -> (INS, OID); None when not in that shape."""
    m = _CX.match(value.strip())
    if not m or m.group("type") != "NH":
        return None
    return m.group("id"), m.group("oid")


def extract(security: etree._Element | None) -> Vihf:
    """Read and check the VIHF in a ``wsse:Security`` header block; raises VihfError."""
    if security is None:
        raise VihfError("En-tete wsse:Security absent : le VIHF est obligatoire")
    assertion = find(security, "saml2:Assertion")
    if assertion is None:
        raise VihfError("Assertion SAML 2.0 (VIHF) absente de wsse:Security")
    if assertion.get("Version") != "2.0":
        raise VihfError("Assertion VIHF : attribut Version='2.0' attendu")
    name_id = find(assertion, "saml2:Subject/saml2:NameID")
    national_id = text(name_id) or ""
    if not national_id:
        raise VihfError("VIHF : Subject/NameID (identifiant national du PS) absent ou vide")
    attrs: dict[str, list[Coded]] = {}
    for attr in findall(assertion, "saml2:AttributeStatement/saml2:Attribute"):
        name = (attr.get("Name") or "").strip()
        values = [_value(av) for av in findall(attr, "saml2:AttributeValue")]
        attrs.setdefault(name, []).extend(v for v in values if v.code)
    for name in MANDATORY:
        if not attrs.get(name):
            raise VihfError(f"VIHF : attribut obligatoire {name} absent ou vide")
    version = attrs[A_VERSION][0].code
    if version not in VERSIONS:
        raise VihfError(f"VIHF : {A_VERSION} {version!r} non supporte (attendu {' ou '.join(VERSIONS)})")
    mode = attrs[A_AUTH_MODE][0].code
    if mode not in AUTH_MODES:
        raise VihfError(f"VIHF : {A_AUTH_MODE} {mode!r} invalide (attendu {', '.join(AUTH_MODES)})")
    purpose = attrs[A_PURPOSE][0]
    if purpose.code not in PURPOSES:
        raise VihfError(f"VIHF : mode d'acces (purposeofuse) {purpose.code!r} invalide "
                        f"(attendu {', '.join(PURPOSES)} du systeme {PURPOSE_SYSTEM})")
    if purpose.system and purpose.system != PURPOSE_SYSTEM:
        raise VihfError(f"VIHF : purposeofuse codeSystem {purpose.system!r} invalide (attendu {PURPOSE_SYSTEM})")
    urn = attrs[A_RESOURCE_URN][0].code
    if urn != "urn:dmp":
        raise VihfError(f"VIHF : {A_RESOURCE_URN} {urn!r} invalide (attendu urn:dmp)")
    role = attrs[A_ROLE][0]
    if role.system not in (ROLE_PROFESSION_SYSTEM, ROLE_AUTOMATE_SYSTEM):
        raise VihfError(f"VIHF : premier role {role.code!r} : codeSystem {role.system!r} invalide (attendu "
                        f"{ROLE_PROFESSION_SYSTEM} (profession) ou {ROLE_AUTOMATE_SYSTEM} (automate))")
    secteur = attrs[A_SECTEUR][0].code
    if not _SECTEUR.match(secteur):
        raise VihfError(f"VIHF : {A_SECTEUR} {secteur!r} invalide (attendu code^systeme, ex. SA07^1.2.250.1.71.4.2.4)")
    cx = parse_cx(attrs[A_RESOURCE_ID][0].code)
    if cx is None:
        raise VihfError(f"VIHF : {A_RESOURCE_ID} {attrs[A_RESOURCE_ID][0].code!r} invalide "
                        "(attendu INS^^^&OID&ISO^NH)")
    ac = text(assertion, "saml2:AuthnStatement/saml2:AuthnContext/saml2:AuthnContextClassRef")
    return Vihf(national_id=national_id, name_qualifier=name_id.get("NameQualifier") if name_id is not None else None,
                authn_context=ac, attributes={k: tuple(v) for k, v in attrs.items()},
                patient_ins=cx[0], patient_oid=cx[1])


def security_block(header: etree._Element | None) -> etree._Element | None:
    if header is None:
        return None
    return next((b for b in header if isinstance(b.tag, str) and b.tag == f"{{{NS['wsse']}}}Security"), None)
