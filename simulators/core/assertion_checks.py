"""Checks of the professional's SAML 2.0 assertion that a teleservice does before reading its attributes.

* Validity window: ``Conditions/@NotBefore`` and ``@NotOnOrAfter`` (SAML 2.0 Core §2.5.1.2) when present, and an
  ``IssueInstant`` that is not in the future; both with a clock skew allowance.
* Signature: an enveloped XML-DSig signature (SAML 2.0 Core §5: RSA-SHA256, exclusive c14n, Reference to the
  assertion's ID) that must verify against the certificate embedded in its KeyInfo. The CPS form is signed by
  the card, so its signature is required; the Pro Santé Connect form is sent unsigned (protocols.md §1.3,
  reported after the official example), so a signature is verified only if there is one.

Verification is delegated to ``signxml`` (a maintained XML-DSig library): hand-written canonicalisation is where
signature wrapping bugs live. Trusting the embedded certificate (no chain to IGC-Santé) is the bench's choice:
it has no CPS card PKI, and what a vendor has to get right is the signing itself.
"""

from __future__ import annotations

import base64
import copy
import functools
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.exceptions import InvalidInput, InvalidSignature

from .clock import parse_instant
from .xmlsafe import NS, qname

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_SIGNATURE = qname(DS_NS, "Signature")
_CONDITIONS = qname(NS["saml2"], "Conditions")
_CERT_PATH = f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate"
DEFAULT_SKEW = timedelta(minutes=5)
_CONFIG = SignatureConfiguration(expect_references=1)


class AssertionRefused(Exception):
    """The assertion fails a check; the message says which, in French (it goes to the fault's Detail)."""


@functools.lru_cache(maxsize=4096)
def _parsed(value: str) -> datetime | None:
    # Cached: a client sends the same assertion (same instants) with every request of a session.
    try:
        return parse_instant(value)
    except ValueError:
        return None


def _instant(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    parsed = _parsed(value)
    if parsed is None:
        raise AssertionRefused(f"Assertion : {what} {value!r} n'est pas une date xs:dateTime valide")
    return parsed


def check_validity(assertion: etree._Element, now: datetime, skew: timedelta = DEFAULT_SKEW) -> None:
    issued = _instant(assertion.get("IssueInstant"), "IssueInstant")
    if issued is not None and issued > now + skew:
        raise AssertionRefused(f"Assertion émise dans le futur (IssueInstant {assertion.get('IssueInstant')}, "
                               f"heure du service {now.isoformat(timespec='seconds')})")
    conditions = assertion.find(_CONDITIONS)
    if conditions is None:
        return
    not_before = _instant(conditions.get("NotBefore"), "Conditions/@NotBefore")
    not_after = _instant(conditions.get("NotOnOrAfter"), "Conditions/@NotOnOrAfter")
    if not_before is not None and now + skew < not_before:
        raise AssertionRefused(f"Assertion pas encore valide (NotBefore {conditions.get('NotBefore')}, heure du "
                               f"service {now.isoformat(timespec='seconds')})")
    if not_after is not None and now - skew >= not_after:
        raise AssertionRefused(f"Assertion expirée (NotOnOrAfter {conditions.get('NotOnOrAfter')}, heure du "
                               f"service {now.isoformat(timespec='seconds')})")


def check_signature(assertion: etree._Element, *, required: bool) -> None:
    signature = assertion.find(_SIGNATURE)
    if signature is None:
        if required:
            raise AssertionRefused("Assertion CPS non signée : l'élément ds:Signature (signature par la carte du "
                                   "professionnel) est absent")
        return
    cert_el = signature.find(_CERT_PATH)
    if cert_el is None or not (cert_el.text or "").strip():
        raise AssertionRefused("Signature de l'assertion sans certificat (KeyInfo/X509Data/X509Certificate absent)")
    try:
        der = base64.b64decode("".join((cert_el.text or "").split()), validate=True)
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
    except ValueError:
        raise AssertionRefused("Certificat de la signature illisible (X509Certificate n'est pas un certificat "
                               "X.509 en base64)") from None
    # Verified on a copy rooted at the assertion: its ID is the only reference target signxml may resolve,
    # so a signature over some other element of the envelope cannot be passed off as the assertion's.
    standalone = etree.fromstring(etree.tostring(copy.deepcopy(assertion)))
    try:
        result = XMLVerifier().verify(standalone, x509_cert=pem, expect_config=_CONFIG)
    except InvalidSignature as exc:
        raise AssertionRefused(f"Signature de l'assertion invalide : {exc}") from None
    except InvalidInput as exc:
        raise AssertionRefused(f"Signature de l'assertion inexploitable : {exc}") from None
    signed = result.signed_xml if not isinstance(result, list) else result[0].signed_xml
    if signed is None or signed.get("ID") != assertion.get("ID"):
        raise AssertionRefused("La signature ne porte pas sur l'assertion elle-même (Reference URI différente "
                               "de l'ID de l'assertion)")
