"""What every service call needs: who calls (software and professional), where, and how long to wait."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from .transport import TlsSettings, network_reason

if TYPE_CHECKING:
    from .api_psc import ApiAccess


@dataclass(frozen=True)
class Software:
    """The LGC as the teleservices know it (ContexteLPS, VIHF LPS attributes)."""

    name: str = "segur-bench LGC de reference"
    version: str = "0.1.0"
    instance: str = "00000000-0000-4000-8000-000000000000"  # one UUID per installation
    idam: str = "BENCH-LGC-0001"  # CNDA software authorisation number (ContexteLPS/LPS/IDAM)
    editor: str = "segur-bench"
    homologation_dmp: str = "BENCH-DMP-0001"  # DMP LPS homologation number (VIHF)


@dataclass(frozen=True)
class Professional:
    """The logged-in professional: identity from Pro Santé Connect, billing data from the local account."""

    national_id: str  # e.g. "899700366240" (8 + RPPS)
    rpps: str  # 11 digits
    family_name: str
    given_name: str
    profession: str = "10"  # G15 profession code (10 = médecin)
    speciality: str = "SM26"  # savoir-faire (SM26 = qualifié en médecine générale)
    role: str = "10"  # VIHF role = profession code for a médecin
    sector: str = "SA07"  # secteur d'activité (SA07 = cabinet individuel)
    structure_id: str = ""  # identifiant national de structure
    structure_name: str = ""
    billing_id: str = ""  # identifiantFacturation (numéro AM / FINESS de facturation)
    amo_speciality: str = "01"  # codeSpecialiteAMO
    access_token: str | None = None  # PSC access token (bearer, XOAUTH2, token exchange)
    id_token: str | None = None


@dataclass(frozen=True)
class Endpoint:
    url: str
    timeout: float = 10.0  # seconds for the whole exchange
    extra: dict[str, str] = field(default_factory=dict)  # service-specific settings (e.g. mss smtp host)
    tls: TlsSettings = field(default_factory=TlsSettings)  # CAs trusted, client certificate presented
    # Sent with every request to the service: the bench's scenarios acting as "another workstation" name their
    # run with it (X-Bench-Run); the LGC itself sends none.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CallContext:
    software: Software
    professional: Professional
    endpoint: Endpoint
    api: ApiAccess | None = None  # API Pro Santé Connectée: how this call gets its API token (api_psc.py)


class ServiceError(Exception):
    """A call that did not succeed; `reason` is French and shown to the user as is."""

    def __init__(self, reason: str, *, code: str | None = None, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code  # protocol code (SOAP subcode, HTTP status, RegistryError code…)
        self.detail = detail


class ServiceUnavailable(ServiceError):
    """Network failure, timeout, HTTP 5xx or a server-side fault: worth retrying later."""


class ServiceRefused(ServiceError):
    """The service answered and refused (client fault, business error): retrying as is will not help."""


@contextlib.contextmanager
def http_failures(service: str, timeout: float) -> Iterator[None]:
    """An HTTP exchange's transport failures as the LGC shows them: no answer in time, or unreachable and why."""
    try:
        yield
    except httpx.TimeoutException:
        raise ServiceUnavailable(f"pas de réponse du service {service} après {timeout:g} s", code="timeout") from None
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"service {service} injoignable ({network_reason(exc)})", code="network",
                                 detail=str(exc)) from None
