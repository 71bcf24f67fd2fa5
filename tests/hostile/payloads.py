"""Hostile inputs, written by hand (and a seeded mutator): what a buggy or malicious client could send.

Nothing here is built by the simulators' own serializers."""

from __future__ import annotations

import random

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><a>&lol9;</a></soap:Body>
</soap:Envelope>"""

XXE_FILE = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><a>&x;</a></soap:Body></soap:Envelope>"""

XXE_NET = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:9/dtd"> %p;]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>"""

DEEP_XML = (b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>' + b"<a>" * 50_000
            + b"</a>" * 50_000 + b"</soap:Body></soap:Envelope>")

SOAP11_ENV = b"""<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
<s:Header/><s:Body><x/></s:Body></s:Envelope>"""

NO_BODY = b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header/></soap:Envelope>'
EMPTY_BODY = b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>'
MUST_UNDERSTAND = (b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header>'
                   b'<x:Unknown xmlns:x="urn:hostile" soap:mustUnderstand="maybe"/></soap:Header><soap:Body><y/>'
                   b"</soap:Body></soap:Envelope>")
TWO_BODIES = (b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><a/></soap:Body>'
              b"<soap:Body><b/></soap:Body></soap:Envelope>")
HUGE_ATTRIBUTE = b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" a="' + b"x" * 3_000_000 + b'"/>'
WRONG_ROOT = b"<html><body>bonjour</body></html>"


def bodies() -> dict[str, bytes]:
    rng = random.Random(16)
    return {
        "vide": b"",
        "octets aléatoires": rng.randbytes(4096),
        "NUL": b"\x00" * 512,
        "UTF-8 invalide": b'<?xml version="1.0" encoding="UTF-8"?><a>\xff\xfe\xc3</a>',
        "encodage inconnu": b'<?xml version="1.0" encoding="X-HOSTILE"?><a/>',
        "XML tronqué": b'<?xml version="1.0"?><soap:Envelope xmlns:soap="' + SOAP12.encode() + b'"><soap:Body><a>',
        "milliard de rires": LAUGHS,
        "XXE fichier": XXE_FILE,
        "XXE réseau": XXE_NET,
        "XML imbriqué 50 000": DEEP_XML,
        "SOAP 1.1": SOAP11_ENV,
        "enveloppe sans Body": NO_BODY,
        "Body vide": EMPTY_BODY,
        "deux Body": TWO_BODIES,
        "mustUnderstand non booléen": MUST_UNDERSTAND,
        "HTML": WRONG_ROOT,
        "JSON": b'{"resourceType": "Bundle", "entry": [1, "a", null, {"b": [[[]]]}]}',
        "JSON profond": b"[" * 50_000 + b"]" * 50_000,
        "formulaire": b"a=1&b=%ZZ&c=%FF&grant_type=\x00&client_id=" + b"x" * 5000,
        "multipart sans fin": b"--x\r\nContent-Type: application/xop+xml\r\nContent-ID: <r>\r\n\r\n<a/>",
        "attribut de 3 Mo": HUGE_ATTRIBUTE,
    }


CONTENT_TYPES = [
    "application/soap+xml; charset=utf-8",
    'text/xml; charset="utf-8"',
    "application/json",
    'multipart/related; boundary=x; type="application/xop+xml"; start="<r>"',
    "multipart/related; boundary=",
    "application/x-www-form-urlencoded",
    None,
    "application/soap+xml; charset=X-HOSTILE",
]

BIG = {"XML imbriqué 50 000", "JSON profond", "attribut de 3 Mo", "milliard de rires"}


def matrix() -> list[tuple[str, bytes, str | None]]:
    """Every body with every content type, except the big bodies, sent once with the SOAP type."""
    out = []
    for name, body in bodies().items():
        for ctype in CONTENT_TYPES if name not in BIG else CONTENT_TYPES[:1]:
            out.append((f"{name} [{ctype}]", body, ctype))
    return out


def mutations(valid: bytes, count: int, seed: int) -> list[tuple[str, bytes]]:
    """`count` corruptions of a valid request: truncations, byte flips, duplicated and deleted slices, tags swapped,
    numbers swapped for huge ones, entities and control characters inserted."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        data = bytearray(valid)
        kind = n % 8
        if kind == 0:
            data = data[:rng.randrange(len(data))]
        elif kind == 1:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:
            i = rng.randrange(len(data))
            j = min(len(data), i + rng.randint(1, 400))
            data[i:i] = data[i:j] * rng.randint(2, 5)
        elif kind == 3:
            i = rng.randrange(len(data))
            del data[i:i + rng.randint(1, 200)]
        elif kind == 4:  # a closing tag moved: mismatched structure
            text = bytes(data)
            start = text.find(b"</", rng.randrange(len(text)))
            if start > 0:
                end = text.find(b">", start) + 1
                tag = text[start:end]
                data = bytearray(text[:start] + text[end:])
                pos = rng.randrange(len(data))
                data[pos:pos] = tag
        elif kind == 5:  # digits replaced by a huge number
            text = bytes(data)
            digits = [i for i in range(len(text)) if 48 <= text[i] <= 57]
            if digits:
                i = rng.choice(digits)
                data[i:i + 1] = b"9" * rng.choice((25, 400, 20_000))
        elif kind == 6:
            pos = rng.randrange(len(data))
            data[pos:pos] = rng.choice((b"&unknown;", b"&#0;", b"&#xD800;", b"\x00", b"\x1b[2J", b"]]>",
                                        b"<!--", b"<![CDATA[", b"\xef\xbb\xbf", b"&#1114112;"))
        else:  # an element name replaced by one of another namespace
            text = bytes(data)
            start = text.find(b"<", rng.randrange(len(text)))
            if start >= 0 and start + 1 < len(text) and text[start + 1:start + 2] not in (b"/", b"?", b"!"):
                data[start + 1:start + 1] = b"h:"
        out.append((f"mutation {n} (type {kind})", bytes(data)))
    return out


HOSTILE_PATHS = ["/%00", "/..%2F..%2F..%2Fetc%2Fpasswd", "/" + "a" * 6000, "/%zz", "/%C3%A9t%C3%A9", "/;jsessionid=1",
                 "//double//slash", "/./../", "/%E2%80%AE"]

HOSTILE_QUERIES = ["?%ff=%fe", "?a=%zz", "?" + "&".join(f"p{i}=x" for i in range(500)), "?limit=99999999999999999999",
                   "?_count=-1", "?_count=abc", "?_count=99999999999999999999", "?since=9999-99-99",
                   "?identifier=%00|%00", "?name=" + "é" * 3000, "?_include=*:*", "?_sort=--x", "?_elements=,,,",
                   "?format=../../etc", "?run=%00", "?ins=1e999", "?prompt=none%0d%0aSet-Cookie:x",
                   "?redirect_uri=javascript:alert(1)", "?response_type=code%00token"]

# Control API bodies: malformed JSON, and well-formed JSON of every wrong type at the keys the services read.
CONTROL_RAW = [
    b"", b"{", b"null", b"[]", b'"x"', b"1", b"true", b"[" * 40_000 + b"]" * 40_000, b'{"a": NaN}',
    b'{"a": 123456789012345678901234567890}', b'{"a": 1e999}', b"\xff\xfe{}", b'{"a": "\\ud800"}',
]
WRONG_VALUES = [1, -1, 2**62, "x", "", [], {}, [1], [{}], [None], None, True, {"a": {}}, "9" * 300, 1.5]
STATE_KEYS = ["items", "actions", "action", "clients", "client", "identities", "patients", "documents", "persona",
              "ins", "rules", "run", "label", "keep", "set", "advance", "now", "frozen", "rate", "effect", "match",
              "contexts", "users", "sessions", "entries", "mailboxes", "to", "from", "raw", "attachments",
              "cda_base64", "resourceType", "status"]
