"""Hand-written SOAP 1.2 e-prescription request templates for the tests (the format is the bench's assumption).

Header blocks and bodies are literal XML; only values are substituted, and any block can be replaced (or
dropped with "") to exercise each rule.
"""

# ruff: noqa: E501  (literal XML templates are kept readable)

from __future__ import annotations

from saml_signing import sign_assertion

SOAP_CT = "application/soap+xml; charset=utf-8"
NS_EP = "http://www.cnamts.fr/ePrescription/1/0"
ACTION_CREER = "urn:ServiceEPrescription:1.0.0:creerEPrescription"
ACTION_CONSULTER = "urn:ServiceEPrescription:1.0.0:consulterEPrescription"
ACTION_RECHERCHER = "urn:ServiceEPrescription:1.0.0:rechercherEPrescriptions"
IDAM = "SIMUL-LGC-0001"
KIT = "899700366240"  # KIT DOC0036624, general practitioner (personas)
PHARMACIEN = "899999900014"

ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <soap:Header>
    {addressing}
    {security}
    {lps}
  </soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>"""

ADDRESSING = """<wsa:Action>{action}</wsa:Action>
    <wsa:MessageID>{message_id}</wsa:MessageID>"""

SECURITY_CPS_UNSIGNED = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_cps1" Version="2.0" IssueInstant="2026-01-10T09:00:00Z">
        <saml2:Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">CN={nid},O=CABINET TEST,C=FR</saml2:Issuer>
        <saml2:Subject><saml2:NameID NameQualifier="CPS">{nid}</saml2:NameID></saml2:Subject>
        <saml2:AttributeStatement>
          <saml2:Attribute Name="identifiantFacturation"><saml2:AttributeValue>999990013</saml2:AttributeValue></saml2:Attribute>
          <saml2:Attribute Name="secteurActivite"><saml2:AttributeValue>SA07</saml2:AttributeValue></saml2:Attribute>
        </saml2:AttributeStatement>
      </saml2:Assertion>
    </wsse:Security>"""


def security_cps(nid: str) -> str:
    """The prescriber's assertion as a CPS card signs it (enveloped XML-DSig, tests/saml_signing.py): the
    simulators require the signature."""
    return sign_assertion(SECURITY_CPS_UNSIGNED.format(nid=nid))

SECURITY_PSC_NO_SPECIALITE = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion" ID="_psc1" Version="2.0">
        <Subject><NameID NameQualifier="PSC">899700366240</NameID></Subject>
        <AttributeStatement>
          <Attribute Name="identifiantFacturation"><AttributeValue>999990013</AttributeValue></Attribute>
        </AttributeStatement>
      </Assertion>
    </wsse:Security>"""

LPS = """<ctxlps:ContexteLPS xmlns:ctxlps="urn:siram:lps:ctxlps" Nature="CTXLPS" Version="01_00">
      <ctxlps:Id>1f7425e2-b913-415c-8c5b-fcb8c1bd1d4a</ctxlps:Id>
      <ctxlps:Temps>2026-01-10T09:00:00.000Z</ctxlps:Temps>
      <ctxlps:Emetteur>899700366240</ctxlps:Emetteur>
      <ctxlps:LPS>
        <ctxlps:IDAM R="4">{idam}</ctxlps:IDAM>
        <ctxlps:Version>1.0.0</ctxlps:Version>
        <ctxlps:Instance>b5a4ce1c-9c4f-4d36-a0a6-4b0e7e1f2f30</ctxlps:Instance>
        <ctxlps:Nom>urn:lps:lgc-bench:1.0.0</ctxlps:Nom>
      </ctxlps:LPS>
    </ctxlps:ContexteLPS>"""

# CLÉRICO Côme, flagship patient (personas): INS 143110095083713, NIR OID.
PATIENT_CLERICO = """<ep:Patient>
        <ep:INS><ep:NumIdentifiant>{num}</ep:NumIdentifiant><ep:Cle>{cle}</ep:Cle><ep:OID>{oid}</ep:OID></ep:INS>
        <ep:NomNaissance>{nom}</ep:NomNaissance>
        <ep:Prenom>{prenom}</ep:Prenom>
        <ep:Sexe>{sexe}</ep:Sexe>
        <ep:DateNaissance>{ddn}</ep:DateNaissance>
      </ep:Patient>"""

LIGNE_AMOXICILLINE = """<ep:Ligne>
          <ep:Produit><ep:Code systeme="CIP13">3400930000001</ep:Code><ep:Libelle>AMOXICILLINE 1 G CPR</ep:Libelle></ep:Produit>
          <ep:Posologie>1 comprime matin et soir pendant 6 jours</ep:Posologie>
          <ep:Duree unite="j">6</ep:Duree>
          <ep:Quantite unite="boite">1</ep:Quantite>
        </ep:Ligne>"""

LIGNE_PARACETAMOL = """<ep:Ligne>
          <ep:Produit><ep:Libelle>PARACETAMOL 1 G</ep:Libelle></ep:Produit>
          <ep:Posologie>1 g jusqu'a 3 fois par jour si douleur</ep:Posologie>
          <ep:Quantite>2</ep:Quantite>
          <ep:Renouvellements>1</ep:Renouvellements>
          <ep:NonSubstituable>true</ep:NonSubstituable>
        </ep:Ligne>"""

CREER = """<ep:CreerEPrescriptionReq xmlns:ep="http://www.cnamts.fr/ePrescription/1/0" version="1.0">
      {numero}<ep:DatePrescription>{date}</ep:DatePrescription>
      <ep:TypePrescription>{type}</ep:TypePrescription>
      {prescripteur}
      {patient}
      {lignes}
    </ep:CreerEPrescriptionReq>"""

PRESCRIPTEUR = """<ep:Prescripteur><ep:IdNational>{nid}</ep:IdNational><ep:IdentifiantFacturation>{fact}</ep:IdentifiantFacturation></ep:Prescripteur>"""

CONSULTER = """<ConsulterEPrescriptionReq xmlns="http://www.cnamts.fr/ePrescription/1/0" version="1.0"><NumeroPrescription>{numero}</NumeroPrescription></ConsulterEPrescriptionReq>"""

RECHERCHER = """<ep:RechercherEPrescriptionsReq xmlns:ep="http://www.cnamts.fr/ePrescription/1/0" version="1.0">
      <ep:Patient><ep:INS><ep:NumIdentifiant>{num}</ep:NumIdentifiant><ep:Cle>{cle}</ep:Cle><ep:OID>1.2.250.1.213.1.4.8</ep:OID></ep:INS></ep:Patient>
    </ep:RechercherEPrescriptionsReq>"""


def patient(**overrides: str) -> str:
    values = dict(num="1431100950837", cle="13", oid="1.2.250.1.213.1.4.8", nom="CLERICO", prenom="COME", sexe="M",
                  ddn="1943-11-07")
    values.update(overrides)
    return PATIENT_CLERICO.format(**values)


def prescripteur(nid: str = KIT, fact: str = "999990013") -> str:
    return PRESCRIPTEUR.format(nid=nid, fact=fact)


def creer_body(*, numero: str | None = None, date: str = "2026-01-10", type: str = "57833-6",
               prescripteur_xml: str | None = None, patient_xml: str | None = None,
               lignes: str | None = None) -> str:
    return CREER.format(
        numero=f"<ep:NumeroPrescription>{numero}</ep:NumeroPrescription>\n      " if numero else "",
        date=date, type=type,
        prescripteur=prescripteur() if prescripteur_xml is None else prescripteur_xml,
        patient=patient() if patient_xml is None else patient_xml,
        lignes=f"<ep:Lignes>{LIGNE_AMOXICILLINE}{LIGNE_PARACETAMOL}</ep:Lignes>" if lignes is None else lignes,
    )


def consulter_body(numero: str) -> str:
    return CONSULTER.format(numero=numero)


def rechercher_body(num: str = "1431100950837", cle: str = "13") -> str:
    return RECHERCHER.format(num=num, cle=cle)


def envelope(body: str, *, action: str | None = ACTION_CREER, security: str | None = None, lps: str | None = None,
             nid: str = KIT, message_id: str = "urn:uuid:5a0f1c3e-0000-4000-8000-0000000e0001") -> str:
    """A whole request. ``None`` = the default block; ``""`` = block omitted."""
    addressing = ADDRESSING.format(action=action, message_id=message_id) if action else (
        f"<wsa:MessageID>{message_id}</wsa:MessageID>")
    return ENVELOPE.format(
        addressing=addressing,
        security=security_cps(nid) if security is None else security,
        lps=LPS.format(idam=IDAM) if lps is None else lps,
        body=body,
    )
