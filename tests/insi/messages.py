"""Hand-written SOAP 1.2 INSi request templates (several prefix styles) for the tests.

The header blocks and bodies are literal XML; only values are substituted, and a block can be
replaced (or dropped with "") to exercise each header rule.
"""

# ruff: noqa: E501  (literal XML templates are kept readable, one element per line)

from __future__ import annotations

from collections.abc import Sequence

from saml_signing import sign_assertion

SOAP_CT = "application/soap+xml; charset=utf-8"
ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
ACTION_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
IDAM = "SIMUL-LGC-0001"

ENVELOPES = {
    # style -> (envelope prefix, template)
    "soap": """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <soap:Header>
    {addressing}
    {security}
    {lps}
    {bam}
  </soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>""",
    "env": """<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Header xmlns:wsa="http://www.w3.org/2005/08/addressing">{addressing}{security}{lps}{bam}</env:Header>
  <env:Body>
    {body}
  </env:Body>
</env:Envelope>""",
    "S": """<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope"
            xmlns:wsa="http://www.w3.org/2005/08/addressing"><S:Header>{lps}{bam}{security}{addressing}</S:Header><S:Body>{body}</S:Body></S:Envelope>""",
}

ADDRESSING = """<wsa:Action>{action}</wsa:Action>
    <wsa:MessageID>{message_id}</wsa:MessageID>"""

SECURITY_CPS_UNSIGNED = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_cps1" Version="2.0" IssueInstant="2026-01-10T09:00:00Z">
        <saml2:Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">CN=899700366240,O=CABINET TEST,C=FR</saml2:Issuer>
        <saml2:Subject><saml2:NameID NameQualifier="CPS">899700366240</saml2:NameID></saml2:Subject>
        <saml2:AttributeStatement>
          <saml2:Attribute Name="identifiantFacturation"><saml2:AttributeValue>631234567</saml2:AttributeValue></saml2:Attribute>
          <saml2:Attribute Name="secteurActivite"><saml2:AttributeValue>SA07</saml2:AttributeValue></saml2:Attribute>
        </saml2:AttributeStatement>
      </saml2:Assertion>
    </wsse:Security>"""
# As a CPS card signs it (enveloped XML-DSig, see tests/saml_signing.py): the simulators require the signature.
SECURITY_CPS = sign_assertion(SECURITY_CPS_UNSIGNED)

SECURITY_PSC = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="_psc1" Version="2.0" IssueInstant="2026-01-10T09:00:00Z">
        <Issuer>https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet</Issuer>
        <Subject><NameID NameQualifier="PSC">899700366240</NameID></Subject>
        <AttributeStatement>
          <Attribute Name="codeSpecialiteAMO"><AttributeValue>01</AttributeValue></Attribute>
          <Attribute Name="identifiantFacturation"><AttributeValue>631234567</AttributeValue></Attribute>
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

BAM_EMPTY = """<ctxbam:ContexteBAM xmlns:ctxbam="urn:siram:bam:ctxbam" Version="{version}">
      <ctxbam:Id>7d9b3c50-1fb6-4c0b-9c1c-0f0d3f1d0a11</ctxbam:Id>
      <ctxbam:Temps>2026-01-10T09:00:00.000Z</ctxbam:Temps>
      <ctxbam:Emetteur>899700366240</ctxbam:Emetteur>
      <ctxbam:COUVERTURE/>
    </ctxbam:ContexteBAM>"""

BAM_CARD = """<ctxbam:ContexteBAM xmlns:ctxbam="urn:siram:bam:ctxbam" Version="01_02" Nature="CTXBAM">
      <ctxbam:Id>7d9b3c50-1fb6-4c0b-9c1c-0f0d3f1d0a12</ctxbam:Id>
      <ctxbam:Temps>2026-01-10T09:00:00.000Z</ctxbam:Temps>
      <ctxbam:Emetteur>899700366240</ctxbam:Emetteur>
      <ctxbam:COUVERTURE>
        <ctxbam:GrandRegime>01</ctxbam:GrandRegime>
        <ctxbam:Organisme>631</ctxbam:Organisme>
        <ctxbam:CodeCentre>0001</ctxbam:CodeCentre>
        <ctxbam:ASSURE><ctxbam:Id><ctxbam:Num>{od_num}</ctxbam:Num><ctxbam:Cle>{od_cle}</ctxbam:Cle></ctxbam:Id></ctxbam:ASSURE>
      </ctxbam:COUVERTURE>
    </ctxbam:ContexteBAM>"""

# Body templates: prefix styles "ns0" (prefixed), "ns1" (another prefix), "default" (default namespace)
RECSANS = {
    "ns0": """<ns0:RECSANSVITALE xmlns:ns0="http://www.cnamts.fr/INSiRecSans">{fields}</ns0:RECSANSVITALE>""",
    "ns1": """<ns1:RECSANSVITALE xmlns:ns1="http://www.cnamts.fr/INSiRecSans">{fields}</ns1:RECSANSVITALE>""",
    "default": """<RECSANSVITALE xmlns="http://www.cnamts.fr/INSiRecSans">{fields}</RECSANSVITALE>""",
}
RECVIT = {
    "ns0": """<ns0:RECVITALE xmlns:ns0="http://www.cnamts.fr/INSiRecVit">{fields}</ns0:RECVITALE>""",
    "ns1": """<ns1:RECVITALE xmlns:ns1="http://www.cnamts.fr/INSiRecVit">{fields}</ns1:RECVITALE>""",
    "default": """<RECVITALE xmlns="http://www.cnamts.fr/INSiRecVit">{fields}</RECVITALE>""",
}


def _prefix(style: str) -> str:
    return "" if style == "default" else style + ":"


def traits_body(nom: str, prenoms: Sequence[str], sexe: str, ddn: str, cog: str | None = None,
                style: str = "ns0") -> str:
    p = _prefix(style)
    fields = f"<{p}NomNaissance>{nom}</{p}NomNaissance>"
    fields += "".join(f"<{p}Prenom>{x}</{p}Prenom>" for x in prenoms)
    fields += f"<{p}Sexe>{sexe}</{p}Sexe><{p}DateNaissance>{ddn}</{p}DateNaissance>"
    if cog is not None:
        fields += f"<{p}LieuNaissance>{cog}</{p}LieuNaissance>"
    return RECSANS[style].format(fields=fields)


def vitale_body(od: str | None, ddn: str, rang: str | None = None, individu: str | None = None,
                style: str = "ns1") -> str:
    p = _prefix(style)
    fields = ""
    if individu:
        fields += (f"<{p}MatriculeIndividu><{p}NumIdentifiant>{individu[:13]}</{p}NumIdentifiant>"
                   f"<{p}Cle>{individu[13:]}</{p}Cle></{p}MatriculeIndividu>")
    if od:
        fields += (f"<{p}MatriculeOD><{p}NumIdentifiant>{od[:13]}</{p}NumIdentifiant>"
                   f"<{p}Cle>{od[13:]}</{p}Cle></{p}MatriculeOD>")
    fields += f"<{p}DateNaissance>{ddn}</{p}DateNaissance>"
    if rang is not None:
        fields += f"<{p}RangNaissance>{rang}</{p}RangNaissance>"
    return RECVIT[style].format(fields=fields)


def lps_block(**overrides: str) -> str:
    values = dict(nature="CTXLPS", version="01_00", r="4", idam=IDAM, lps_version="1.0.0",
                  instance="b5a4ce1c-9c4f-4d36-a0a6-4b0e7e1f2f30", nom="urn:lps:lgc-bench:1.0.0")
    values.update(overrides)
    return LPS.format(**values)


def envelope(body: str, *, style: str = "soap", action: str | None = ACTION_TRAITS,
             message_id: str = "urn:uuid:5a0f1c3e-0000-4000-8000-00000000abcd",
             security: str | None = None, lps: str | None = None, bam: str | None = None,
             card: str | None = None) -> str:
    """A whole request. ``None`` = the default block; ``""`` = block omitted."""
    addressing = ADDRESSING.format(action=action, message_id=message_id) if action else (
        f"<wsa:MessageID>{message_id}</wsa:MessageID>")
    if bam is None:
        bam = BAM_CARD.format(od_num=card[:13], od_cle=card[13:]) if card else BAM_EMPTY.format(version="01_02")
    return ENVELOPES[style].format(
        addressing=addressing,
        security=SECURITY_CPS if security is None else security,
        lps=lps_block() if lps is None else lps,
        bam=bam,
        body=body,
    )
