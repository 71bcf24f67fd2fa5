"""Conventions shared by the SESAM-Vitale / CNAM SOAP teleservices (INSi, ApCV, Ordonnance numérique).

They share one header set — `ctxlps:ContexteLPS` (the calling software and its CNDA authorisation
number, IDAM), `ctxbam:ContexteBAM` where the service needs it, and a professional's SAML assertion in
`wsse:Security` (CPS or Pro Santé Connect form) — and one fault shape: SOAP 1.2 fault with a `siram_*`
subcode and `Detail/siram:Erreur` (code, severity). Reading and checking them lives here once;
each service adds its own families of codes.

Facts: protocols.md §1.3 and §1.6. Only siram_100/desir_550 (unknown IDAM) is public among the
platform-level codes below; the others are the bench's assumptions, listed in each service README.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from .assertion_checks import DEFAULT_SKEW, AssertionRefused, check_signature, check_validity
from .siram_wire import FAULT_HTTP_STATUS, fault_envelope
from .soap import (
    SOAP_CONTENT_TYPE,
    Envelope,
    SoapError,
    action_from_content_type,
    check_content_type,
    must_understand_fault,
    parse_envelope,
)
from .tokens import Caller, InvalidToken, TokenValidator
from .xmlsafe import NS, leaf_text, qname

NS_CTXLPS = "urn:siram:lps:ctxlps"
NS_CTXBAM = "urn:siram:bam:ctxbam"
NS_SIRAM = NS["siram"]
_NSX = {"lps": NS_CTXLPS, "bam": NS_CTXBAM}

# (subcode, detail code) of the platform-level failure families.
F_ACTION = ("siram_10", "desir_501")  # assumed
F_CTXLPS = ("siram_20", "desir_520")  # assumed
F_CTXBAM = ("siram_21", "desir_521")  # assumed
F_SECURITY = ("siram_30", "desir_530")  # assumed
F_IDAM = ("siram_100", "desir_550")  # public (PADOA fixture)
F_CERT = ("siram_100", "desir_560")  # detail code and message reported (PADOA README); the subcode is assumed
SOFTWARE_CERT_NAMES = ("INSI-AUTO", "INSI-MANU")  # the CN INSi's mutual-TLS mode accepts (PADOA README)

DEFAULT_AUTHORISED_IDAM = ("SIMUL-LGC-0001", "BENCH-LGC-0001", "LGC-TEST-0001")
AUTH_MODES = ("assertion", "mtls", "psc")


# Fault/Reason carries a generic message for the user, Detail/siram:Erreur the precise one. The platform's own
# texts where a real answer was captured (PADOA fixtures) or reported; the others are the bench's (invented).
_GATEWAY_CONTACT = "Contactez l'éditeur du progiciel ou votre responsable informatique."
USER_MESSAGES: dict[str, tuple[str, str]] = {
    # key: detail code, else subcode -> (Fault/Reason text, its source or "inventé")
    "desir_550": ("L'accès par ce progiciel au service n'est pas autorisé. " + _GATEWAY_CONTACT,
                  "capture PADOA siram_100-desir_500-fake-idam"),
    "desir_560": ("Vous ne disposez pas des droits suffisants pour accéder à ce service.",
                  "rapporté (README PADOA tlsi-ins)"),
    "siram_40": ("Le service est temporairement inaccessible. Veuillez renouveler votre demande ultérieurement. "
                 "Si le problème persiste, " + _GATEWAY_CONTACT[0].lower() + _GATEWAY_CONTACT[1:],
                 "capture PADOA (cas CNDA D'AEION)"),
    "siram_10": ("Le message transmis n'est pas conforme. " + _GATEWAY_CONTACT, "inventé"),
    "siram_20": ("Le message transmis n'est pas conforme. " + _GATEWAY_CONTACT, "inventé"),
    "siram_21": ("Le message transmis n'est pas conforme. " + _GATEWAY_CONTACT, "inventé"),
    "siram_30": ("L'authentification du professionnel de santé a échoué. Vérifiez votre carte CPS ou votre "
                 "connexion Pro Santé Connect, puis renouvelez votre demande.", "inventé"),
}
DEFAULT_USER_MESSAGE = ("Les données transmises ne permettent pas de traiter la demande. Vérifiez la saisie puis "
                        "renouvelez votre demande.")  # invented: the services' input and business refusals
# Detail texts of the captured answers, sent as they are (the precise reasons of other codes are the bench's).
CAPTURED_DETAILS = {
    "desir_550": "Numéro d'autorisation du logiciel inconnu.",
    "insi_102": "L'appel au service de recherche avec les traits d'identité renvoie une erreur technique.",
}


class TeleserviceError(Exception):
    """A request the teleservice refuses; answered as a SOAP 1.2 fault with Detail/siram:Erreur.

    `reason` is the precise explanation (sent in Detail); the fault's Reason is the generic user message of
    :data:`USER_MESSAGES`."""

    def __init__(self, code: str, subcode: str, detail_code: str, reason: str, severite: str = "erreur",
                 http_status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code  # "Sender" | "Receiver"
        self.subcode = subcode
        self.detail_code = detail_code
        self.reason = reason
        self.severite = severite
        self.http_status = http_status  # None: the platform's status for every fault (401 for a refused bearer)
        self.message_id: str | None = None  # the request's wsa:MessageID, once known

    @property
    def user_message(self) -> str:
        found = USER_MESSAGES.get(self.detail_code) or USER_MESSAGES.get(self.subcode)
        return found[0] if found else DEFAULT_USER_MESSAGE

    @property
    def detail(self) -> str:
        return CAPTURED_DETAILS.get(self.detail_code, self.reason)


def sender(family: tuple[str, str], reason: str) -> TeleserviceError:
    return TeleserviceError("Sender", family[0], family[1], reason)


def receiver(family: tuple[str, str], reason: str, severite: str = "fatal") -> TeleserviceError:
    # "fatal", not the XSD's "fatale": what the real service sends (captured insi_102 fault)
    return TeleserviceError("Receiver", family[0], family[1], reason, severite=severite)


def fault_bytes(err: TeleserviceError, message_id: str | None) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body) of the fault answering `err`, as the real platform writes it."""
    body = fault_envelope(err.code, err.subcode, err.user_message, err.detail_code, err.severite, err.detail,
                          message_id)
    return err.http_status or FAULT_HTTP_STATUS, SOAP_CONTENT_TYPE, body


def bearer_caller(authorization: str | None, validator: TokenValidator, *, required: bool,
                  assertion_national_id: str | None = None) -> Caller | None:
    """API Pro Santé Connectée (CI-SIS transport volume): the token exchanged at PSC, sent as `Authorization:
    Bearer`. None when no bearer token is sent and none is required. A refused token, or one whose professional
    is not the assertion's (the PS assertion is still required in this mode, DSR seed 001 §Espace de confiance),
    is a security fault answered with HTTP 401."""
    sent = bool(authorization and authorization.strip().lower().startswith("bearer"))
    if not sent:
        if required:
            raise TeleserviceError("Sender", *F_SECURITY, "Mode API Pro Sante Connectee : en-tete Authorization: "
                                   "Bearer absent (jeton d'API obtenu par echange de jeton aupres de PSC)",
                                   http_status=401)
        return None
    try:
        caller = validator.validate(authorization)
    except InvalidToken as exc:
        raise TeleserviceError("Sender", *F_SECURITY, f"Jeton Bearer refuse : {exc.reason}",
                               http_status=401) from None
    if not caller.national_id:
        raise TeleserviceError("Sender", *F_SECURITY, "Jeton Bearer sans identifiant national du professionnel",
                               http_status=401)
    if assertion_national_id and caller.national_id != assertion_national_id:
        raise TeleserviceError("Sender", *F_SECURITY, f"Mode API Pro Sante Connectee : le NameID de l'assertion "
                               f"({assertion_national_id}) differe de l'identifiant national du jeton "
                               f"({caller.national_id})", http_status=401)
    return caller


def www_authenticate(err: TeleserviceError) -> tuple[tuple[str, str], ...]:
    """The RFC 6750 challenge that goes with a 401 fault (none otherwise)."""
    if err.http_status != 401:
        return ()
    # error_description allows printable ASCII but the quote and the backslash (RFC 6750 §3)
    reason = err.reason.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "/")
    return (("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{reason}"'),)


def envelope_fault_bytes(exc: SoapError) -> tuple[int, str, bytes]:
    """An envelope-level fault (not XML, SOAP 1.1, mustUnderstand, WS-Addressing or WS-Security header
    cardinality…): the core's standard SOAP fault — what the platform's SOAP stack itself answers, before any
    siram code — sent with the status the platform uses for every fault, unless the fault names its own (415 for a
    media type the SOAP 1.2 binding does not carry, as a JAX-WS endpoint answers it)."""
    return exc.fault.status or FAULT_HTTP_STATUS, exc.content_type, exc.to_bytes()


# --------------------------------------------------------------------------------------------- headers


@dataclass(frozen=True)
class Headers:
    """What the SOAP header blocks say (None = block absent)."""

    lps: Mapping[str, Any] | None
    bam: Mapping[str, Any] | None
    security_present: bool
    assertion: Mapping[str, Any] | None
    assertion_element: etree._Element | None = None  # the saml2:Assertion read, for the signature and window checks
    repeated: frozenset[str] = frozenset()  # "ContexteLPS" / "ContexteBAM" when sent more than once


_LPS = qname(NS_CTXLPS, "LPS")
_LPS_TAGS = {key: qname(NS_CTXLPS, local) for key, local in
             (("lps_version", "Version"), ("instance", "Instance"), ("nom", "Nom"))}
_IDAM = qname(NS_CTXLPS, "IDAM")
_EMETTEUR = qname(NS_CTXLPS, "Emetteur")
_COUVERTURE = qname(NS_CTXBAM, "COUVERTURE")
_ASSERTION = qname(NS["saml2"], "Assertion")
_SUBJECT = qname(NS["saml2"], "Subject")
_NAME_ID = qname(NS["saml2"], "NameID")
_ATTR_STATEMENT = qname(NS["saml2"], "AttributeStatement")
_ATTRIBUTE = qname(NS["saml2"], "Attribute")
_ATTR_VALUE = qname(NS["saml2"], "AttributeValue")
_HEADER_TAGS = (qname(NS_CTXLPS, "ContexteLPS"), qname(NS_CTXBAM, "ContexteBAM"), qname(NS["wsse"], "Security"))


_LPS_TOP = frozenset((_LPS, _EMETTEUR))
_LPS_INNER = frozenset((_IDAM, *_LPS_TAGS.values()))
_BAM_INNER = frozenset((_COUVERTURE,))


def _first_children(el: etree._Element | None, tags: frozenset[str]) -> dict[str, etree._Element]:
    """{tag: first child element with that tag} for the tags asked, in one pass over the children."""
    found: dict[str, etree._Element] = {}
    if el is not None:
        for child in el:
            tag = child.tag
            if tag in tags and tag not in found:
                found[tag] = child
    return found


def _text(el: etree._Element | None) -> str | None:
    return None if el is None else leaf_text(el)


def parse_headers(env: Envelope) -> Headers:
    # One pass over each block's children with precomputed tags (this runs on every teleservice request):
    # same results as the path lookups `find(lps_el, "lps:LPS/lps:IDAM")`… it replaces.
    blocks: list[etree._Element | None] = [None, None, None]
    repeated: set[str] = set()
    for block in env.header_blocks():
        tag = block.tag
        if tag in _HEADER_TAGS:
            i = _HEADER_TAGS.index(tag)
            if blocks[i] is None:
                blocks[i] = block
            else:  # a second wsse:Security for one role never gets here: parse_envelope refused it
                repeated.add(etree.QName(tag).localname)
    lps_el, bam_el, sec_el = blocks
    lps = None
    if lps_el is not None:
        top = _first_children(lps_el, _LPS_TOP)
        lps_node = top.get(_LPS)
        inner = _first_children(lps_node, _LPS_INNER)
        idam = inner.get(_IDAM)
        lps = {
            "nature": lps_el.get("Nature"), "version": lps_el.get("Version"), "has_lps": lps_node is not None,
            "idam": _text(idam), "idam_r": idam.get("R") if idam is not None else None,
            **{key: _text(inner.get(tag)) for key, tag in _LPS_TAGS.items()},
            "emetteur": _text(top.get(_EMETTEUR)),
        }
    bam = None
    if bam_el is not None:
        couv = _first_children(bam_el, _BAM_INNER).get(_COUVERTURE)
        bam = {
            "nature": bam_el.get("Nature"), "version": bam_el.get("Version"), "has_couverture": couv is not None,
            "couverture_filled": couv is not None and any(isinstance(c.tag, str) for c in couv),
        }
    assertion = None
    assertion_el = None
    if sec_el is not None:
        for candidate in sec_el.iterchildren(_ASSERTION):
            # The first NameID of any Subject; every Attribute of every AttributeStatement (a repeated name:
            # the last one wins), valued by its first AttributeValue.
            name_id = None
            attrs: dict[str, str] = {}
            for part in candidate:
                tag = part.tag
                if tag == _SUBJECT and name_id is None:
                    name_id = next(part.iterchildren(_NAME_ID), None)
                elif tag == _ATTR_STATEMENT:
                    for attribute in part.iterchildren(_ATTRIBUTE):
                        attrs[attribute.get("Name", "")] = _text(next(attribute.iterchildren(_ATTR_VALUE), None)) or ""
            if name_id is None:
                continue
            assertion = {"name_qualifier": name_id.get("NameQualifier"), "name_id": _text(name_id),
                         "attributes": attrs}
            assertion_el = candidate
            break
    return Headers(lps=lps, bam=bam, security_present=sec_el is not None, assertion=assertion,
                   assertion_element=assertion_el, repeated=frozenset(repeated))


def _once(headers: Headers, local: str, family: tuple[str, str]) -> None:
    # The WSDL declares each context header as one header part (protocols.md §1.3): which of two the platform would
    # read is unknown, so the bench reads neither (issue 16: it read the first).
    if local in headers.repeated:
        raise sender(family, f"En-tete {local} present deux fois : un seul bloc {local} est admis par message")


def check_lps(headers: Headers, settings: Mapping[str, Any]) -> None:
    """ContexteLPS rules, then the software's authorisation number (IDAM) against the accepted list."""
    _once(headers, "ContexteLPS", F_CTXLPS)
    lps = headers.lps
    if lps is None:
        raise sender(F_CTXLPS, "En-tete ContexteLPS (urn:siram:lps:ctxlps) absent")
    if lps.get("nature") != "CTXLPS":
        raise sender(F_CTXLPS, f"ContexteLPS : attribut Nature {lps.get('nature')!r} invalide, attendu 'CTXLPS'")
    if lps.get("version") != "01_00":
        raise sender(F_CTXLPS, f"ContexteLPS : attribut Version {lps.get('version')!r} invalide, attendu '01_00'")
    if not lps.get("has_lps"):
        raise sender(F_CTXLPS, "ContexteLPS : element LPS absent")
    if not lps.get("idam"):
        raise sender(F_CTXLPS, "ContexteLPS : LPS/IDAM (numero d'autorisation du logiciel) absent ou vide")
    if lps.get("idam_r") != "4":
        raise sender(F_CTXLPS, f"ContexteLPS : attribut R de LPS/IDAM {lps.get('idam_r')!r} invalide, attendu '4'")
    for key, label in (("lps_version", "LPS/Version"), ("instance", "LPS/Instance"), ("nom", "LPS/Nom")):
        if not lps.get(key):
            raise sender(F_CTXLPS, f"ContexteLPS : {label} absent ou vide")
    authorised = settings.get("authorised_idam") or DEFAULT_AUTHORISED_IDAM
    if lps["idam"] not in authorised:
        raise sender(F_IDAM, f"Logiciel non autorise : numero d'autorisation (IDAM) {lps['idam']!r} inconnu")


def check_bam(headers: Headers, *, couverture_required: bool) -> None:
    _once(headers, "ContexteBAM", F_CTXBAM)
    bam = headers.bam
    if bam is None:
        raise sender(F_CTXBAM, "En-tete ContexteBAM (urn:siram:bam:ctxbam) absent")
    if bam.get("version") != "01_02":
        raise sender(F_CTXBAM, f"ContexteBAM : attribut Version {bam.get('version')!r} invalide, attendu '01_02'")
    if bam.get("nature") not in (None, "CTXBAM"):
        raise sender(F_CTXBAM, f"ContexteBAM : attribut Nature {bam.get('nature')!r} invalide, attendu 'CTXBAM'")
    if not bam.get("has_couverture"):
        raise sender(F_CTXBAM, "ContexteBAM : element COUVERTURE absent")
    if couverture_required and not bam.get("couverture_filled"):
        raise sender(F_CTXBAM, "ContexteBAM : COUVERTURE vide alors qu'elle est obligatoire pour la recherche "
                               "par carte Vitale")


def check_client_certificate(tls: Mapping[str, Any] | None,
                             names: tuple[str, ...] = SOFTWARE_CERT_NAMES) -> dict[str, Any]:
    """Mutual-TLS mode: the connection's client certificate (already verified against the bench CA and its CRL by
    the TLS layer) must carry one of `names` as its common name. Returns the certificate's facts."""
    cert = (tls or {}).get("client_cert")
    if cert is None:  # the Reason says "droits suffisants" (USER_MESSAGES); Detail says why
        why = "Connexion TLS sans certificat client" if tls else "Connexion sans TLS"
        raise sender(F_CERT, f"{why} : le mode TLS mutuel exige un certificat logiciel {' ou '.join(names)}")
    if cert.get("cn") not in names:
        raise sender(F_CERT, f"Certificat client CN={cert.get('cn')!r} : {' ou '.join(names)} attendu")
    return dict(cert)


@functools.lru_cache(maxsize=16)
def _skew(seconds: float | None) -> timedelta:
    return DEFAULT_SKEW if seconds is None else timedelta(seconds=float(seconds))


def check_assertion(headers: Headers, settings: Mapping[str, Any] | None = None,
                    clock: Callable[[], datetime] | None = None, *,
                    missing_security: str = "En-tete wsse:Security absent (mode d'authentification par assertion)"
                    ) -> dict[str, str]:
    """The professional's SAML assertion (CPS or PSC form); returns its attributes.

    Unless the service's setting ``verify_assertion`` is false, the assertion must also be within its validity
    window at the service's `clock` time and, in the CPS form, carry a signature that verifies against its
    embedded certificate (:mod:`assertion_checks`)."""
    if not headers.security_present:
        raise sender(F_SECURITY, missing_security)
    assertion = headers.assertion
    if assertion is None:
        raise sender(F_SECURITY, "wsse:Security : assertion SAML 2.0 du professionnel absente")
    qualifier = assertion.get("name_qualifier")
    if qualifier not in ("CPS", "PSC"):
        raise sender(F_SECURITY, f"Assertion : Subject/NameID/@NameQualifier {qualifier!r} invalide, attendu "
                                 "'CPS' ou 'PSC'")
    if not assertion.get("name_id"):
        raise sender(F_SECURITY, "Assertion : Subject/NameID (identifiant national du PS) absent ou vide")
    attrs = dict(assertion.get("attributes") or {})
    required = ["identifiantFacturation", "secteurActivite" if qualifier == "CPS" else "codeSpecialiteAMO"]
    for name in required:
        if not attrs.get(name):
            raise sender(F_SECURITY, f"Assertion {qualifier} : attribut {name} absent ou vide")
    settings = settings or {}
    element = headers.assertion_element
    if settings.get("verify_assertion", True) and element is not None:
        skew = _skew(settings.get("assertion_clock_skew_s"))
        try:
            check_validity(element, clock() if clock else datetime.now(UTC), skew)
            check_signature(element, required=qualifier == "CPS")
        except AssertionRefused as exc:
            raise sender(F_SECURITY, str(exc)) from None
    return attrs


# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Operations:
    """A teleservice's operations: SOAP action prefix and, per operation, its body element (namespace, name)."""

    action_prefix: str
    bodies: Mapping[str, tuple[str, str]]  # operation -> (namespace, local name of the body element)
    understood: tuple[str, ...] = (NS["wsse"], NS_CTXLPS)  # header namespaces the service processes

    @functools.cached_property
    def _op_of_tag(self) -> dict[str, str]:
        return {qname(ns, local): op for op, (ns, local) in reversed(self.bodies.items())}

    def operation_of_body(self, element: etree._Element) -> str | None:
        return self._op_of_tag.get(element.tag)


@dataclass(frozen=True)
class Request:
    envelope: Envelope
    operation: str
    headers: Headers
    body: dict[str, Any] = field(default_factory=dict)  # the service's reading of its body element

    @property
    def message_id(self) -> str | None:
        return self.envelope.message_id

    @property
    def body_element(self) -> etree._Element:
        return self.envelope.body_element


def read_request(data: bytes, content_type: str | None, max_bytes: int, ops: Operations,
                 envelope: Envelope | None = None, envelope_error: Exception | None = None) -> Request:
    """Media type, envelope, mustUnderstand headers, action against body element, header blocks.

    Raises SoapError (envelope level) or TeleserviceError carrying the request's MessageID. `envelope` is
    the one the core's front end already parsed, if any, and `envelope_error` why it could not: the media type
    is judged first, as a SOAP stack does before it reads the body.
    """
    check_content_type(content_type)  # the teleservices take no MTOM (the WSDLs declare none)
    if isinstance(envelope_error, SoapError):
        raise envelope_error
    env = envelope if envelope is not None else parse_envelope(data, max_bytes=max_bytes)
    try:
        return _read(env, content_type, ops)
    except TeleserviceError as exc:
        exc.message_id = env.message_id
        raise


def _read(env: Envelope, content_type: str | None, ops: Operations) -> Request:
    not_understood = env.must_understand_blocks(list(ops.understood))
    if not_understood:
        raise SoapError(must_understand_fault(not_understood), relates_to=env.message_id)
    action = env.action or action_from_content_type(content_type)
    body_op = ops.operation_of_body(env.body_element)
    if body_op is None:
        q = etree.QName(env.body_element)
        expected = ", ".join(f"{{{ns}}}{local}" for ns, local in ops.bodies.values())
        raise sender(F_ACTION, f"Element de corps inattendu {{{q.namespace or ''}}}{q.localname} : attendu l'un de "
                               f"{expected}")
    if not action:
        raise sender(F_ACTION, "Action SOAP absente (ni wsa:Action ni parametre action du Content-Type)")
    operation = action[len(ops.action_prefix):] if action.startswith(ops.action_prefix) else None
    if operation not in ops.bodies:
        known = ", ".join(ops.action_prefix + op for op in ops.bodies)
        raise sender(F_ACTION, f"Action SOAP inconnue {action!r}; attendu l'une de {known}")
    if operation != body_op:
        raise sender(F_ACTION, f"L'action {operation} ne correspond pas a l'element de corps "
                               f"{etree.QName(env.body_element).localname}")
    return Request(envelope=env, operation=operation, headers=parse_headers(env))


def children_by_name(el: etree._Element | None) -> dict[str, list[etree._Element]]:
    """Every child element, grouped by local name, in document order, for the children qualified in the
    parent's namespace or unqualified (what :func:`children` finds, for all names in one pass)."""
    grouped: dict[str, list[etree._Element]] = {}
    if el is None:
        return grouped
    tag = el.tag
    prefix = tag[:tag.index("}") + 1] if tag[:1] == "{" else ""
    for child in el:
        ctag = child.tag
        if not isinstance(ctag, str):
            continue
        if prefix and ctag.startswith(prefix):
            local = ctag[len(prefix):]
        elif ctag[:1] != "{":
            local = ctag
        else:
            continue
        grouped.setdefault(local, []).append(child)
    return grouped


def children(el: etree._Element | None, local: str) -> list[etree._Element]:
    """Child elements named `local`, qualified in the parent's namespace (as the XSDs say) or unqualified
    (lenient: seen in hand-made clients)."""
    if el is None:
        return []
    tag = el.tag
    ns = tag[1:tag.index("}")] if tag[:1] == "{" else None
    return list(el.iterchildren(qname(ns, local), local))
