"""Hand-written DMP request templates (SOAP 1.2 + VIHF, HL7v3 TD0.2, TD0.3, ebRIM ITI-41/18/43/57, MTOM).

The XML is literal text written for these tests (never produced by the simulator's serializer); only values
are substituted, and a VIHF attribute can be dropped to exercise each rule.
"""

# ruff: noqa: E501  (literal XML templates are kept readable)

from __future__ import annotations

import base64
import hashlib

SOAP_CT = "application/soap+xml; charset=utf-8"
GP = "899700366240"  # DR KIT DOC0036624, the flagship user
OTHER = "899700218896"  # ROBERT SPECIALISTE0021889, author of the seeded documents
CLERICO = "143110095083713"
BOUCHER = "167100093480710"
DMPCLOS = "290106322090821"
SANSDMP = "152026322090958"
OPPOSANT = "171066322091063"  # has blocked GP
TEST_OID = "1.2.250.1.213.1.4.10"

A_TD02 = "urn:hl7-org:v3:PRPA_IN201307UV02"
A_TD03 = "urn:si-dmp-habilitations:HabilitationsEndPoint:setAuthorization"
A_ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
A_ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
A_ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
A_ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"

VIHF_ATTRIBUTES = {
    "VIHF_Version": '<saml2:Attribute Name="VIHF_Version"><saml2:AttributeValue>3.0</saml2:AttributeValue></saml2:Attribute>',
    "Authentification_Mode": '<saml2:Attribute Name="Authentification_Mode"><saml2:AttributeValue>INDIRECTE</saml2:AttributeValue></saml2:Attribute>',
    "urn:oasis:names:tc:xacml:2.0:subject:role": """<saml2:Attribute Name="urn:oasis:names:tc:xacml:2.0:subject:role">
            <saml2:AttributeValue><Role xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CE" code="10" codeSystem="1.2.250.1.71.1.2.7" displayName="Medecin"/></saml2:AttributeValue>
            <saml2:AttributeValue><Role xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CE" code="SM26" codeSystem="1.2.250.1.71.4.2.5" displayName="Qualifie en medecine generale"/></saml2:AttributeValue>
          </saml2:Attribute>""",
    "Secteur_Activite": '<saml2:Attribute Name="Secteur_Activite"><saml2:AttributeValue>SA07^1.2.250.1.71.4.2.4</saml2:AttributeValue></saml2:Attribute>',
    "urn:oasis:names:tc:xacml:2.0:resource:resource-id": '<saml2:Attribute Name="urn:oasis:names:tc:xacml:2.0:resource:resource-id"><saml2:AttributeValue>{ins}^^^&amp;{oid}&amp;ISO^NH</saml2:AttributeValue></saml2:Attribute>',
    "Ressource_URN": '<saml2:Attribute Name="Ressource_URN"><saml2:AttributeValue>urn:dmp</saml2:AttributeValue></saml2:Attribute>',
    "urn:oasis:names:tc:xspa:1.0:subject:subject-id": '<saml2:Attribute Name="urn:oasis:names:tc:xspa:1.0:subject:subject-id"><saml2:AttributeValue>DR KIT DOC0036624</saml2:AttributeValue></saml2:Attribute>',
    "Identifiant_Structure": '<saml2:Attribute Name="Identifiant_Structure"><saml2:AttributeValue>499700366240007</saml2:AttributeValue></saml2:Attribute>',
    "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse": """<saml2:Attribute Name="urn:oasis:names:tc:xspa:1.0:subject:purposeofuse">
            <saml2:AttributeValue><PurposeOfUse xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CE" code="{purpose}" codeSystem="1.2.250.1.213.1.1.4.248" displayName="Mode d'acces"/></saml2:AttributeValue>
          </saml2:Attribute>""",
    "LPS_ID": '<saml2:Attribute Name="LPS_ID"><saml2:AttributeValue>SIMUL-LGC-0001</saml2:AttributeValue></saml2:Attribute>',
    "LPS_Nom": '<saml2:Attribute Name="LPS_Nom"><saml2:AttributeValue>LGC de test</saml2:AttributeValue></saml2:Attribute>',
    "LPS_Version": '<saml2:Attribute Name="LPS_Version"><saml2:AttributeValue>1.0</saml2:AttributeValue></saml2:Attribute>',
    "LPS_ID_HOMOLOGATION_DMP": '<saml2:Attribute Name="LPS_ID_HOMOLOGATION_DMP"><saml2:AttributeValue>BENCH-DMP-0001</saml2:AttributeValue></saml2:Attribute>',
}

SECURITY = """<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
      <saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_vihf1" Version="2.0" IssueInstant="2026-11-25T09:00:00Z">
        <saml2:Issuer Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName">CN=CABINET TEST,O=CABINET TEST,C=FR</saml2:Issuer>
        <saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">{nid}</saml2:NameID></saml2:Subject>
        <saml2:AuthnStatement AuthnInstant="2026-11-25T09:00:00Z"><saml2:AuthnContext><saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>
        <saml2:AttributeStatement>
          {attributes}
        </saml2:AttributeStatement>
      </saml2:Assertion>
    </wsse:Security>"""

ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">
  <soap:Header>
    <wsa:Action soap:mustUnderstand="true">{action}</wsa:Action>
    <wsa:MessageID>urn:uuid:{message_id}</wsa:MessageID>
    <wsa:To>http://127.0.0.1/si-dmp-server/v2/services/{service}</wsa:To>
    {security}
  </soap:Header>
  <soap:Body>{body}</soap:Body>
</soap:Envelope>"""


def security(ins: str = CLERICO, *, nid: str = GP, purpose: str = "normal", oid: str = TEST_OID,
             drop: str | None = None) -> str:
    attrs = "\n          ".join(v for k, v in VIHF_ATTRIBUTES.items() if k != drop)
    return SECURITY.format(nid=nid, attributes=attrs.replace("{ins}", ins).replace("{oid}", oid)
                           .replace("{purpose}", purpose))


def envelope(action: str, service: str, body: str, ins: str = CLERICO, *, sec: str | None = None,
             message_id: str = "6f1c2c39-3c2e-4f57-9d8a-0a3f4c1e2b11", **vihf) -> str:
    return ENVELOPE.format(action=action, service=service, body=body, message_id=message_id,
                           security=security(ins, **vihf) if sec is None else sec)


# --- TD0.2 / TD0.3 ------------------------------------------------------------------------------------

TD02 = """<PRPA_IN201307UV02 xmlns="urn:hl7-org:v3" ITSVersion="XML_1.0">
      <id root="1.2.250.1.999.1" extension="MSG-0001"/>
      <creationTime value="20261125090000"/>
      <interactionId root="2.16.840.1.113883.1.6" extension="PRPA_IN201307UV02"/>
      <processingCode code="D"/>
      <processingModeCode code="T"/>
      <acceptAckCode code="AL"/>
      <receiver typeCode="RCV"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.213.4.1.1.1"/><softwareName>DMP</softwareName></device></receiver>
      <sender typeCode="SND"><device classCode="DEV" determinerCode="INSTANCE"><id root="1.2.250.1.999.2"/><softwareName>LGC de test</softwareName></device></sender>
      <controlActProcess classCode="CACT" moodCode="EVN">
        <code code="PRPA_TE201307UV02" codeSystem="2.16.840.1.113883.1.6"/>
        <reasonCode code="TEST_EXST" codeSystem="1.2.250.1.213.1.1.4.11" displayName="Test d'existence de dossier"/>
        <queryByParameter>
          <queryId root="1.2.250.1.999.3" extension="Q-0001"/>
          <statusCode code="new"/>
          <responsePriorityCode code="I"/>
          <parameterList>
            <patientIdentifier>
              <value root="{oid}" extension="{ins}"/>
              <semanticsText>Patient.id</semanticsText>
            </patientIdentifier>
          </parameterList>
        </queryByParameter>
      </controlActProcess>
    </PRPA_IN201307UV02>"""


def td02(ins: str = CLERICO, oid: str = TEST_OID) -> str:
    return TD02.replace("{ins}", ins).replace("{oid}", oid)


def td03(action: str = "AJOUT") -> str:
    return f"""<hab:setAuthorization xmlns:hab="urn:si-dmp-habilitations">
      <hab:action>{action}</hab:action>
      <hab:medecinTraitantDMP>false</hab:medecinTraitantDMP>
    </hab:setAuthorization>"""


# --- ITI-41 -----------------------------------------------------------------------------------------

CDA = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="{uid}"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de consultation"/>
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20261125090000+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{set_id}"/>
  <versionNumber value="{version}"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="143110095083713"/></patientRole></recordTarget>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0xLjQKJSVFT0YK</text></nonXMLBody></component>
</ClinicalDocument>
"""

SIGNATURE = b"""<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo/><ds:SignatureValue>AA==</ds:SignatureValue></ds:Signature>"""

PNR = """<xds:ProvideAndRegisterDocumentSetRequest xmlns:xds="urn:ihe:iti:xds-b:2007" xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0" xmlns:xop="http://www.w3.org/2004/08/xop/include">
  <lcm:SubmitObjectsRequest>
    <rim:RegistryObjectList>
      <rim:RegistryPackage id="SubmissionSet01" objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage">
        <rim:Slot name="submissionTime"><rim:ValueList><rim:Value>20261125090000</rim:Value></rim:ValueList></rim:Slot>
        <rim:Name><rim:LocalizedString value="Soumission LGC"/></rim:Name>
        <rim:Classification classificationScheme="urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d" classifiedObject="SubmissionSet01" nodeRepresentation="" id="cl01">
          <rim:Slot name="authorPerson"><rim:ValueList><rim:Value>{nid}^DOC0036624^KIT^^^DR^^^&amp;1.2.250.1.71.4.2.1&amp;ISO^D^^^IDNPS</rim:Value></rim:ValueList></rim:Slot>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:aa543740-bdda-424e-8c96-df4873be8500" classifiedObject="SubmissionSet01" nodeRepresentation="07" id="cl02">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>1.2.250.1.213.2.2</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Consultation externe"/></rim:Name>
        </rim:Classification>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8" value="{ss_uid}" id="ei01" registryObject="SubmissionSet01"><rim:Name><rim:LocalizedString value="XDSSubmissionSet.uniqueId"/></rim:Name></rim:ExternalIdentifier>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832" value="1.2.250.1.999.2" id="ei02" registryObject="SubmissionSet01"><rim:Name><rim:LocalizedString value="XDSSubmissionSet.sourceId"/></rim:Name></rim:ExternalIdentifier>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446" value="{ins}^^^&amp;{oid}&amp;ISO^NH" id="ei03" registryObject="SubmissionSet01"><rim:Name><rim:LocalizedString value="XDSSubmissionSet.patientId"/></rim:Name></rim:ExternalIdentifier>
      </rim:RegistryPackage>
      <rim:Classification classifiedObject="SubmissionSet01" classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd" id="cl03"/>
      <rim:ExtrinsicObject id="Document01" mimeType="text/xml" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
        <rim:Slot name="creationTime"><rim:ValueList><rim:Value>{creation}</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="languageCode"><rim:ValueList><rim:Value>fr-FR</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="sourcePatientId"><rim:ValueList><rim:Value>{ins}^^^&amp;{oid}&amp;ISO^NH</rim:Value></rim:ValueList></rim:Slot>
        <rim:Name><rim:LocalizedString value="{title}"/></rim:Name>
        <rim:Classification classificationScheme="urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d" classifiedObject="Document01" nodeRepresentation="" id="cl10">
          <rim:Slot name="authorPerson"><rim:ValueList><rim:Value>{nid}^DOC0036624^KIT^^^DR^^^&amp;1.2.250.1.71.4.2.1&amp;ISO^D^^^IDNPS</rim:Value></rim:ValueList></rim:Slot>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a" classifiedObject="Document01" nodeRepresentation="10" id="cl11">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>1.2.250.1.213.1.1.4.1</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Compte rendu"/></rim:Name>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f" classifiedObject="Document01" nodeRepresentation="N" id="cl12">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>2.16.840.1.113883.5.25</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Normal"/></rim:Name>
        </rim:Classification>
        {extra_conf}
        <rim:Classification classificationScheme="urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d" classifiedObject="Document01" nodeRepresentation="urn:ihe:iti:xds-sd:pdf:2008" id="cl13">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>1.3.6.1.4.1.19376.1.2.3</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Document a corps non structure en PDF"/></rim:Name>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1" classifiedObject="Document01" nodeRepresentation="SA07" id="cl14">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>1.2.250.1.71.4.2.4</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Cabinet individuel"/></rim:Name>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead" classifiedObject="Document01" nodeRepresentation="AMBULATOIRE" id="cl15">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>1.2.250.1.213.1.1.4.9</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Ambulatoire"/></rim:Name>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:f0306f51-975f-434e-a61c-c59651d33983" classifiedObject="Document01" nodeRepresentation="{type_code}" id="cl16">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>2.16.840.1.113883.6.1</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Type"/></rim:Name>
        </rim:Classification>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427" value="{ins}^^^&amp;{oid}&amp;ISO^NH" id="ei10" registryObject="Document01"><rim:Name><rim:LocalizedString value="XDSDocumentEntry.patientId"/></rim:Name></rim:ExternalIdentifier>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab" value="{doc_uid}" id="ei11" registryObject="Document01"><rim:Name><rim:LocalizedString value="XDSDocumentEntry.uniqueId"/></rim:Name></rim:ExternalIdentifier>
      </rim:ExtrinsicObject>
      {signature_eo}
      <rim:Association associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember" sourceObject="SubmissionSet01" targetObject="Document01" id="as01">
        <rim:Slot name="SubmissionSetStatus"><rim:ValueList><rim:Value>Original</rim:Value></rim:ValueList></rim:Slot>
      </rim:Association>
      {rplc}
    </rim:RegistryObjectList>
  </lcm:SubmitObjectsRequest>
  <xds:Document id="Document01">{doc_content}</xds:Document>
  {signature_doc}
</xds:ProvideAndRegisterDocumentSetRequest>"""

SIGNATURE_EO = """<rim:ExtrinsicObject id="Signature01" mimeType="text/xml" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
        <rim:Slot name="creationTime"><rim:ValueList><rim:Value>20261125090000</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="languageCode"><rim:ValueList><rim:Value>art</rim:Value></rim:ValueList></rim:Slot>
        <rim:Name><rim:LocalizedString value="Source"/></rim:Name>
        <rim:Classification classificationScheme="urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a" classifiedObject="Signature01" nodeRepresentation="urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1" id="cl20">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>URN</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Digital Signature"/></rim:Name>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f" classifiedObject="Signature01" nodeRepresentation="N" id="cl21">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>2.16.840.1.113883.5.25</rim:Value></rim:ValueList></rim:Slot>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d" classifiedObject="Signature01" nodeRepresentation="http://www.w3.org/2000/09/xmldsig#" id="cl22">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>URN</rim:Value></rim:ValueList></rim:Slot>
        </rim:Classification>
        <rim:Classification classificationScheme="urn:uuid:f0306f51-975f-434e-a61c-c59651d33983" classifiedObject="Signature01" nodeRepresentation="E1762" id="cl23">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>ASTM</rim:Value></rim:ValueList></rim:Slot>
        </rim:Classification>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427" value="{ins}^^^&amp;{oid}&amp;ISO^NH" id="ei20" registryObject="Signature01"><rim:Name><rim:LocalizedString value="XDSDocumentEntry.patientId"/></rim:Name></rim:ExternalIdentifier>
        <rim:ExternalIdentifier identificationScheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab" value="{sig_uid}" id="ei21" registryObject="Signature01"><rim:Name><rim:LocalizedString value="XDSDocumentEntry.uniqueId"/></rim:Name></rim:ExternalIdentifier>
      </rim:ExtrinsicObject>
      <rim:Association associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember" sourceObject="SubmissionSet01" targetObject="Signature01" id="as02">
        <rim:Slot name="SubmissionSetStatus"><rim:ValueList><rim:Value>Original</rim:Value></rim:ValueList></rim:Slot>
      </rim:Association>
      <rim:Association associationType="urn:ihe:iti:2007:AssociationType:signs" sourceObject="Signature01" targetObject="SubmissionSet01" id="as03"/>"""

INVISIBLE = """<rim:Classification classificationScheme="urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f" classifiedObject="Document01" nodeRepresentation="INVISIBLE_PATIENT" id="cl17">
          <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>1.2.250.1.213.1.1.4.13</rim:Value></rim:ValueList></rim:Slot>
          <rim:Name><rim:LocalizedString value="Non visible par le patient"/></rim:Name>
        </rim:Classification>"""

RPLC = """<rim:Association associationType="urn:ihe:iti:2007:AssociationType:RPLC" sourceObject="Document01" targetObject="{target}" id="as04"/>"""


def cda(uid: str, set_id: str = "1.2.250.1.999.77.1", version: int = 1) -> bytes:
    return CDA.format(uid=uid, set_id=set_id, version=version).encode()


def pnr(doc_uid: str, *, ins: str = CLERICO, oid: str = TEST_OID, nid: str = GP, type_code: str = "11488-4",
        invisible: bool = False, rplc: str | None = None, content: bytes | None = None, mtom: bool = False,
        signature: bool = True, title: str = "CR de consultation", creation: str = "20261125090000") -> str:
    """The ITI-41 body; with ``mtom`` the documents are xop:Include references to parts cid:doc1 / cid:sig1."""
    data = content if content is not None else cda(doc_uid)
    if mtom:
        doc_content = '<xop:Include href="cid:doc1%40lgc.test"/>'
        sig_doc = '<xds:Document id="Signature01"><xop:Include href="cid:sig1@lgc.test"/></xds:Document>'
    else:
        doc_content = base64.b64encode(data).decode()
        sig_doc = f'<xds:Document id="Signature01">{base64.b64encode(SIGNATURE).decode()}</xds:Document>'
    sig_eo = SIGNATURE_EO.replace("{ins}", ins).replace("{oid}", oid).replace("{sig_uid}", doc_uid + ".99")
    return PNR.format(
        ins=ins, oid=oid, nid=nid, ss_uid=doc_uid + ".1", doc_uid=doc_uid, type_code=type_code, title=title,
        creation=creation, extra_conf=INVISIBLE if invisible else "",
        rplc=RPLC.format(target=rplc) if rplc else "", doc_content=doc_content,
        signature_eo=sig_eo if signature else "", signature_doc=sig_doc if signature else "",
    )


def mtom(soap: str, document: bytes, boundary: str = "MIMEBoundary_lgc_test_42") -> tuple[bytes, str]:
    """Hand-assembled multipart/related (XOP) message: root part, CDA part (binary), signature part (base64)."""
    body = (
        f"--{boundary}\r\n"
        "Content-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"; "
        f"action=\"{A_ITI41}\"\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: <root.message@lgc.test>\r\n\r\n"
    ).encode() + soap.encode() + (
        f"\r\n--{boundary}\r\n"
        "Content-Type: text/xml\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: <doc1@lgc.test>\r\n\r\n"
    ).encode() + document + (
        f"\r\n--{boundary}\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-ID: <sig1@lgc.test>\r\n\r\n"
    ).encode() + base64.encodebytes(SIGNATURE) + f"\r\n--{boundary}--\r\n".encode()
    ctype = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
             f'start="<root.message@lgc.test>"; start-info="application/soap+xml"; action="{A_ITI41}"')
    return body, ctype


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# --- ITI-18 / ITI-43 / ITI-57 ---------------------------------------------------------------------------

FIND_DOCUMENTS = """<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <query:ResponseOption returnComposedObjects="true" returnType="{return_type}"/>
      <rim:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d">
        <rim:Slot name="$XDSDocumentEntryPatientId"><rim:ValueList><rim:Value>'{ins}^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH'</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="$XDSDocumentEntryStatus"><rim:ValueList><rim:Value>{statuses}</rim:Value></rim:ValueList></rim:Slot>
        {extra}
      </rim:AdhocQuery>
    </query:AdhocQueryRequest>"""

APPROVED = "('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')"


def find_documents(ins: str = CLERICO, *, statuses: str = APPROVED, return_type: str = "LeafClass",
                   extra: str = "") -> str:
    return FIND_DOCUMENTS.format(ins=ins, statuses=statuses, return_type=return_type, extra=extra)


def get_documents(uid: str) -> str:
    return f"""<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>
      <rim:AdhocQuery id="urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4">
        <rim:Slot name="$XDSDocumentEntryUniqueId"><rim:ValueList><rim:Value>('{uid}')</rim:Value></rim:ValueList></rim:Slot>
      </rim:AdhocQuery>
    </query:AdhocQueryRequest>"""


def find_submission_sets(ins: str = CLERICO) -> str:
    return f"""<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>
      <rim:AdhocQuery id="urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9">
        <rim:Slot name="$XDSSubmissionSetPatientId"><rim:ValueList><rim:Value>'{ins}^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH'</rim:Value></rim:ValueList></rim:Slot>
        <rim:Slot name="$XDSSubmissionSetStatus"><rim:ValueList><rim:Value>('urn:oasis:names:tc:ebxml-regrep:StatusType:Approved')</rim:Value></rim:ValueList></rim:Slot>
      </rim:AdhocQuery>
    </query:AdhocQueryRequest>"""


def retrieve(uid: str, repository: str = "1.2.250.1.213.4.1.1.2") -> str:
    return f"""<xds:RetrieveDocumentSetRequest xmlns:xds="urn:ihe:iti:xds-b:2007">
      <xds:DocumentRequest>
        <xds:RepositoryUniqueId>{repository}</xds:RepositoryUniqueId>
        <xds:DocumentUniqueId>{uid}</xds:DocumentUniqueId>
      </xds:DocumentRequest>
    </xds:RetrieveDocumentSetRequest>"""


def update_status(entry_uuid: str, new_status: str, *, ins: str = CLERICO, ss_uid: str = "1.2.250.1.999.500.1",
                  original: str = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved") -> str:
    return f"""<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <rim:RegistryObjectList>
        <rim:RegistryPackage id="SubmissionSet01">
          <rim:Slot name="submissionTime"><rim:ValueList><rim:Value>20261125100000</rim:Value></rim:ValueList></rim:Slot>
          <rim:ExternalIdentifier identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8" value="{ss_uid}" id="ei01" registryObject="SubmissionSet01"/>
          <rim:ExternalIdentifier identificationScheme="urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832" value="1.2.250.1.999.2" id="ei02" registryObject="SubmissionSet01"/>
          <rim:ExternalIdentifier identificationScheme="urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446" value="{ins}^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH" id="ei03" registryObject="SubmissionSet01"/>
        </rim:RegistryPackage>
        <rim:Classification classifiedObject="SubmissionSet01" classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd" id="cl01"/>
        <rim:Association associationType="urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus" sourceObject="SubmissionSet01" targetObject="{entry_uuid}" id="as01">
          <rim:Slot name="OriginalStatus"><rim:ValueList><rim:Value>{original}</rim:Value></rim:ValueList></rim:Slot>
          <rim:Slot name="NewStatus"><rim:ValueList><rim:Value>{new_status}</rim:Value></rim:ValueList></rim:Slot>
        </rim:Association>
      </rim:RegistryObjectList>
    </lcm:SubmitObjectsRequest>"""


def update_confidentiality(lid: str, codes: list[tuple[str, str]], *, previous: int = 1, ins: str = CLERICO) -> str:
    conf = "\n".join(
        f"""<rim:Classification classificationScheme="urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f" classifiedObject="DocumentNew" nodeRepresentation="{code}" id="cc{i}">
            <rim:Slot name="codingScheme"><rim:ValueList><rim:Value>{scheme}</rim:Value></rim:ValueList></rim:Slot>
          </rim:Classification>""" for i, (code, scheme) in enumerate(codes))
    return f"""<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
      <rim:RegistryObjectList>
        <rim:RegistryPackage id="SubmissionSet01">
          <rim:Slot name="submissionTime"><rim:ValueList><rim:Value>20261125100000</rim:Value></rim:ValueList></rim:Slot>
          <rim:ExternalIdentifier identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8" value="1.2.250.1.999.501.1" id="ei01" registryObject="SubmissionSet01"/>
          <rim:ExternalIdentifier identificationScheme="urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446" value="{ins}^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH" id="ei03" registryObject="SubmissionSet01"/>
        </rim:RegistryPackage>
        <rim:Classification classifiedObject="SubmissionSet01" classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd" id="cl01"/>
        <rim:ExtrinsicObject id="DocumentNew" lid="{lid}" mimeType="text/xml" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
          {conf}
        </rim:ExtrinsicObject>
        <rim:Association associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember" sourceObject="SubmissionSet01" targetObject="DocumentNew" id="as01">
          <rim:Slot name="SubmissionSetStatus"><rim:ValueList><rim:Value>Original</rim:Value></rim:ValueList></rim:Slot>
          <rim:Slot name="PreviousVersion"><rim:ValueList><rim:Value>{previous}</rim:Value></rim:ValueList></rim:Slot>
        </rim:Association>
      </rim:RegistryObjectList>
    </lcm:SubmitObjectsRequest>"""
