"""The LGC's settings: where each national service is, how long to wait, how often to retry.

Every endpoint comes from here (never from the simulators' code), so the same LGC can point at the bench,
at a proxy in front of it, or at the real sandboxes. Defaults are the bench's loopback addresses. A TOML file
overrides them:

    host = "127.0.0.1"
    port = 8000
    data_dir = ".segur-bench/lgc"
    public_url = "http://127.0.0.1:8000"      # where browsers reach the LGC (PSC redirect URI)
    info_message_days = 180
    service_status_url = "https://…"          # ANS "Météo des services"
    [services.insi]
    url = "http://127.0.0.1:8101/lps"
    timeout = 10          # seconds per attempt
    retries = 1           # extra attempts after a network failure or a 5xx (never after a refusal)
    [psc]
    issuer = "http://127.0.0.1:8104/auth/realms/esante-wallet"
    client_id = "segur-bench-lgc"
    client_secret = "segur-bench-lgc-secret"
    [software]
    idam = "BENCH-LGC-0001"
    [tls]                                   # HTTPS: the CAs trusted and the client certificate presented
    ca_file = "ca-chain.pem"
    cert_file = "lgc-structure.crt"
    key_file = "lgc-structure.key"
    [services.insi.tls]                     # per service, over [tls] (INSi's mutual TLS wants INSI-AUTO)
    cert_file = "lgc-insi.crt"
    key_file = "lgc-insi.key"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .services.context import Endpoint, Software
from .services.transport import TLS_KEYS, TlsSettings

SERVICES: dict[str, tuple[str, str]] = {
    # name: (French label, default URL)
    "insi": ("INSi", "http://127.0.0.1:8101/lps"),
    "dmp": ("DMP", "http://127.0.0.1:8102/si-dmp-server/v2/services"),
    "on": ("Ordonnance numérique", "http://127.0.0.1:8103/eprescription"),
    "apcv": ("Appli carte Vitale", "http://127.0.0.1:8105/apcv"),
    "annuaire": ("Annuaire santé", "http://127.0.0.1:8106/fhir/v2"),
    "mss": ("MSSanté", "http://127.0.0.1:8107"),
    "psc": ("Pro Santé Connect", "http://127.0.0.1:8104/auth/realms/esante-wallet"),
}
# Service-specific defaults (endpoint.extra). MSSanté's STARTTLS is verified against [tls] ca_file (the bench CA
# for the bench); extra.tls_verify = "false" turns verification off (never against a real operator).
DEFAULT_EXTRA: dict[str, dict[str, str]] = {
    "mss": {"smtp_port": "2587", "imap_port": "2143", "sasl": "XOAUTH2"},
    "annuaire": {"api_key": "segur-bench-annuaire"},
}
# The address of the ANS "Météo des services" is not in our sources: it is a setting.
DEFAULT_STATUS_URL = "https://esante.gouv.fr/"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServiceSettings:
    url: str
    timeout: float = 10.0
    retries: int = 1
    extra: dict[str, str] = field(default_factory=dict)
    tls: TlsSettings = field(default_factory=TlsSettings)

    def endpoint(self) -> Endpoint:
        return Endpoint(url=self.url, timeout=self.timeout, extra=dict(self.extra), tls=self.tls)


@dataclass(frozen=True)
class PscSettings:
    issuer: str = SERVICES["psc"][1]
    client_id: str = "segur-bench-lgc"
    client_secret: str = "segur-bench-lgc-secret"
    scope: str = "openid scope_all"
    acr_values: str = "eidas1"


@dataclass(frozen=True)
class LgcConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".segur-bench/lgc")
    public_url: str = ""
    info_message_days: int = 180
    service_status_url: str = DEFAULT_STATUS_URL
    call_workers: int = 16  # threads running national-service calls (off the request threads)
    dmp_defer_seconds: float = 30.0  # validated documents wait this long in the outbox (hold or cancel meanwhile)
    # What a prescription goes to the DMP as: "N3", the "Prescription médicaments structurée" profile (the CDA R2
    # N3 with its PDF copy section, SC.ORDN/CONF.06, SC.CDA/DD.21), or "N1" (the PDF in a CDA R2 N1).
    dmp_prescription_level: str = "N3"
    services: dict[str, ServiceSettings] = field(default_factory=dict)
    psc: PscSettings = field(default_factory=PscSettings)
    software: Software = field(default_factory=lambda: Software(version=__version__))
    tls: TlsSettings = field(default_factory=TlsSettings)  # [tls]: every service's, unless its own overrides
    demo_data: bool = True
    path: Path | None = None

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def service(self, name: str) -> ServiceSettings:
        settings = self.services.get(name) or ServiceSettings(url=SERVICES[name][1], tls=self.tls)
        extra = {**DEFAULT_EXTRA.get(name, {}), **settings.extra}
        return replace(settings, extra=extra)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> LgcConfig:
        data: dict[str, Any] = {}
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"configuration file not found: {path}")
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, path=path, **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: Path | None = None, **overrides: Any) -> LgcConfig:
        where = str(path) if path else "configuration"
        known = {"host", "port", "data_dir", "public_url", "info_message_days", "service_status_url",
                 "call_workers", "services", "psc", "software", "demo_data", "dmp_defer_seconds", "tls",
                 "dmp_prescription_level"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}")
        tls_base = _tls(data.get("tls") or {}, {}, where, "[tls]")
        services: dict[str, ServiceSettings] = {}
        for name, spec in (data.get("services") or {}).items():
            if name not in SERVICES:
                raise ConfigError(f"{where}: [services.{name}] is not a known service ({', '.join(SERVICES)})")
            spec = dict(spec)
            bad = set(spec) - {"url", "timeout", "retries", "extra", "tls"}
            if bad:
                raise ConfigError(f"{where}: [services.{name}] unknown key(s) {sorted(bad)}")
            timeout, retries = spec.get("timeout", 10.0), spec.get("retries", 1)
            if not isinstance(timeout, int | float) or timeout <= 0:
                raise ConfigError(f"{where}: [services.{name}] timeout must be a positive number of seconds")
            if not isinstance(retries, int) or retries < 0:
                raise ConfigError(f"{where}: [services.{name}] retries must be a non-negative integer")
            services[name] = ServiceSettings(url=str(spec.get("url", SERVICES[name][1])), timeout=float(timeout),
                                             retries=retries, extra={k: str(v) for k, v in
                                                                     (spec.get("extra") or {}).items()},
                                             tls=_tls(spec.get("tls") or {}, tls_base.__dict__, where,
                                                      f"[services.{name}.tls]"))
        psc = PscSettings(**(data.get("psc") or {}))
        software = replace(Software(version=__version__), **(data.get("software") or {}))
        kwargs: dict[str, Any] = {k: data[k] for k in ("host", "port", "public_url", "info_message_days",
                                                      "service_status_url", "call_workers", "demo_data",
                                                      "dmp_defer_seconds", "dmp_prescription_level") if k in data}
        if kwargs.get("dmp_prescription_level", "N3") not in ("N1", "N3"):
            raise ConfigError(f"{where}: dmp_prescription_level must be \"N3\" (ordonnance structurée) or \"N1\"")
        if "data_dir" in data:
            kwargs["data_dir"] = Path(data["data_dir"])
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(services=services, psc=psc, software=software, path=path, tls=tls_base, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _tls(values: Any, base: dict[str, Any], where: str, section: str) -> TlsSettings:
    """A TLS section over `base` (the [tls] values): paths checked now, so a typo is reported at start-up."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {section} must be a table")
    bad = set(values) - set(TLS_KEYS)
    if bad:
        raise ConfigError(f"{where}: {section} unknown key(s) {sorted(bad)}; known: {', '.join(TLS_KEYS)}")
    merged = {**base, **values}
    for key in ("ca_file", "cert_file", "key_file"):
        if merged.get(key) and not Path(merged[key]).is_file():
            raise ConfigError(f"{where}: {section} {key} = {merged[key]!r}: no such file")
    if not isinstance(merged.get("verify", True), bool):
        raise ConfigError(f"{where}: {section} verify must be true or false")
    return TlsSettings(**{k: merged[k] for k in TLS_KEYS if k in merged})
