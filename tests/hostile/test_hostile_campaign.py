"""The hostile campaign (issue 16): several thousand bad inputs over every protocol of every simulator.

For every answer: no 5xx other than a documented SOAP fault, no stack trace or Python exception name, no hang
past the documented deadlines (judge.py). Before the campaign, data is stored through the real protocols (a DMP
document, an MSSanté message, journal entries); after it, every service must be healthy and that data intact.

The tests run in file order: the baseline first, the check of what it stored last.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import imaplib
import json
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from apcv.messages import ACTION_RESTITUER, restituer_body
from apcv.messages import envelope as apcv_envelope
from dmp.messages import A_ITI41, A_ITI43, A_TD02, A_TD03, cda, mtom, pnr, retrieve, td02, td03
from dmp.messages import envelope as dmp_envelope
from on.messages import ACTION_CONSULTER, consulter_body
from on.messages import envelope as on_envelope

from .conftest import KIT_BAL, LIMITS, ROBERT_BAL, Bench, mss_token
from .judge import TOTALS, Campaign, leaks
from .payloads import (
    CONTROL_RAW,
    HOSTILE_PATHS,
    HOSTILE_QUERIES,
    STATE_KEYS,
    WRONG_VALUES,
    matrix,
    mutations,
)

PROBES = Path(__file__).resolve().parents[2] / "segur_bench" / "probes"
SOAP_CT = "application/soap+xml; charset=utf-8"
DMP = "/si-dmp-server/v2/services"
DOC_UID = "1.2.250.1.999.1616.1"
MAIL_BODY = "Compte rendu de la campagne hostile — à conserver intact."

# What the baseline stored, for the last test.
STORED: dict[str, object] = {}


def _post(bench: Bench, c: Campaign, label: str, url: str, body: bytes, ctype: str | None,
          extra: dict | None = None) -> httpx.Response | None:
    headers = {"content-type": ctype} if ctype is not None else {}
    headers.update(extra or {})
    try:
        resp = bench.http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        c.http(label, exc)
        return None
    c.http(label, resp)
    return resp


@contextlib.contextmanager
def _submission(bench: Bench, *, timeout: float) -> Iterator[smtplib.SMTP]:
    """An SMTP submission session as an LGC opens one: STARTTLS, then XOAUTH2 with Dr KIT's PSC token."""
    with smtplib.SMTP("127.0.0.1", bench.smtp_port, timeout=timeout) as smtp:
        smtp.ehlo("lgc.test")
        smtp.starttls(context=bench.mss_ca)
        smtp.ehlo("lgc.test")
        smtp.auth("XOAUTH2", lambda challenge=None: f"user={KIT_BAL}\x01auth=Bearer {mss_token()}\x01\x01"
                  if challenge is None else "")
        yield smtp


def _insi_valid() -> bytes:
    return (PROBES / "insi-clerico.xml").read_text(encoding="utf-8").format(
        message_id=f"urn:uuid:{uuid.uuid4()}").encode()


def _dmp_retrieve(bench: Bench) -> bytes:
    resp = bench.http.post(bench.base("dmp") + "/repository", content=dmp_envelope(A_ITI43, "repository",
                                                                                   retrieve(DOC_UID)).encode(),
                           headers={"content-type": SOAP_CT})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("multipart/related"), resp.text[:500]
    return resp.content


# ------------------------------------------------------------------------------------------------ baseline


def test_baseline_is_stored_through_the_real_protocols(bench: Bench):
    http = bench.http
    # A DMP document (ITI-41 in MTOM), read back with ITI-43 once the professional is authorised.
    soap = dmp_envelope(A_ITI41, "repository", pnr(DOC_UID, mtom=True))
    body, ctype = mtom(soap, cda(DOC_UID))
    resp = http.post(bench.base("dmp") + "/repository", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200 and b"ResponseStatusType:Success" in resp.content, resp.text[:800]
    resp = http.post(bench.base("dmp") + "/habilitations",
                     content=dmp_envelope(A_TD03, "habilitations", td03("AJOUT")).encode(),
                     headers={"content-type": SOAP_CT})
    assert resp.status_code == 200 and b"OK" in resp.content, resp.text[:500]
    STORED["dmp_document"] = hashlib.sha256(cda(DOC_UID)).hexdigest()
    STORED["dmp_answer_has_document"] = cda(DOC_UID) in _dmp_retrieve(bench)
    # An MSSanté message, delivered over SMTP by a real client.
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = KIT_BAL, ROBERT_BAL, "Campagne hostile"
    msg.set_content(MAIL_BODY)
    with _submission(bench, timeout=10) as smtp:
        smtp.send_message(msg)
    (inbox,) = [m for m in http.get(bench.url("mss") + f"/_bench/mss/mailboxes/{ROBERT_BAL}").json()
                ["messages"] if m["subject"] == "Campagne hostile"] or [None]
    assert inbox, "the message was not delivered"
    raw = http.get(bench.url("mss") + f"/_bench/mss/mailboxes/{ROBERT_BAL}/messages/{inbox['uid']}").content
    STORED["mss_message"] = (inbox["uid"], hashlib.sha256(raw).hexdigest())
    # Journal entries of every service, as they are now.
    http.post(bench.base("insi"), content=_insi_valid(), headers={"content-type": SOAP_CT})
    STORED["journals"] = {name: {e["id"]: (e["status"], e["operation"]) for e in
                                 http.get(bench.url(name) + "/_bench/journal").json()["entries"]}
                          for name in bench.servers}
    assert all(STORED["journals"][name] for name in ("insi", "dmp", "mss"))
    assert STORED["dmp_answer_has_document"]


# ---------------------------------------------------------------------------------------------------- HTTP


def _routes(bench: Bench) -> list[tuple[str, str, str]]:
    """(service, method, path) of every business route, parameters filled with real values."""
    fill = {"<service>": ["patients", "habilitations", "registry", "repository", "..%2F..", "x" * 300],
            "<rtype>": ["Practitioner", "PractitionerRole", "Organization", "Patient", "%00", "x" * 300],
            "<rid>": ["1", "99999999999999999999", "%2e%2e", "-1", "a" * 500]}
    out = []
    for name, server in bench.servers.items():
        for rule in server.sim.flask.url_map.iter_rules():
            if rule.rule.startswith(("/_bench", "/static")):
                continue
            paths = [rule.rule]
            for key, values in fill.items():
                paths = [p.replace(key, v) for p in paths for v in (values if key in p else [None])] \
                    if any(key in p for p in paths) else paths
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                out += [(name, method, p) for p in paths]
    return out


@pytest.mark.parametrize("service", ["insi", "dmp", "on", "apcv", "psc", "annuaire", "mss"])
def test_bad_bodies_content_types_paths_and_queries(bench: Bench, service: str):
    c = Campaign(service)
    routes = [(m, p) for s, m, p in _routes(bench) if s == service]
    cases = matrix()
    for method, path in routes:
        url = bench.url(service) + path
        if method == "POST":
            for label, body, ctype in cases if "<" not in path else cases[::7]:
                _post(bench, c, f"POST {path[:60]} {label}", url, body, ctype)
        else:
            for query in HOSTILE_QUERIES:
                try:
                    c.http(f"GET {path[:60]}{query[:40]}", bench.http.get(url + query))
                except httpx.HTTPError as exc:
                    c.http(f"GET {path[:60]}{query[:40]}", exc)
    base = bench.url(service) + (bench.base(service)[len(bench.url(service)):] or "")
    for path in HOSTILE_PATHS:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "PROPFIND"):
            try:
                c.http(f"{method} {path[:40]}", bench.http.request(method, base + path, content=b"<a/>"))
            except httpx.HTTPError as exc:
                c.http(f"{method} {path[:40]}", exc)
    c.assert_clean(minimum_cases=60)


@pytest.mark.parametrize(("service", "path", "valid", "ctype"), [
    ("insi", "", _insi_valid, SOAP_CT),
    ("apcv", "", lambda: apcv_envelope(restituer_body("ctx-hostile"), action=ACTION_RESTITUER).encode(), SOAP_CT),
    ("on", "", lambda: on_envelope(consulter_body("1234567890123"), action=ACTION_CONSULTER).encode(), SOAP_CT),
    ("dmp", "/patients", lambda: dmp_envelope(A_TD02, "patients", td02()).encode(), SOAP_CT),
    ("dmp", "/repository", None, None),  # MTOM: see below
])
def test_corrupted_valid_requests(bench: Bench, service, path, valid, ctype):
    c = Campaign(service)
    url = bench.base(service) + path
    if valid is None:
        soap = dmp_envelope(A_ITI41, "repository", pnr("1.2.250.1.999.1616.99", mtom=True))
        body, ctype = mtom(soap, cda("1.2.250.1.999.1616.99"))
        for label, mutated in mutations(body, 160, seed=41):
            _post(bench, c, label, url, mutated, ctype)
        for label, bad_ctype in (("sans boundary", "multipart/related"), ("boundary absente du corps",
                                 'multipart/related; boundary="zz"; type="application/xop+xml"'),
                                 ("start inconnu", ctype.replace("root.message", "absent"))):
            _post(bench, c, label, url, body, bad_ctype)
    else:
        for label, mutated in mutations(valid(), 200, seed=hash(service) & 0xFFFF):
            _post(bench, c, label, url, mutated, ctype)
    c.assert_clean(minimum_cases=150)


# ------------------------------------------------------------------------------------------------- control


@pytest.mark.parametrize("service", ["insi", "dmp", "on", "apcv", "psc", "annuaire", "mss"])
def test_control_api_bad_json(bench: Bench, service: str):
    c = Campaign(service)
    base = bench.url(service)
    posts = sorted({r.rule for r in bench.servers[service].sim.flask.url_map.iter_rules()
                    if r.rule.startswith("/_bench") and "POST" in r.methods and "<" not in r.rule
                    and r.rule not in ("/_bench/reset",)})
    for route in posts:
        for raw in CONTROL_RAW:
            _post(bench, c, f"{route} {raw[:30]!r}", base + route, raw, "application/json")
        for value in WRONG_VALUES:
            _post(bench, c, f"{route} {json.dumps(value)[:30]}", base + route, json.dumps(value).encode(),
                  "application/json")
    for key in STATE_KEYS:  # the seeds services read: every wrong type at every key they look at
        for value in WRONG_VALUES:
            body = json.dumps({key: value, "action": "authorise" if key != "action" else value}).encode()
            _post(bench, c, f"/_bench/state {{{key}: {json.dumps(value)[:20]}}}", base + "/_bench/state", body,
                  "application/json")
    for query in HOSTILE_QUERIES:
        for route in ("/_bench/journal", "/_bench/faults", "/_bench/state"):
            # A small page: the journal holds every hostile request of this module by now.
            url = base + route + query + ("" if "limit=" in query else "&limit=3")
            try:
                c.http(f"GET {route}{query[:40]}", bench.http.get(url))
            except httpx.HTTPError as exc:
                c.http(f"GET {route}{query[:40]}", exc)
    bench.http.delete(base + "/_bench/faults")  # rules a wrong-but-valid body may have added
    c.assert_clean(minimum_cases=100)


# --------------------------------------------------------------------------------------------- raw HTTP


RAW_REQUESTS = {
    "ligne de requête invalide": b"GARBAGE\r\n\r\n",
    "HTTP/0.9": b"GET /\r\n\r\n",
    "préface HTTP/2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "méthode inconnue": b"BREW /lps HTTP/1.1\r\nHost: x\r\n\r\n",
    "Content-Length négatif": b"POST /lps HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "Content-Length énorme": b"POST /lps HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "Content-Length double": b"POST /lps HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    "CL et chunked": b"POST /lps HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n",
    "taille de chunk invalide": b"POST /lps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"zz\r\nab\r\n0\r\n\r\n",
    "chunk énorme annoncé": b"POST /lps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    "en-tête sans deux-points": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
    "en-tête de 70 Ko": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n",
    "300 en-têtes": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(300)) + b"\r\n",
    "en-tête non ASCII": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\x00\r\n\r\n",
    "Expect 100-continue": b"POST /lps HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd",
    "corps plus court qu'annoncé": b"POST /lps HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
    "en-têtes jamais finis": b"POST /lps HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    "upgrade websocket": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "requêtes en rafale": b"GET /_bench/health HTTP/1.1\r\nHost: x\r\n\r\n" * 50,
}


def _raw_exchange(host: str, port: int, data: bytes, wait: float) -> tuple[bytes, float, bool]:
    """Send `data`, read until the server closes or `wait` passes: (bytes read, seconds, closed by the server)."""
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=wait) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        out = b""
        sock.settimeout(wait)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return out, time.monotonic() - start, False
            except ConnectionResetError:
                return out, time.monotonic() - start, True
            if not chunk:
                return out, time.monotonic() - start, True
            out += chunk


@pytest.mark.parametrize("service", ["insi", "dmp", "psc"])
def test_raw_http_garbage_and_slow_requests(bench: Bench, service: str):
    c = Campaign(service)
    server = bench.servers[service]
    deadline = max(LIMITS.header_timeout_s, LIMITS.body_timeout_s) + 2.5
    with ThreadPoolExecutor(len(RAW_REQUESTS)) as pool:  # the slow cases wait out their deadlines together
        results = dict(zip(RAW_REQUESTS, pool.map(
            lambda data: _raw_exchange(server.host, server.port, data, deadline + 1), RAW_REQUESTS.values()),
            strict=True))
    for label, (out, _, closed) in results.items():
        c.cases += 1
        if not closed and label != "requêtes en rafale" and not out.startswith(b"HTTP/1.1 "):
            c.fail(label, f"nothing within {deadline + 1:.1f} s (hang)")
        status = out[9:12] if out.startswith(b"HTTP/1.1 ") else b""
        if status.startswith(b"5") and status != b"503":
            c.fail(label, f"answered {out[:120]!r}")
        c.text(label, out)
    c.assert_clean(minimum_cases=len(RAW_REQUESTS))


def test_tls_port_garbage(bench: Bench):
    """Garbage on a TLS port ends in an alert or a close, at the latest after the 10-s handshake deadline."""
    c = Campaign("insi (TLS)")
    server = bench.servers["insi"]
    cases = {"HTTP en clair": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "octets aléatoires": bytes(range(256)),
             "ClientHello tronqué": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20,
             "enregistrement géant": b"\x16\x03\x03\xff\xff" + b"\x00" * 1000}
    with ThreadPoolExecutor(len(cases)) as pool:  # the incomplete handshakes wait out the deadline together
        results = dict(zip(cases, pool.map(lambda data: _raw_exchange(server.host, server.tls_port, data, 12),
                                           cases.values()), strict=True))
    for label, (out, _, closed) in results.items():
        c.cases += 1
        if not closed:
            c.fail(label, "the TLS port kept the connection open")
        c.text(label, out)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    resp = httpx.get(server.tls_url + "/_bench/health", verify=ctx)
    assert resp.status_code == 200
    c.assert_clean(minimum_cases=4)


# ------------------------------------------------------------------------------------------- SMTP / IMAP


SMTP_LINES = [
    b"GARBAGE", b"EHLO", b"EHLO " + b"h" * 600, b"HELO \x00\xff", b"MAIL FROM:<\x00@x>", b"MAIL FROM:" + b"<" * 500,
    b"RCPT TO:<a@b>", b"DATA", b"BDAT 10 LAST", b"AUTH", b"AUTH XOAUTH2 !!!notbase64", b"AUTH PLAIN AAAA",
    b"AUTH XOAUTH2 " + base64.b64encode(b"user=\x01auth=Bearer x.y.z\x01\x01"), b"AUTH LOGIN", b"*",
    b"VRFY " + b"x" * 2000, b"EXPN x", b"STARTTLS extra", b"RSET junk", b"NOOP " + b"\xff" * 100,
    b"MAIL FROM:<a@b> SIZE=99999999999999999999", b"MAIL FROM:<a@b> BODY=HOSTILE", b"x" * 70_000, b"\r\n\r\n",
    b"QUIT now",
]


def _smtp_session(bench: Bench, lines: list[bytes], *, tls: bool) -> list[bytes]:
    sock = socket.create_connection(("127.0.0.1", bench.smtp_port), timeout=10)
    f = sock.makefile("rb")
    replies = [f.readline()]
    if tls:
        sock.sendall(b"EHLO hostile.test\r\n")
        while not (line := f.readline()).startswith(b"250 "):
            pass
        sock.sendall(b"STARTTLS\r\n")
        replies.append(f.readline())
        sock = bench.mss_ca.wrap_socket(sock, server_hostname="127.0.0.1")
        f = sock.makefile("rb")
    for line in lines:
        try:
            sock.sendall(line + b"\r\n")
        except OSError:
            break
        reply = f.readline()
        replies.append(reply)
        if not reply:
            break
        while len(reply) > 3 and reply[3:4] == b"-":  # multi-line reply
            reply = f.readline()
            replies.append(reply)
    sock.close()
    return replies


def test_smtp_garbage(bench: Bench):
    c = Campaign("mss (SMTP)")
    for tls in (False, True):
        replies = _smtp_session(bench, SMTP_LINES, tls=tls)
        for line, reply in zip([b"(accueil)", *([b"STARTTLS"] if tls else []), *SMTP_LINES], replies, strict=False):
            c.cases += 1
            label = f"{'TLS ' if tls else ''}{line[:40]!r}"
            if reply and not reply[:3].isdigit():
                c.fail(label, f"not an SMTP reply: {reply[:80]!r}")
            c.text(label, reply)
    # A DATA section that breaks every rule: bare LF, NUL, a broken MIME tree, a zip bomb in IHE_XDM.zip.
    import io
    import zipfile

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", b"\x00" * 200_000_000)
    payload = (b"From: " + KIT_BAL.encode() + b"\r\nTo: " + ROBERT_BAL.encode() + b"\r\nSubject: =?utf-8?q?\xff?=\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
               b"\r\n\r\nbare\nLF\x00\r\n--b\r\nContent-Type: application/zip; name=IHE_XDM.zip\r\n"
               b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=IHE_XDM.zip\r\n\r\n"
               + base64.encodebytes(bomb.getvalue()) + b"\r\n--b\r\nContent-Type: multipart/alternative; boundary="
               b"\r\n\r\n--\r\n")
    c.cases += 1
    try:
        with _submission(bench, timeout=30) as smtp:
            smtp.sendmail(KIT_BAL, [ROBERT_BAL], payload)
    except smtplib.SMTPResponseException as exc:  # a refusal is an answer; what it says must be SMTP's words
        c.text("DATA hostile", exc.smtp_error)
    except smtplib.SMTPException as exc:
        c.fail("DATA hostile", f"session broken: {exc!r}")
    c.assert_clean(minimum_cases=40)


IMAP_PREAUTH = [
    b"a1 GARBAGE", b"a2 LOGIN", b"a3 LOGIN \x00 \xff", b"a4 AUTHENTICATE XOAUTH2 !!!", b"a5 AUTHENTICATE NOPE",
    b"a6 SELECT INBOX", b"* NOOP", b"a7 CAPABILITY extra", b"a8 " + b"(" * 5000, b"a9 LOGIN {-1}",
    b"a10 LOGIN {99999999999999999999}", b"a11 ID (" + b'"k" "v" ' * 200 + b")", b"a12 " + b"x" * 70_000,
    b"\xff\xfe", b"a13 STARTTLS extra",
]
IMAP_AUTHED = [
    b"b1 SELECT \"../../etc\"", b"b2 SELECT INBOX", b"b3 FETCH 1 BODY[1.2.3]", b"b4 FETCH 1 " + b"(" * 2000,
    b"b5 FETCH 1:99999999999999999999 FLAGS", b"b6 FETCH * (BODY[HEADER.FIELDS (\xff)])", b"b7 SEARCH TEXT x",
    b"b8 SEARCH BODY x", b"b9 SEARCH " + b"NOT " * 3000 + b"ALL", b"b10 SEARCH CHARSET X-HOSTILE TEXT x",
    b"b11 COPY 1 \"../../x\"", b"b12 STORE 1 +FLAGS (\\Hostile \xff)", b"b13 UID FETCH 0:* (RFC822.SIZE)",
    b"b14 APPEND INBOX {-1}", b"b15 APPEND INBOX {99999999999999}", b"b16 CREATE \"" + b"x/" * 500 + b"\"",
    b"b17 RENAME INBOX \"..\"", b"b18 LIST \"\" \"" + b"*%" * 1000 + b"\"", b"b19 EXPUNGE extra",
    b"b20 FETCH 1 BODY.PEEK[]<99999999999999999999.1>", b"b21 FETCH 1 BINARY[1]", b"b22 UID SEARCH UID 1:*",
    b"b23 IDLE", b"DONE", b"b24 NOOP",
]


def _imap_session(bench: Bench, lines: list[bytes], *, login: bool) -> list[bytes]:
    sock = socket.create_connection(("127.0.0.1", bench.imap_port), timeout=10)
    f = sock.makefile("rb")
    out = [f.readline()]
    sock.sendall(b"s0 STARTTLS\r\n")
    out.append(f.readline())
    sock = bench.mss_ca.wrap_socket(sock, server_hostname="127.0.0.1")
    f = sock.makefile("rb")
    if login:
        arg = base64.b64encode(f"user={ROBERT_BAL}\x01auth=Bearer {mss_token('899700218896')}\x01\x01".encode())
        sock.sendall(b"s1 AUTHENTICATE XOAUTH2 " + arg + b"\r\n")
        while not (line := f.readline()).startswith(b"s1 "):
            if not line:
                break
        out.append(line)
    for line in lines:
        try:
            sock.sendall(line + b"\r\n")
        except OSError:
            out.append(b"(closed)")
            break
        tag = line.split(b" ", 1)[0]
        while True:
            reply = f.readline()
            out.append(reply)
            if not reply or reply.startswith((tag + b" ", b"+ ", b"* BYE")) or tag in (b"*", b"DONE", b"\xff\xfe"):
                break
        if not reply:
            break
    sock.close()
    return out


def test_imap_garbage(bench: Bench):
    c = Campaign("mss (IMAP)")
    for login, lines in ((False, IMAP_PREAUTH), (True, IMAP_AUTHED)):
        try:
            replies = _imap_session(bench, lines, login=login)
        except (OSError, ssl.SSLError) as exc:
            c.fail("session", f"broken: {exc!r}")
            continue
        for reply in replies:
            c.cases += 1
            c.text(reply[:60].decode("latin-1"), reply)
            if b" BAD " in reply or b" NO " in reply:
                continue
        if login and not any(r.startswith(b"b24 OK") for r in replies):
            c.fail("NOOP after the hostile commands", f"the session did not survive: {replies[-3:]!r}")
    c.assert_clean(minimum_cases=30)


# -------------------------------------------------------------------------------------------------- after


def test_every_service_is_healthy_and_stored_data_is_intact(bench: Bench):
    if not STORED:
        pytest.skip("the baseline test did not run")
    http = bench.http
    for name in bench.servers:
        resp = http.get(bench.url(name) + "/_bench/health")
        assert resp.status_code == 200 and resp.json()["status"] == "ok", name
    # Each service still does its job.
    resp = http.post(bench.base("insi"), content=_insi_valid(), headers={"content-type": SOAP_CT})
    assert resp.status_code == 200 and b"1431100950837" in resp.content
    assert cda(DOC_UID) in _dmp_retrieve(bench), "the DMP document stored before the campaign is gone or changed"
    uid, digest = STORED["mss_message"]
    raw = http.get(bench.url("mss") + f"/_bench/mss/mailboxes/{ROBERT_BAL}/messages/{uid}")
    assert raw.status_code == 200 and hashlib.sha256(raw.content).hexdigest() == digest
    with imaplib.IMAP4("127.0.0.1", bench.imap_port) as imap:
        imap.starttls(bench.mss_ca)
        imap.authenticate("XOAUTH2", lambda _: f"user={ROBERT_BAL}\x01auth=Bearer "
                                               f"{mss_token('899700218896')}\x01\x01".encode())
        assert imap.select("INBOX")[0] == "OK"
        typ, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == raw.content
    # Every journal entry recorded before the campaign is still there, unchanged.
    for name, before in STORED["journals"].items():
        now = {e["id"]: (e["status"], e["operation"]) for e in http.get(
            bench.url(name) + "/_bench/journal").json()["entries"]}
        missing = {k: v for k, v in before.items() if now.get(k) != v}
        assert not missing, f"{name}: {len(missing)} journal entries lost or changed"
        assert leaks(json.dumps(list(now.values()))) is None
    print(f"\nhostile campaign: {sum(TOTALS.values())} cases — "
          + ", ".join(f"{k} {v}" for k, v in sorted(TOTALS.items())))
