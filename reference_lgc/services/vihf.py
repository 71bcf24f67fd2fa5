"""VIHF: the SAML 2.0 assertion (in ``wsse:Security``) telling the DMP who calls, for which patient and why.

Attributes follow protocols.md §2.6 (DRIM mandatory list + patient resource). The assertion is not signed: the
reference LGC has no structure "cachet" certificate; the bench's DMP does not verify the signature.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from lxml import etree

from .context import CallContext, ServiceRefused

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

Purpose = Literal["normal", "bris_de_glace", "centre_15"]
AuthMode = Literal["DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE"]

PURPOSE_SYSTEM = "1.2.250.1.213.1.1.4.248"  # TRE_R248-ModeAcces
PROFESSION_SYSTEM = "1.2.250.1.71.1.2.7"  # TRE_G15
SPECIALITY_SYSTEM = "1.2.250.1.71.4.2.5"  # TRE_R01 savoir-faire
SECTOR_SYSTEM = "1.2.250.1.71.4.2.4"  # JDV_J61
VIHF_VERSION = "3.0"
AC_TLS_CLIENT = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"


def patient_cx(ins: str, oid: str) -> str:
    """INS as the HL7v2 CX the DMP expects everywhere: ``INS^^^&OID&ISO^NH``."""
    return f"{ins}^^^&{oid}&ISO^NH"


def software_oid(ctx: CallContext) -> str:
    """A stable OID for this installation (sourceId, HL7v3 sender): the 2.25 arc of the instance UUID."""
    try:
        return f"2.25.{uuid.UUID(ctx.software.instance).int}"
    except ValueError:
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, ctx.software.instance).int}"


def auth_mode(ctx: CallContext) -> AuthMode:
    # A PSC login (e-CPS/CPS through an identity provider) is the LPS vouching for a strongly authenticated user:
    # "authentification indirecte renforcée". Overridable per endpoint (extra["vihf_auth_mode"]).
    mode = ctx.endpoint.extra.get("vihf_auth_mode")
    if mode in ("DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE"):
        return mode  # type: ignore[return-value]
    return "INDIRECTE_RENFORCEE" if ctx.professional.access_token else "INDIRECTE"


def _attr(parent: etree._Element, name: str, *values: str | etree._Element) -> None:
    a = etree.SubElement(parent, f"{{{SAML}}}Attribute", Name=name)
    for v in values:
        av = etree.SubElement(a, f"{{{SAML}}}AttributeValue")
        if isinstance(v, str):
            av.text = v
        else:
            av.append(v)


def _coded(tag: str, code: str, system: str, display: str = "") -> etree._Element:
    el = etree.Element(f"{{{HL7}}}{tag}", nsmap={None: HL7, "xsi": XSI}, code=code, codeSystem=system)
    el.set(f"{{{XSI}}}type", "CE")
    if display:
        el.set("displayName", display)
    return el


def security_header(ctx: CallContext, ins: str, oid: str, purpose: Purpose = "normal",
                    now: datetime | None = None) -> etree._Element:
    """The ``wsse:Security`` header block carrying the VIHF for one transaction on one patient."""
    pro, sw = ctx.professional, ctx.software
    if not pro.structure_id:
        raise ServiceRefused("Identifiant de la structure d'exercice absent : il est obligatoire dans le VIHF "
                             "(Identifiant_Structure), vérifier le paramétrage du compte", code="VIHF")
    now = now or datetime.now(UTC)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sec = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    assertion = etree.SubElement(sec, f"{{{SAML}}}Assertion", nsmap={"saml2": SAML}, ID=f"_{uuid.uuid4()}",
                                 IssueInstant=stamp, Version="2.0")
    issuer = etree.SubElement(assertion, f"{{{SAML}}}Issuer",
                              Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName")
    issuer.text = ctx.endpoint.extra.get("vihf_issuer") or f"CN={pro.structure_name or pro.structure_id},C=FR"
    subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
    name_id = etree.SubElement(subject, f"{{{SAML}}}NameID",
                               Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")
    name_id.text = pro.national_id
    authn = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=stamp)
    ac = etree.SubElement(etree.SubElement(authn, f"{{{SAML}}}AuthnContext"), f"{{{SAML}}}AuthnContextClassRef")
    ac.text = AC_TLS_CLIENT  # the LGC reaches the DMP with its structure certificate
    st = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
    _attr(st, "VIHF_Version", VIHF_VERSION)
    _attr(st, "Authentification_Mode", auth_mode(ctx))
    roles = [_coded("Role", pro.role or pro.profession, PROFESSION_SYSTEM)]
    if pro.speciality:
        roles.append(_coded("Role", pro.speciality, SPECIALITY_SYSTEM))
    _attr(st, "urn:oasis:names:tc:xacml:2.0:subject:role", *roles)
    _attr(st, "Secteur_Activite", f"{pro.sector}^{SECTOR_SYSTEM}")
    _attr(st, "urn:oasis:names:tc:xacml:2.0:resource:resource-id", patient_cx(ins, oid))
    _attr(st, "Ressource_URN", "urn:dmp")
    _attr(st, "urn:oasis:names:tc:xspa:1.0:subject:subject-id", f"{pro.given_name} {pro.family_name}".strip())
    _attr(st, "Identifiant_Structure", pro.structure_id)
    _attr(st, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", _coded("PurposeOfUse", purpose, PURPOSE_SYSTEM))
    _attr(st, "LPS_ID", sw.instance)
    _attr(st, "LPS_Nom", sw.name)
    _attr(st, "LPS_Version", sw.version)
    _attr(st, "LPS_ID_HOMOLOGATION_DMP", sw.homologation_dmp)
    return sec
