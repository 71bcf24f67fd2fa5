"""INSi client (GIE SESAM-Vitale téléservice, SEL-MP-043): INS search by identity traits and by carte Vitale.

Wire format (protocols.md §1): SOAP 1.2 + WS-Addressing 2005/08, header blocks `wsse:Security` (the
professional's SAML 2.0 assertion, Pro Santé Connect form), `ctxlps:ContexteLPS` (the software and its CNDA
authorisation number, IDAM) and `ctxbam:ContexteBAM`; body `RECSANSVITALE` / `RECVITALE`, answer `RESULTAT`.

The second half of this module is the SESAM-Vitale teleservice plumbing (envelope, headers, transport,
`siram_*` faults) that `apcv.py` reuses: both services share the same conventions.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx
from lxml import etree

from .api_psc import authorized
from .context import CallContext, ServiceRefused, ServiceUnavailable
from .transport import http_client, network_reason

NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "lps": "urn:siram:lps:ctxlps",
    "bam": "urn:siram:bam:ctxbam",
    "siram": "urn:siram",
    "rs": "http://www.cnamts.fr/INSiRecSans",
    "rv": "http://www.cnamts.fr/INSiRecVit",
    "res": "http://www.cnamts.fr/INSiResultat",
}
OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
ACTION_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
PSC_ISSUER = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"  # overridable: endpoint.extra["psc_issuer"]
MAX_RESPONSE_BYTES = 1024 * 1024  # an INSi answer is a few kB; anything bigger is not one

OnExchange = Callable[["Exchange"], None]


# ----------------------------------------------------------------------------------------------------
# INSi results
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ins:
    """One INS: matricule (13 characters + 2-digit key = 15) and its assigning authority OID."""

    matricule: str
    oid: str
    type_matricule: str | None = None
    start: date | None = None
    end: date | None = None

    @property
    def is_nia(self) -> bool:  # NIA = provisional number: the identity may not be qualified on it
        return self.oid == OID_INS_NIA


@dataclass(frozen=True)
class Individual:
    """The identity the INSi returned with code 00 (traits exactly as returned, to be stored as is)."""

    ins: Ins  # INSACTIF
    birth_name: str
    first_name: str  # TIQ/Prenom: the first birth first name
    first_names: tuple[str, ...]  # TIQ/ListePrenom split on spaces
    first_names_text: str  # TIQ/ListePrenom as returned
    sex: str
    birth_date: date
    birthplace_cog: str | None
    history: tuple[Ins, ...] = ()  # INSHISTO: previous INS, most recent first

    @property
    def matricule(self) -> str:
        return self.ins.matricule

    @property
    def oid(self) -> str:
        return self.ins.oid


@dataclass(frozen=True)
class InsiResult:
    code: str  # "00" one identity, "01" none, "02" several
    label: str
    individual: Individual | None
    exchange: Exchange  # raw request/response, for the LGC's traces

    @property
    def found(self) -> bool:
        return self.code == "00"


# ----------------------------------------------------------------------------------------------------
# INSi operations
# ----------------------------------------------------------------------------------------------------


def search_by_traits(
    ctx: CallContext,
    *,
    birth_name: str,
    first_names: Sequence[str] | str,
    sex: str,
    birth_date: date | str,
    birthplace_cog: str | None = None,
    client: httpx.Client | None = None,
    on_exchange: OnExchange | None = None,
) -> InsiResult:
    """rechercherInsAvecTraitsIdentite. `first_names`: a string goes in one `Prenom` (one name or the
    space-separated list), a sequence gives one `Prenom` per item. Names are put in INSi form (upper case,
    no accents); the INSi checks the rest and refuses (siram_50) what does not fit."""
    names = [first_names] if isinstance(first_names, str) else list(first_names)
    body = etree.Element(_q("rs", "RECSANSVITALE"), nsmap={"rs": NS["rs"]})
    _sub(body, "rs", "NomNaissance", insi_text(birth_name))
    for name in names:
        _sub(body, "rs", "Prenom", insi_text(name))
    _sub(body, "rs", "Sexe", sex.strip().upper())
    _sub(body, "rs", "DateNaissance", _iso_date(birth_date))
    if birthplace_cog:
        _sub(body, "rs", "LieuNaissance", birthplace_cog.strip().upper())
    bam = contexte_bam(ctx)  # the traits search sends an empty COUVERTURE
    root, exchange = call_teleservice(ctx, "INSi", ACTION_TRAITS, body, [bam], client=client, on_exchange=on_exchange)
    return _resultat(root, exchange)


def search_by_carte_vitale(
    ctx: CallContext,
    *,
    nir_od: str,
    birth_date: date | str,
    rank: int | None = None,
    beneficiary_nir: str | None = None,
    birth_name: str | None = None,
    regime: str | None = None,
    caisse: str | None = None,
    centre: str | None = None,
    client: httpx.Client | None = None,
    on_exchange: OnExchange | None = None,
) -> InsiResult:
    """rechercherInsAvecCarteVitale, fed from the card read: `nir_od` = NIR ouvrant droit (15 characters),
    `birth_date` = the beneficiary's card date (a lunar date is allowed as 'AAAAMMJJ' / 'AAAA-MM-JJ' text),
    `rank` = rang de naissance, `beneficiary_nir` = the beneficiary's own NIR when the card carries it.
    `regime`/`caisse`/`centre` fill ContexteBAM/COUVERTURE (the card's AMO data)."""
    od = _nir15(nir_od, "NIR ouvrant droit")
    card_date = _card_date(birth_date)
    body = etree.Element(_q("rv", "RECVITALE"), nsmap={"rv": NS["rv"]})
    if beneficiary_nir:
        _matricule(body, "rv", "MatriculeIndividu", _nir15(beneficiary_nir, "NIR du bénéficiaire"))
    _matricule(body, "rv", "MatriculeOD", od)
    if birth_name:
        _sub(body, "rv", "NomNaissance", insi_text(birth_name))
    _sub(body, "rv", "DateNaissance", f"{card_date[:4]}-{card_date[4:6]}-{card_date[6:]}")
    if rank is not None:
        _sub(body, "rv", "RangNaissance", str(rank))
    # The carte Vitale search requires a filled COUVERTURE: the insured (ASSURE) and the beneficiary.
    couverture: list[tuple[str, str | None]] = [("GrandRegime", regime), ("Organisme", caisse), ("CodeCentre", centre)]
    bam = contexte_bam(ctx)
    cov = bam.find("bam:COUVERTURE", NS)
    assert cov is not None
    for local, value in couverture:
        if value:
            _sub(cov, "bam", local, value)
    assure_id = _sub(_sub(cov, "bam", "ASSURE"), "bam", "Id")
    _sub(assure_id, "bam", "Num", od[:13])
    _sub(assure_id, "bam", "Cle", od[13:])
    ben = _sub(cov, "bam", "BENEFICIAIRE")
    _sub(ben, "bam", "DateNai", card_date)
    if rank is not None:
        _sub(ben, "bam", "Rang", str(rank))
    root, exchange = call_teleservice(ctx, "INSi", ACTION_VITALE, body, [bam], client=client, on_exchange=on_exchange)
    return _resultat(root, exchange)


def insi_text(value: str) -> str:
    """A name in INSi form: upper case A-Z, no accents (É -> E), ligatures spelt out (Œ -> OE), single spaces."""
    value = value.strip().upper().replace("Œ", "OE").replace("Æ", "AE").replace("ß", "SS")
    value = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", value.replace("’", "'"))


def _iso_date(value: date | str) -> str:
    text = value.isoformat() if isinstance(value, date) else value.strip()
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ServiceRefused(f"Date de naissance invalide {text!r} : attendu AAAA-MM-JJ",
                             code="date_invalide") from None
    return text


def _card_date(value: date | str) -> str:
    """AAAAMMJJ; card dates may be lunar (day 00 or > 31), so strings are only checked for shape."""
    text = value.strftime("%Y%m%d") if isinstance(value, date) else value.strip().replace("-", "")
    if not re.fullmatch(r"\d{8}", text):
        raise ServiceRefused(f"Date de naissance carte Vitale invalide {value!r} : attendu AAAAMMJJ",
                             code="date_invalide")
    return text


def _nir15(value: str, label: str) -> str:
    text = value.replace(" ", "").upper()
    if not re.fullmatch(r"\d{6}[AB0-9]\d{8}", text):
        raise ServiceRefused(f"{label} invalide {value!r} : 15 caractères attendus (13 + clé)", code="nir_invalide")
    return text


def _matricule(parent: etree._Element, prefix: str, local: str, nir15: str) -> None:
    block = _sub(parent, prefix, local)
    _sub(block, prefix, "NumIdentifiant", nir15[:13])
    _sub(block, prefix, "Cle", nir15[13:])


def _resultat(root: etree._Element, exchange: Exchange) -> InsiResult:
    if root.tag != _q("res", "RESULTAT"):
        raise _bad_answer("INSi", f"élément de réponse inattendu {etree.QName(root).localname}")
    code = child_text(root, "CR/CodeCR")
    label = child_text(root, "CR/LibelleCR") or ""
    if code not in ("00", "01", "02"):
        raise _bad_answer("INSi", f"code retour CR {code!r} inconnu")
    if code != "00":
        return InsiResult(code, label, None, exchange)
    individu = child(root, "INDIVIDU")
    actif = child(individu, "INSACTIF")
    if individu is None or actif is None:
        raise _bad_answer("INSi", "code 00 sans INDIVIDU/INSACTIF")
    try:
        liste = child_text(individu, "TIQ/ListePrenom") or child_text(individu, "TIQ/Prenom") or ""
        person = Individual(
            ins=_ins(actif),
            birth_name=child_text(individu, "TIQ/NomNaissance") or "",
            first_name=child_text(individu, "TIQ/Prenom") or liste.split(" ")[0],
            first_names=tuple(liste.split()),
            first_names_text=liste,
            sex=child_text(individu, "TIQ/Sexe") or "",
            birth_date=date.fromisoformat(child_text(individu, "TIQ/DateNaissance") or ""),
            birthplace_cog=child_text(individu, "TIQ/LieuNaissance"),
            history=tuple(_ins(h) for h in children(individu, "INSHISTO")),
        )
    except ValueError as exc:
        raise _bad_answer("INSi", f"identité retournée illisible ({exc})") from None
    if not person.birth_name or person.sex not in ("M", "F"):
        raise _bad_answer("INSi", "traits de l'identité retournée incomplets")
    return InsiResult(code, label, person, exchange)


def _ins(block: etree._Element) -> Ins:
    num, cle, oid = (child_text(block, p) for p in ("IdIndividu/NumIdentifiant", "IdIndividu/Cle", "OID"))
    if not num or not cle or len(num) != 13 or len(cle) != 2 or not oid:
        raise ValueError(f"INS incomplet ou mal formé ({num!r}, clé {cle!r}, OID {oid!r})")
    start, end = child_text(block, "DateDeb"), child_text(block, "DateFin")
    return Ins(
        matricule=num.upper() + cle, oid=oid, type_matricule=child_text(block, "IdIndividu/TypeMatricule"),
        start=date.fromisoformat(start) if start else None, end=date.fromisoformat(end) if end else None,
    )


# ----------------------------------------------------------------------------------------------------
# SESAM-Vitale teleservice plumbing (shared with apcv.py)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One SOAP exchange as sent and received (response None when nothing came back)."""

    service: str
    action: str
    url: str
    message_id: str
    request: bytes
    response: bytes | None
    http_status: int | None
    elapsed_s: float


def _q(prefix: str, local: str) -> str:
    return f"{{{NS[prefix]}}}{local}"


def _sub(parent: etree._Element, prefix: str, local: str, value: str | None = None,
         attrs: dict[str, str] | None = None) -> etree._Element:
    el = etree.SubElement(parent, _q(prefix, local), attrs or {})
    if value is not None:
        el.text = value
    return el


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def contexte_lps(ctx: CallContext) -> etree._Element:
    """ctxlps:ContexteLPS: who sends (the software, its IDAM authorisation number, its installation)."""
    sw = ctx.software
    lps = etree.Element(_q("lps", "ContexteLPS"), {"Nature": "CTXLPS", "Version": "01_00"}, nsmap={"ctxlps": NS["lps"]})
    _sub(lps, "lps", "Id", str(uuid.uuid4()))
    _sub(lps, "lps", "Temps", _now())
    _sub(lps, "lps", "Emetteur", ctx.professional.national_id)
    node = _sub(lps, "lps", "LPS")
    _sub(node, "lps", "IDAM", sw.idam, {"R": "4"})
    _sub(node, "lps", "Version", sw.version)
    _sub(node, "lps", "Instance", sw.instance)
    slug = re.sub(r"[^a-z0-9]+", "-", insi_text(sw.name).lower()).strip("-") or "lgc"
    _sub(node, "lps", "Nom", f"urn:lps:{slug}:{sw.version}")  # form seen in public clients
    return lps


def contexte_bam(ctx: CallContext) -> etree._Element:
    """ctxbam:ContexteBAM with an empty COUVERTURE (the caller fills it for the carte Vitale search)."""
    bam = etree.Element(_q("bam", "ContexteBAM"), {"Version": "01_02", "Nature": "CTXBAM"}, nsmap={"ctxbam": NS["bam"]})
    _sub(bam, "bam", "Id", str(uuid.uuid4()))
    _sub(bam, "bam", "Temps", _now())
    _sub(bam, "bam", "Emetteur", ctx.professional.national_id)
    _sub(bam, "bam", "COUVERTURE")
    return bam


def psc_security(ctx: CallContext, service: str) -> etree._Element:
    """wsse:Security with the professional's unsigned SAML 2.0 assertion, Pro Santé Connect form
    (NameID NameQualifier="PSC" = national id; identifiantFacturation and codeSpecialiteAMO)."""
    ps = ctx.professional
    if not ps.billing_id or not ps.amo_speciality:
        raise ServiceRefused(f"{service} : identifiant de facturation ou spécialité AMO du professionnel non "
                             "renseigné dans son compte", code="compte_incomplet")
    sec = etree.Element(_q("wsse", "Security"), {_q("soap", "mustUnderstand"): "true"},
                        nsmap={"wsse": NS["wsse"], "soap": NS["soap"]})
    assertion = etree.SubElement(sec, _q("saml2", "Assertion"),
                                 {"ID": f"_{uuid.uuid4()}", "IssueInstant": _now(), "Version": "2.0"},
                                 nsmap={"saml2": NS["saml2"]})
    _sub(assertion, "saml2", "Issuer", ctx.endpoint.extra.get("psc_issuer", PSC_ISSUER))
    _sub(_sub(assertion, "saml2", "Subject"), "saml2", "NameID", ps.national_id, {"NameQualifier": "PSC"})
    statement = _sub(assertion, "saml2", "AttributeStatement")
    for name, value in (("codeSpecialiteAMO", ps.amo_speciality), ("identifiantFacturation", ps.billing_id)):
        _sub(_sub(statement, "saml2", "Attribute", attrs={"Name": name}), "saml2", "AttributeValue", value)
    return sec


def build_request(ctx: CallContext, service: str, action: str, body: etree._Element,
                  extra_headers: Sequence[etree._Element] = ()) -> tuple[bytes, str]:
    """(envelope bytes, wsa:MessageID) with WS-Addressing, wsse:Security, ContexteLPS and `extra_headers`."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    env = etree.Element(_q("soap", "Envelope"), nsmap={"soap": NS["soap"], "wsa": NS["wsa"]})
    header = _sub(env, "soap", "Header")
    _sub(header, "wsa", "Action", action, {_q("soap", "mustUnderstand"): "true"})
    _sub(header, "wsa", "MessageID", message_id)
    _sub(header, "wsa", "To", ctx.endpoint.url)
    header.append(psc_security(ctx, service))
    header.append(contexte_lps(ctx))
    header.extend(extra_headers)
    _sub(env, "soap", "Body").append(body)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8"), message_id


def call_teleservice(ctx: CallContext, service: str, action: str, body: etree._Element,
                     extra_headers: Sequence[etree._Element] = (), *, client: httpx.Client | None = None,
                     on_exchange: OnExchange | None = None) -> tuple[etree._Element, Exchange]:
    """Send one request; return the answer's body element, or raise ServiceRefused / ServiceUnavailable.

    `on_exchange` sees every exchange, failed ones included (for the LGC's traces). With the API Pro Santé
    Connectée (endpoint ``auth = "api_psc"``) the request carries the API token too, and a 401 is answered by one
    new request with a newly exchanged token (api_psc.py)."""

    def send(auth: dict[str, str]) -> tuple[int | None, str, bytes | None, Exchange]:
        data, message_id = build_request(ctx, service, action, body, extra_headers)
        started = time.monotonic()
        status: int | None = None
        raw: bytes | None = None
        ctype = ""
        try:
            status, ctype, raw = _post(ctx, service, action, data, client, auth)
        finally:
            exchange = Exchange(service, action, ctx.endpoint.url, message_id, data, raw, status,
                                round(time.monotonic() - started, 3))
            if on_exchange is not None:
                on_exchange(exchange)
        return status, ctype, raw, exchange

    status, ctype, raw, exchange = authorized(ctx, send, lambda sent: sent[0])
    return _interpret(service, status, ctype, raw), exchange


def _post(ctx: CallContext, service: str, action: str, data: bytes,
          client: httpx.Client | None, auth: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """POST with a deadline for the whole exchange (a slow dribble must not outlast endpoint.timeout)."""
    limit = ctx.endpoint.timeout
    deadline = time.monotonic() + limit
    headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"',
               "Accept": "application/soap+xml, text/xml", **(auth or {})}
    too_slow = ServiceUnavailable(f"Le service {service} n'a pas répondu dans le délai imparti ({limit:g} s) ; "
                                  "réessayez plus tard", code="timeout")
    http = client or http_client(ctx.endpoint.tls, headers=ctx.endpoint.headers)
    try:
        with http.stream("POST", ctx.endpoint.url, content=data, headers=headers,
                         timeout=httpx.Timeout(limit)) as resp:
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise _too_big(service)
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise _too_big(service)
                if time.monotonic() > deadline:
                    raise too_slow
                chunks.append(chunk)
            return resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks)
    except httpx.TimeoutException:
        raise too_slow from None
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"Le service {service} est injoignable ({ctx.endpoint.url}) : "
                                 f"{network_reason(exc)} {exc}".strip(), code="reseau") from None
    finally:
        if client is None:
            http.close()


def _too_big(service: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"Réponse du service {service} trop volumineuse (plus de {MAX_RESPONSE_BYTES} "
                              "octets) : ignorée", code="reponse_trop_grande")


def _bad_answer(service: str, why: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"Réponse du service {service} inattendue : {why}", code="reponse_invalide")


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                          remove_blank_text=True)


def parse_xml(data: bytes) -> etree._Element:
    """Hardened parse: no entity expansion, no network, no DTD at all."""
    root = etree.fromstring(data, parser=_PARSER)
    if root.getroottree().docinfo.doctype:
        raise ValueError("DOCTYPE refusé")
    return root


def _interpret(service: str, status: int | None, ctype: str, raw: bytes | None) -> etree._Element:
    """Body element of a SOAP answer; SOAP faults and HTTP errors become ServiceRefused / ServiceUnavailable."""
    assert status is not None and raw is not None
    root: etree._Element | None = None
    if "xml" in ctype.lower() and raw.strip():
        try:
            root = parse_xml(raw)
        except (etree.XMLSyntaxError, ValueError):
            root = None
    if root is not None and root.tag == _q("soap", "Envelope"):
        fault = root.find("soap:Body/soap:Fault", NS)
        if fault is not None:
            raise fault_error(service, fault, status)
        if status == 200:
            found = root.xpath("soap:Body/*", namespaces=NS)
            if found:
                return found[0]
            raise _bad_answer(service, "corps SOAP vide")
    if status >= 500 or status in (408, 429):
        raise ServiceUnavailable(f"Le service {service} est indisponible (HTTP {status}) ; réessayez plus tard",
                                 code=f"http_{status}")
    if status >= 400:
        raise ServiceRefused(f"Le service {service} a refusé la requête (HTTP {status})", code=f"http_{status}")
    raise _bad_answer(service, f"HTTP {status}, {ctype or 'sans type de contenu'}, pas une enveloppe SOAP 1.2")


def fault_error(service: str, fault: etree._Element, status: int) -> ServiceRefused | ServiceUnavailable:
    """SOAP 1.2 fault -> error. Receiver = the server's problem (retry later); anything else is ours."""
    code = _qname_local(fault.find("soap:Code/soap:Value", NS))
    subcode = _qname_local(fault.find("soap:Code/soap:Subcode/soap:Value", NS))
    reason = (fault.findtext("soap:Reason/soap:Text", default="", namespaces=NS) or "").strip()
    erreur = fault.find("soap:Detail/siram:Erreur", NS)
    detail = erreur.get("code") if erreur is not None else None
    precise = (erreur.text or "").strip() if erreur is not None else ""
    ref = "/".join(x for x in (subcode, detail) if x)
    # Reason is the platform's message for the user; Detail's text says precisely what was wrong.
    suffix = (f" (détail : {precise})" if precise and precise != reason else "") + (f" [{ref}]" if ref else "")
    if code == "Receiver":
        return ServiceUnavailable(f"Le service {service} est indisponible : {reason or 'erreur du serveur'}{suffix} ; "
                                  "réessayez plus tard", code=subcode or f"http_{status}", detail=detail)
    return ServiceRefused(f"Le service {service} a refusé la demande : {reason or 'requête refusée'}{suffix}",
                          code=subcode or code or f"http_{status}", detail=detail)


def _qname_local(el: etree._Element | None) -> str | None:
    """Local part of a QName-valued element ('env:Receiver' -> 'Receiver'), whatever the prefix."""
    if el is None or not el.text:
        return None
    return el.text.strip().rpartition(":")[2] or None


def children(el: etree._Element | None, local: str) -> list[etree._Element]:
    """Children named `local`, qualified in the parent's namespace or unqualified (namespace-aware, not
    prefix-aware: real servers use ns0/ns2/S… prefixes)."""
    if el is None:
        return []
    ns = etree.QName(el).namespace
    names = {f"{{{ns}}}{local}" if ns else local, local}
    return [c for c in el if isinstance(c.tag, str) and c.tag in names]


def child(el: etree._Element | None, path: str) -> etree._Element | None:
    for local in path.split("/"):
        found = children(el, local)
        el = found[0] if found else None
    return el


def child_text(el: etree._Element | None, path: str) -> str | None:
    found = child(el, path)
    text = "".join(found.itertext()).strip() if found is not None else ""
    return text or None
