"""How the CNAM SOAP teleservices (INSi, ApCV, Ordonnance numérique) put their answers on the wire.

Written byte for byte after the real answers stored by a public INSi client that runs against the CNDA
qualification service (PADOA `tlsi-ins`, `src/ins/fixtures/`), because real clients read them with
prefix-aware regular expressions (that client finds the subcode with ``<S:Subcode><S:Value>S:(.*)`` and the
reason with ``<S:Text xml:lang="en">``) and read a fault only when the HTTP status is 500:

* every fault is sent with **HTTP 500**, Sender faults included (JAX-WS behaviour; SOAP 1.2 Part 2 §7.5.1.2
  would say 400 for a Sender fault, the real service does not);
* two fault shapes. The software gateway's refusals (detail codes ``desir_*``, e.g. siram_100/desir_550, unknown
  IDAM) use the ``soap`` prefix and a French ``xml:lang="fr"`` reason; the service's own faults (detail codes
  ``insi_*``..., e.g. siram_40/insi_102) use the ``S`` prefix, a stray ``ns4`` declaration of the SOAP 1.1
  namespace and ``xml:lang="en"`` on a French text. In both the subcode QName is in the SOAP envelope
  namespace (``soap:siram_100``, ``S:siram_40``), never in ``urn:siram``;
* no SOAP Header at all (no WS-Addressing Action/MessageID/RelatesTo); the request's MessageID comes back only as
  the ``messageID`` attribute of the gateway's ``siram:Erreur`` (the service's faults carry none);
* ``RESULTAT`` in an unprefixed default namespace, the request namespaces declared beside it (``ns0``/``ns1``).

Everything else about the envelopes (element order, the XML declaration) follows the same captures.
"""

from __future__ import annotations

from .soap import SOAP12_NS, escape_text

FAULT_HTTP_STATUS = 500
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SIRAM = "urn:siram"

_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                               "\n": "&#10;", "\t": "&#9;"})


def _attr(value: str) -> str:
    return value.translate(_ATTR_ESCAPES)


def is_gateway_code(detail_code: str) -> bool:
    """The software gateway ("DESIR") answers with ``desir_*`` detail codes; the services with their own."""
    return detail_code.lower().startswith("desir_")


def fault_envelope(code: str, subcode: str, reason: str, detail_code: str, severite: str, detail: str,
                   message_id: str | None = None, lang: str | None = None) -> bytes:
    """A teleservice fault in the shape the real platform sends (see the module docstring).

    `code` is "Sender" or "Receiver"; `subcode` a local name such as "siram_100"; `reason` the generic user
    message of Fault/Reason; `detail` the precise text of Detail/siram:Erreur.
    """
    if is_gateway_code(detail_code):
        p = "soap"
        body_open = f'<env:Body xmlns:env="{SOAP12_NS}">'
        fault_open = f"<{p}:Fault>"
        lang = lang or "fr"
        erreur_attrs = f'code="{_attr(detail_code)}"'
        if message_id:
            erreur_attrs += f' messageID="{_attr(message_id)}"'
        erreur_attrs += f' severite="{_attr(severite)}"'
    else:
        p = "S"
        body_open = f'<env:Body xmlns:S="{SOAP12_NS}" xmlns:env="{SOAP12_NS}">'
        fault_open = f'<{p}:Fault xmlns:ns4="{SOAP11_NS}">'
        lang = lang or "en"
        erreur_attrs = f'severite="{_attr(severite)}" code="{_attr(detail_code)}"'  # no messageID, as captured
    text = (
        f'<soap:Envelope xmlns:soap="{SOAP12_NS}">{body_open}{fault_open}'
        f"<{p}:Code><{p}:Value>{p}:{code}</{p}:Value>"
        f"<{p}:Subcode><{p}:Value>{p}:{subcode}</{p}:Value></{p}:Subcode></{p}:Code>"
        f'<{p}:Reason><{p}:Text xml:lang="{_attr(lang)}">{escape_text(reason)}</{p}:Text></{p}:Reason>'
        f'<{p}:Detail><siram:Erreur {erreur_attrs} xmlns:siram="{NS_SIRAM}">{escape_text(detail)}</siram:Erreur>'
        f"</{p}:Detail></{p}:Fault></env:Body></soap:Envelope>"
    )
    return _DECL + text.encode("utf-8")


_RESULT_OPEN = (f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{SOAP12_NS}">'
                f'<env:Body xmlns:S="{SOAP12_NS}" xmlns:env="{SOAP12_NS}">').encode()
_RESULT_CLOSE = b"</env:Body></soap:Envelope>"


def result_envelope(body_xml: bytes) -> bytes:
    """A successful answer: the body element (already serialised, declaring its own namespaces) in the real
    envelope, without any SOAP Header."""
    return b"".join((_RESULT_OPEN, body_xml, _RESULT_CLOSE))
