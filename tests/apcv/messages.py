"""Hand-written SOAP 1.2 ApCV request templates (several prefix styles) for the tests.

The header blocks and bodies are literal XML; only values are substituted, and a block can be
replaced (or dropped with "") to exercise each header rule.
"""

# ruff: noqa: E501  (literal XML templates are kept readable, one element per line)

from __future__ import annotations

from saml_signing import sign_assertion

SOAP_CT = "application/soap+xml; charset=utf-8"
NS_AUTH = "http://www.sesam-vitale.fr/apcv/auth/1/0"
ACTION_AUTH = "urn:ApCV_AUTH:1.0.0:authentifierUtilisateurProximite"
ACTION_RESTITUER = "urn:ApCV_AUTH:1.0.0:restituerContexteApCV"
ACTION_DETRUIRE = "urn:ApCV_AUTH:1.0.0:detruireContexteApCV"
IDAM = "SIMUL-LGC-0001"
FACTURATION = "631234567"

ENVELOPES = {
    "soap": """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <soap:Header>
    {addressing}
    {security}
    {lps}
  </soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>""",
    "env": """<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Header xmlns:wsa="http://www.w3.org/2005/08/addressing">{addressing}{security}{lps}</env:Header>
  <env:Body>
    {body}
  </env:Body>
</env:Envelope>""",
    "S": """<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope"
            xmlns:wsa="http://www.w3.org/2005/08/addressing"><S:Header>{lps}{security}{addressing}</S:Header><S:Body>{body}</S:Body></S:Envelope>""",
}

ADDRESSING = """<wsa:Action>{action}</wsa:Action>
    <wsa:MessageID>{message_id}</wsa:MessageID>
    <wsa:To>http://localhost/apcv</wsa:To>"""

SECURITY_CPS_UNSIGNED = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_cps1" Version="2.0" IssueInstant="2026-01-10T09:00:00Z">
        <saml2:Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">CN=899700366240,O=CABINET TEST,C=FR</saml2:Issuer>
        <saml2:Subject><saml2:NameID NameQualifier="CPS">899700366240</saml2:NameID></saml2:Subject>
        <saml2:AttributeStatement>
          <saml2:Attribute Name="identifiantFacturation"><saml2:AttributeValue>{facturation}</saml2:AttributeValue></saml2:Attribute>
          <saml2:Attribute Name="secteurActivite"><saml2:AttributeValue>SA07</saml2:AttributeValue></saml2:Attribute>
        </saml2:AttributeStatement>
      </saml2:Assertion>
    </wsse:Security>"""
# As a CPS card signs it (enveloped XML-DSig, see tests/saml_signing.py): the simulators require the signature.


def security_cps(facturation: str) -> str:
    """The professional's assertion as a CPS card signs it (enveloped XML-DSig, tests/saml_signing.py): the
    simulators require the signature."""
    return sign_assertion(SECURITY_CPS_UNSIGNED.format(facturation=facturation))


SECURITY_CPS = security_cps(FACTURATION)

SECURITY_PSC = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="_psc1" Version="2.0" IssueInstant="2026-01-10T09:00:00Z">
        <Issuer>https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet</Issuer>
        <Subject><NameID NameQualifier="PSC">899700366240</NameID></Subject>
        <AttributeStatement>
          <Attribute Name="codeSpecialiteAMO"><AttributeValue>01</AttributeValue></Attribute>
          <Attribute Name="identifiantFacturation"><AttributeValue>{facturation}</AttributeValue></Attribute>
        </AttributeStatement>
      </Assertion>
    </wsse:Security>"""

LPS = """<ctxlps:ContexteLPS xmlns:ctxlps="urn:siram:lps:ctxlps" Nature="{nature}" Version="{version}">
      <ctxlps:Id>1f7425e2-b913-415c-8c5b-fcb8c1bd1d4a</ctxlps:Id>
      <ctxlps:Temps>2026-01-10T09:00:00.000Z</ctxlps:Temps>
      <ctxlps:Emetteur>899700366240</ctxlps:Emetteur>
      <ctxlps:LPS>
        <ctxlps:IDAM R="{r}">{idam}</ctxlps:IDAM>
        <ctxlps:Version>{lps_version}</ctxlps:Version>
        <ctxlps:Instance>{instance}</ctxlps:Instance>
        <ctxlps:Nom>{nom}</ctxlps:Nom>
      </ctxlps:LPS>
    </ctxlps:ContexteLPS>"""

# Body prefix styles: "apcv" (prefixed), "ns2" (another prefix), "default" (default namespace), "unqualified"
# (root qualified, children without namespace: accepted by the simulator, not by the XSD).
ROOTS = {
    "apcv": '<apcv:{name} xmlns:apcv="http://www.sesam-vitale.fr/apcv/auth/1/0"{attrs}>{fields}</apcv:{name}>',
    "ns2": '<ns2:{name} xmlns:ns2="http://www.sesam-vitale.fr/apcv/auth/1/0"{attrs}>{fields}</ns2:{name}>',
    "default": '<{name} xmlns="http://www.sesam-vitale.fr/apcv/auth/1/0"{attrs}>{fields}</{name}>',
    "unqualified": '<a:{name} xmlns:a="http://www.sesam-vitale.fr/apcv/auth/1/0"{attrs}>{fields}</a:{name}>',
}


def _p(style: str) -> str:
    return {"apcv": "apcv:", "ns2": "ns2:"}.get(style, "")


def _root(name: str, fields: str, style: str, version: str | None) -> str:
    attrs = f' version="{version}"' if version is not None else ""
    return ROOTS[style].format(name=name, attrs=attrs, fields=fields)


def auth_body(donnees: str, *, facturation: str = FACTURATION, specialite: str = "01", style: str = "apcv",
              version: str | None = "1.0", with_ps: bool = True) -> str:
    p = _p(style)
    fields = ""
    if with_ps:
        fields += (f"<{p}ProfessionnelSante><{p}IdentifiantFacturation>{facturation}</{p}IdentifiantFacturation>"
                   f"<{p}CodeSpecialiteAMO>{specialite}</{p}CodeSpecialiteAMO></{p}ProfessionnelSante>")
    fields += f"<{p}Donnees>{donnees}</{p}Donnees>"
    return _root("AuthentifierUtilisateurProximiteReq", fields, style, version)


def context_body(name: str, context_id: str, *, style: str = "apcv", version: str | None = "1.0") -> str:
    p = _p(style)
    fields = f"<{p}ContexteApCV><{p}Identifiant>{context_id}</{p}Identifiant></{p}ContexteApCV>"
    return _root(name, fields, style, version)


def restituer_body(context_id: str, **kw: str | None) -> str:
    return context_body("RestituerContexteApCVReq", context_id, **kw)  # type: ignore[arg-type]


def detruire_body(context_id: str, **kw: str | None) -> str:
    return context_body("DetruireContexteApCVReq", context_id, **kw)  # type: ignore[arg-type]


def lps_block(**overrides: str) -> str:
    values = dict(nature="CTXLPS", version="01_00", r="4", idam=IDAM, lps_version="1.0.0",
                  instance="b5a4ce1c-9c4f-4d36-a0a6-4b0e7e1f2f30", nom="urn:lps:lgc-bench:1.0.0")
    values.update(overrides)
    return LPS.format(**values)


def envelope(body: str, *, action: str | None = ACTION_AUTH, style: str = "soap",
             message_id: str = "urn:uuid:5a0f1c3e-0000-4000-8000-0000000a9c01",
             security: str | None = None, lps: str | None = None, facturation: str = FACTURATION) -> str:
    """A whole request. ``None`` = the default block; ``""`` = block omitted."""
    addressing = ADDRESSING.format(action=action, message_id=message_id) if action else (
        f"<wsa:MessageID>{message_id}</wsa:MessageID>")
    return ENVELOPES[style].format(
        addressing=addressing,
        security=security_cps(facturation) if security is None else security,
        lps=lps_block() if lps is None else lps,
        body=body,
    )
