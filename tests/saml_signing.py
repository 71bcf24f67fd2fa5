"""Signs a SAML 2.0 assertion the way a CPS card middleware does (enveloped XML-DSig, exclusive c14n,
RSA-SHA256), written here from the XML-DSig rules with lxml's C14N and `cryptography` only, so that the
simulators' verification (signxml) is judged by a signer that shares no code with it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree

DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


@cache
def card_key() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A throwaway key and self-signed certificate shaped like a CPS card's signature certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                      x509.NameAttribute(NameOID.TITLE, "Médecin"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "899700366240")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return key, cert


def _c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


def sign_assertion(xml: str, *, tamper: bool = False, other_key: bool = False) -> str:
    """`xml` holds a saml2:Assertion (possibly inside a wsse:Security block); returns it with an enveloped
    ds:Signature placed after the Issuer. `tamper` changes an attribute value after signing; `other_key`
    signs with a key that does not match the embedded certificate."""
    root = etree.fromstring(xml.encode())
    assertion = root if root.tag == f"{{{SAML}}}Assertion" else root.find(f".//{{{SAML}}}Assertion")
    assert assertion is not None
    key, cert = card_key()
    digest = base64.b64encode(hashlib.sha256(_c14n(assertion)).digest()).decode()
    sig = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS})
    signed_info = etree.SubElement(sig, f"{{{DS}}}SignedInfo")
    etree.SubElement(signed_info, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(signed_info, f"{{{DS}}}SignatureMethod",
                     Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    ref = etree.SubElement(signed_info, f"{{{DS}}}Reference", URI="#" + assertion.get("ID", ""))
    transforms = etree.SubElement(ref, f"{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=f"{DS}enveloped-signature")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC_C14N)
    etree.SubElement(ref, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(ref, f"{{{DS}}}DigestValue").text = digest
    value = etree.SubElement(sig, f"{{{DS}}}SignatureValue")
    x509_data = etree.SubElement(etree.SubElement(sig, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    etree.SubElement(x509_data, f"{{{DS}}}X509Certificate").text = base64.b64encode(
        cert.public_bytes(Encoding.DER)).decode()
    issuer = assertion.find(f"{{{SAML}}}Issuer")
    assertion.insert(0 if issuer is None else assertion.index(issuer) + 1, sig)
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048) if other_key else key
    value.text = base64.b64encode(signer.sign(_c14n(signed_info), padding.PKCS1v15(), hashes.SHA256())).decode()
    if tamper:
        attr_value = assertion.find(f".//{{{SAML}}}AttributeValue")
        assert attr_value is not None
        attr_value.text = (attr_value.text or "") + "9"
    return etree.tostring(root, encoding="unicode")
