"""What the SOAP 1.2 HTTP binding, WS-Addressing and WS-Security refuse, every SOAP service refuses (issue 16).

INSi, ApCV, Ordonnance numérique and the DMP used to accept any Content-Type (text/plain, JSON, SOAP 1.1's text/xml),
duplicated wsa:Action / wsa:MessageID / wsa:To / wsse:Security / ContexteLPS header blocks and a mustUnderstand that
is not an xs:boolean, which tells an LGC developer their request is right when a real SOAP stack would refuse it.

Each request is one of the services' hand-written test requests (tests/<service>/messages.py: literal XML) posted
as raw bytes, changed by plain text edits; answers are read with plain lxml. INSi is reached through its inline fast
route (no fault rule stored), the others through Flask.
"""

# ruff: noqa: E501  (literal XML kept on one line)

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import apcv.messages as apcv_msg
import dmp.messages as dmp_msg
import httpx
import insi.messages as insi_msg
import on.messages as on_msg
import pytest
from lxml import etree

from simulators.core.server import serve_in_thread
from simulators.core.simulator import build_simulator
from simulators.registry import load_spec

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP_CT = "application/soap+xml; charset=utf-8"
TELESERVICES = ("insi", "apcv", "on")


@dataclass
class Service:
    name: str
    path: str
    http: httpx.Client
    valid: Callable[[], str]  # a request the service answers with HTTP 200

    @property
    def teleservice(self) -> bool:
        return self.name in TELESERVICES

    @property
    def sender_status(self) -> int:
        # The CNAM teleservices send every fault with HTTP 500 (captures, core/siram_wire.py); the DMP follows
        # SOAP 1.2 Part 2 §7.5.1.2 (Sender -> 400).
        return 500 if self.teleservice else 400

    def post(self, data: str | bytes, content_type: str | None = SOAP_CT, **headers: str) -> httpx.Response:
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = data.encode() if isinstance(data, str) else data
        return self.http.post(self.path, content=body, headers=headers)


def _requests(name: str, http: httpx.Client) -> tuple[str, Callable[[], str]]:
    if name == "insi":
        return "/lps", lambda: insi_msg.envelope(insi_msg.traits_body("CLERICO", ["COME"], "M", "1943-11-07"))
    if name == "apcv":
        def authenticate() -> str:  # a QR code is single use: present a new one for every request
            state = http.post("/_bench/state", json={"present": "clerico-come"}).json()["state"]
            return apcv_msg.envelope(apcv_msg.auth_body(state["presented"]["payload"]))
        return "/apcv", authenticate
    if name == "on":
        return "/eprescription", lambda: on_msg.envelope(on_msg.creer_body())
    return "/si-dmp-server/v2/services/patients", lambda: dmp_msg.envelope(dmp_msg.A_TD02, "patients", dmp_msg.td02())


@pytest.fixture(scope="module", params=["insi", "apcv", "on", "dmp"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    with serve_in_thread(build_simulator(load_spec(request.param))) as server, \
            httpx.Client(base_url=server.url, timeout=20) as http:
        path, valid = _requests(request.param, http)
        yield Service(request.param, path, http, valid)


@pytest.fixture
def svc(service: Service) -> Service:
    assert service.http.post("/_bench/reset").status_code < 300
    return service


# --- reading answers ----------------------------------------------------------------------------------


@dataclass
class Fault:
    status: int
    content_type: str
    code: str  # "{ns}local" of Code/Value (SOAP 1.2) or faultcode (SOAP 1.1), resolved against its namespaces
    subcodes: list[str]  # resolved Subcode/Value, outermost first
    reason: str
    root: etree._Element


def _resolve(el: etree._Element) -> str:
    prefix, _, local = (el.text or "").strip().rpartition(":")
    return f"{{{el.nsmap.get(prefix or None, '')}}}{local}"


def read_fault(resp: httpx.Response) -> Fault:
    assert "Traceback" not in resp.text and "Internal Server Error" not in resp.text, resp.text
    root = etree.fromstring(resp.content, etree.XMLParser(resolve_entities=False, no_network=True))
    ctype = resp.headers.get("content-type", "")
    if root.tag == f"{{{SOAP11}}}Envelope":
        fault = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
        assert fault is not None, resp.text
        code = fault.find("faultcode")
        return Fault(resp.status_code, ctype, _resolve(code), [], fault.findtext("faultstring") or "", root)
    assert root.tag == f"{{{SOAP12}}}Envelope", resp.text
    fault = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert fault is not None, resp.text
    code_el = fault.find(f"{{{SOAP12}}}Code")
    subcodes = []
    sub = code_el.find(f"{{{SOAP12}}}Subcode")
    while sub is not None:
        subcodes.append(_resolve(sub.find(f"{{{SOAP12}}}Value")))
        sub = sub.find(f"{{{SOAP12}}}Subcode")
    reason = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or ""
    return Fault(resp.status_code, ctype, _resolve(code_el.find(f"{{{SOAP12}}}Value")), subcodes, reason, root)


def header_blocks(fault: Fault, ns: str, local: str) -> list[etree._Element]:
    return [b for h in fault.root if isinstance(h.tag, str) and h.tag.endswith("}Header")
            for b in h if b.tag == f"{{{ns}}}{local}"]


def assert_upgrade(fault: Fault) -> None:
    """SOAP 1.2 Part 1 §5.4.7: the Upgrade header block names the SOAP 1.2 envelope as the one supported."""
    (upgrade,) = header_blocks(fault, SOAP12, "Upgrade")
    supported = upgrade.find(f"{{{SOAP12}}}SupportedEnvelope")
    prefix, _, local = supported.get("qname", "").rpartition(":")
    assert (supported.nsmap.get(prefix or None), local) == (SOAP12, "Envelope")


def ok(svc: Service, resp: httpx.Response) -> None:
    assert resp.status_code == 200, f"{svc.name}: {resp.status_code} {resp.text[:800]}"


# --- edits of a valid request --------------------------------------------------------------------------


def doubled(xml: str, pattern: str) -> str:
    """The request with a second copy of the first element matching `pattern`, right after it."""
    found = re.search(pattern, xml, re.DOTALL)
    assert found is not None, pattern
    return xml[:found.end()] + found.group(0) + xml[found.end():]


ACTION = r"<wsa:Action\b[^>]*>[^<]*</wsa:Action>"
MESSAGE_ID = r"<wsa:MessageID>[^<]*</wsa:MessageID>"
TO = r"<wsa:To>[^<]*</wsa:To>"
SECURITY = r"<wsse:Security\b.*?</wsse:Security>"
CONTEXTE_LPS = r"<ctxlps:ContexteLPS\b.*?</ctxlps:ContexteLPS>"
CONTEXTE_BAM = r"<ctxbam:ContexteBAM\b.*?</ctxbam:ContexteBAM>"


def with_two_to(xml: str) -> str:
    if "<wsa:To>" in xml:
        return doubled(xml, TO)
    return xml.replace("</wsa:MessageID>", "</wsa:MessageID><wsa:To>http://127.0.0.1/x</wsa:To>"
                       "<wsa:To>http://127.0.0.1/x</wsa:To>", 1)


def with_must_understand(xml: str, value: str) -> str:
    """env:mustUnderstand=`value` on the wsse:Security block (a block every service understands)."""
    assert xml.count("<wsse:Security ") == 1
    return xml.replace("<wsse:Security ", f'<wsse:Security soap:mustUnderstand="{value}" ', 1)


def as_soap11(xml: str) -> str:
    return xml.replace(SOAP12, SOAP11)


# --- the baseline: what is accepted stays accepted -----------------------------------------------------


@pytest.mark.parametrize("content_type", [
    SOAP_CT,
    "application/soap+xml",
    'Application/SOAP+XML;charset="UTF-8"',
    "application/soap+xml ; charset=utf-8; action=\"urn:whatever-the-wsa-action-says\"",
])
def test_soap12_content_types_are_accepted(svc: Service, content_type: str) -> None:
    ok(svc, svc.post(svc.valid(), content_type))


@pytest.mark.parametrize("value", ["true", "false", "1", "0", " true ", "\tfalse\n"])
def test_boolean_must_understand_values_are_accepted(svc: Service, value: str) -> None:
    """xs:boolean, whitespace collapsed (SOAP 1.2 Part 1 §5.2.3): the Security block is understood either way."""
    ok(svc, svc.post(with_must_understand(svc.valid(), value)))


# --- the binding's media type (SOAP 1.2 Part 2 §7) ------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "text/plain; charset=utf-8",
    "application/json",
    "application/xml",
    "application/x-www-form-urlencoded",
    None,  # no Content-Type at all
])
def test_other_media_types_are_415(svc: Service, content_type: str | None) -> None:
    fault = read_fault(svc.post(svc.valid(), content_type))
    assert fault.status == 415
    assert fault.content_type.startswith("application/soap+xml")
    assert fault.code == f"{{{SOAP12}}}Sender"
    assert "application/soap+xml" in fault.reason


def test_soap11_media_type_is_a_version_mismatch(svc: Service) -> None:
    """text/xml + SOAPAction is the SOAP 1.1 binding: refused like Metro does (415), with a SOAP 1.1
    VersionMismatch fault and the Upgrade header block (SOAP 1.2 Part 1 §5.4.7 and Appendix A)."""
    xml = svc.valid()
    action = re.search(r"<wsa:Action\b[^>]*>([^<]*)</wsa:Action>", xml).group(1)
    for body in (xml, as_soap11(xml)):  # a SOAP 1.2 envelope sent the SOAP 1.1 way, and a real SOAP 1.1 request
        fault = read_fault(svc.post(body, "text/xml; charset=utf-8", SOAPAction=f'"{action}"'))
        assert fault.status == 415
        assert fault.content_type.startswith("text/xml")
        assert fault.root.tag == f"{{{SOAP11}}}Envelope"
        assert fault.code == f"{{{SOAP11}}}VersionMismatch"
        assert "application/soap+xml" in fault.reason
        assert_upgrade(fault)


def test_soap11_envelope_in_the_soap12_media_type_is_a_version_mismatch(svc: Service) -> None:
    fault = read_fault(svc.post(as_soap11(svc.valid())))
    assert fault.status == 500  # SOAP 1.2 Part 2 §7.5.1.2
    assert fault.code == f"{{{SOAP12}}}VersionMismatch"
    assert_upgrade(fault)


@pytest.mark.parametrize("content_type", [
    'multipart/related; boundary="b"; type="application/xop+xml"; start-info="application/soap+xml"',
    'multipart/related; boundary="b"; start-info="application/soap+xml"',  # no type: not XOP (DMP included)
    'multipart/related; boundary="b"; type="text/xml"',
])
def test_multipart_is_415_unless_the_service_takes_mtom(svc: Service, content_type: str) -> None:
    if svc.name == "dmp" and 'type="application/xop+xml"' in content_type:
        pytest.skip("the DMP takes MTOM (tests/dmp): a well-typed package reaches its MIME checks")
    fault = read_fault(svc.post(svc.valid(), content_type))
    assert fault.status == 415
    assert fault.code == f"{{{SOAP12}}}Sender"


def test_mtom_carrying_soap11_is_a_version_mismatch() -> None:
    """The DMP takes MTOM: XOP packages whose start-info is SOAP 1.1's text/xml carry a SOAP 1.1 message."""
    with serve_in_thread(build_simulator(load_spec("dmp"))) as server:
        body, ctype = dmp_msg.mtom(dmp_msg.envelope(dmp_msg.A_ITI41, "repository", dmp_msg.pnr("1.2.250.1.999.16.1", mtom=True)),
                                   dmp_msg.cda("1.2.250.1.999.16.1"))
        ctype = ctype.replace('start-info="application/soap+xml"', 'start-info="text/xml"')
        resp = httpx.post(server.url + "/si-dmp-server/v2/services/repository", content=body,
                          headers={"Content-Type": ctype}, timeout=20)
    fault = read_fault(resp)
    assert fault.status == 415 and fault.code == f"{{{SOAP11}}}VersionMismatch"
    assert_upgrade(fault)


# --- header blocks that must be unique --------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "local"), [
    (lambda xml: doubled(xml, ACTION), "Action"),
    (lambda xml: doubled(xml, MESSAGE_ID), "MessageID"),
    (with_two_to, "To"),
], ids=["Action", "MessageID", "To"])
def test_repeated_addressing_header_is_invalid_cardinality(svc: Service, edit: Callable[[str], str],
                                                           local: str) -> None:
    """WS-Addressing 1.0 Core §3.2 (cardinality 0..1 or 1) and SOAP Binding §6.4.1: Sender,
    wsa:InvalidAddressingHeader / wsa:InvalidCardinality, the header named in wsa:ProblemHeaderQName."""
    fault = read_fault(svc.post(edit(svc.valid())))
    assert fault.status == svc.sender_status
    assert fault.code == f"{{{SOAP12}}}Sender"
    assert fault.subcodes == [f"{{{WSA}}}InvalidAddressingHeader", f"{{{WSA}}}InvalidCardinality"]
    problem = fault.root.find(f".//{{{SOAP12}}}Detail/{{{WSA}}}ProblemHeaderQName")
    assert problem is not None and _resolve(problem) == f"{{{WSA}}}{local}"
    assert fault.root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}Action") == "http://www.w3.org/2005/08/addressing/fault"


def test_two_security_headers_are_invalid_security(svc: Service) -> None:
    """WS-Security 1.1 SOAP Message Security §5: two wsse:Security blocks for the same role are not allowed;
    the fault is wsse:InvalidSecurity (§12)."""
    fault = read_fault(svc.post(doubled(svc.valid(), SECURITY)))
    assert fault.status == svc.sender_status
    assert fault.code == f"{{{SOAP12}}}Sender"
    assert fault.subcodes == [f"{{{WSSE}}}InvalidSecurity"]
    assert "wsse:Security" in fault.reason


@pytest.mark.parametrize(("pattern", "local", "detail"), [
    (CONTEXTE_LPS, "ContexteLPS", "desir_520"),
    (CONTEXTE_BAM, "ContexteBAM", "desir_521"),
], ids=["ContexteLPS", "ContexteBAM"])
def test_repeated_context_header_is_the_services_context_fault(svc: Service, pattern: str, local: str,
                                                              detail: str) -> None:
    """The CNAM context headers the teleservices read (INSi: ContexteLPS and ContexteBAM; ApCV, ON:
    ContexteLPS) are single: a second one is the service's own ContexteLPS/ContexteBAM fault."""
    xml = svc.valid()
    if not re.search(pattern, xml, re.DOTALL):
        pytest.skip(f"{svc.name} does not read {local}")
    resp = svc.post(doubled(xml, pattern))
    fault = read_fault(resp)
    assert fault.status == 500 and fault.code == f"{{{SOAP12}}}Sender"
    erreur = fault.root.find(".//{urn:siram}Erreur")
    assert erreur is not None and erreur.get("code") == detail
    assert local in (erreur.text or "") and "deux fois" in erreur.text


# --- mustUnderstand ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "TRUE", "2", "", "vrai"])
def test_must_understand_must_be_a_boolean(svc: Service, value: str) -> None:
    """SOAP 1.2 Part 1 §5.2.3: env:mustUnderstand is an xs:boolean ("true", "false", "1", "0")."""
    fault = read_fault(svc.post(with_must_understand(svc.valid(), value)))
    assert fault.status == svc.sender_status
    assert fault.code == f"{{{SOAP12}}}Sender"
    assert "mustUnderstand" in fault.reason and "xs:boolean" in fault.reason


def test_unknown_mandatory_header_is_must_understand_with_not_understood(svc: Service) -> None:
    """SOAP 1.2 Part 1 §5.4.8 (already so before issue 16; kept here for every service)."""
    xml = svc.valid().replace("<soap:Header>", '<soap:Header><x:Trace xmlns:x="urn:example:trace" '
                              'soap:mustUnderstand="true"/>', 1)
    fault = read_fault(svc.post(xml))
    assert fault.code == f"{{{SOAP12}}}MustUnderstand"
    (block,) = header_blocks(fault, SOAP12, "NotUnderstood")
    prefix, _, local = block.get("qname").rpartition(":")
    assert (block.nsmap.get(prefix or None), local) == ("urn:example:trace", "Trace")


@pytest.mark.parametrize("service", ["insi"], indirect=True)
def test_insi_refuses_the_same_off_its_inline_path(svc: Service) -> None:
    """With a fault rule stored, INSi's fast route is served by the ASGI front end instead of inline: same answers."""
    rule = {"service": "insi", "operation": "autreOperation", "effect": {"type": "latency", "ms": 1}}
    assert svc.http.post("/_bench/faults", json=rule).status_code < 300
    assert read_fault(svc.post(svc.valid(), "text/plain")).status == 415
    assert read_fault(svc.post(doubled(svc.valid(), ACTION))).subcodes[-1] == f"{{{WSA}}}InvalidCardinality"
    ok(svc, svc.post(svc.valid()))
