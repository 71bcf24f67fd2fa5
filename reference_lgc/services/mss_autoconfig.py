"""MSSanté mailbox auto-configuration (SC.MSS/CONF.04): the operator publishes its servers in a Thunderbird-style
document (``/.well-known/autoconfig/mail/config-v1.1.xml``, clientConfig 1.1); the LGC reads it before its first
connection and takes the SMTP submission and IMAP servers it can use — STARTTLS and OAuth2 (the PSC token), as
the LGC's MSSanté client speaks them — instead of hosts and ports typed by hand."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from lxml import etree

from .context import Endpoint, ServiceRefused, ServiceUnavailable
from .transport import http_client, network_reason

SERVICE = "MSSanté"
WELL_KNOWN = "/.well-known/autoconfig/mail/config-v1.1.xml"
MAX_BYTES = 256 * 1024
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True)
class MailServers:
    smtp_host: str
    smtp_port: int
    imap_host: str
    imap_port: int
    source: str  # the document's URL

    def as_extra(self) -> dict[str, str]:
        return {"smtp_host": self.smtp_host, "smtp_port": str(self.smtp_port), "imap_host": self.imap_host,
                "imap_port": str(self.imap_port)}


def autoconfig_url(endpoint: Endpoint) -> str:
    """Where the operator's document is: ``extra["autoconfig_url"]``, else the well-known path of the service."""
    given = endpoint.extra.get("autoconfig_url", "").strip()
    if given:
        return given
    parts = urlsplit(endpoint.url)
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}"


def fetch(endpoint: Endpoint) -> MailServers:
    url = autoconfig_url(endpoint)
    try:
        with http_client(endpoint.tls, timeout=endpoint.timeout, headers=endpoint.headers) as http:
            resp = http.get(url, headers={"Accept": "application/xml, text/xml"})
    except httpx.TimeoutException:
        raise ServiceUnavailable(f"{SERVICE} : la configuration automatique n'a pas répondu en "
                                 f"{endpoint.timeout:g} s", code="timeout") from None
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"{SERVICE} : configuration automatique injoignable ({network_reason(exc)})",
                                 code="reseau") from None
    if resp.status_code >= 500:
        raise ServiceUnavailable(f"{SERVICE} : configuration automatique indisponible (HTTP {resp.status_code})",
                                 code=f"HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise ServiceRefused(f"{SERVICE} : pas de configuration automatique à {url} (HTTP {resp.status_code})",
                             code=f"HTTP {resp.status_code}")
    return parse(resp.content, url)


def parse(data: bytes, source: str = "") -> MailServers:
    """The STARTTLS + OAuth2 IMAP and SMTP servers of a clientConfig document; ServiceRefused (in French) when it
    is unreadable or offers none the LGC can use."""
    if len(data) > MAX_BYTES:
        raise ServiceRefused(f"{SERVICE} : document de configuration automatique trop volumineux", code="format")
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ServiceRefused(f"{SERVICE} : document de configuration automatique illisible ({exc})",
                             code="format") from None
    if etree.QName(root).localname != "clientConfig":
        raise ServiceRefused(f"{SERVICE} : document de configuration automatique inattendu "
                             f"(<{etree.QName(root).localname}>, attendu <clientConfig>)", code="format")
    found: dict[str, tuple[str, int]] = {}
    for server in root.iter("{*}incomingServer", "{*}outgoingServer"):
        kind = server.get("type", "").lower()
        if kind not in ("imap", "smtp") or kind in found:
            continue
        host = (server.findtext("{*}hostname") or "").strip()
        port = (server.findtext("{*}port") or "").strip()
        socket = (server.findtext("{*}socketType") or "").strip().upper()
        auths = {(a.text or "").strip().lower() for a in server.iterfind("{*}authentication")}
        if host and port.isdigit() and 0 < int(port) < 65536 and socket == "STARTTLS" and "oauth2" in auths:
            found[kind] = (host, int(port))
    missing = [k.upper() for k in ("smtp", "imap") if k not in found]
    if missing:
        raise ServiceRefused(f"{SERVICE} : la configuration automatique n'offre pas de serveur "
                             f"{' ni '.join(missing)} en STARTTLS avec OAuth2", code="format")
    return MailServers(found["smtp"][0], found["smtp"][1], found["imap"][0], found["imap"][1], source)
