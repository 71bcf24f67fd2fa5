"""The simulators the bench knows, their default addresses, and which of them exist yet.

Default ports are part of the bench's contract (later services, the reference LGC, docker-compose
and vendors' configurations rely on them); everything stays configurable.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from .core.service import ServiceSpec

TLS_PORT_OFFSET = 300  # each simulator's TLS port is its HTTP port + 300 (INSi 8101 → 8401)


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    title: str
    port: int
    base_path: str = ""
    extra_ports: tuple[tuple[str, int], ...] = ()
    # Host names under which LGCs reach the real service in qualification (or, where no test host is public,
    # in production): the simulator's server certificate covers them, `segur-bench hosts` maps them to the bench.
    # Sources: docs/vendor-guide.md ("Host names").
    real_hosts: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return f"simulators.{self.name}.app"

    @property
    def tls_port(self) -> int:
        return self.port + TLS_PORT_OFFSET


SERVICES: dict[str, ServiceInfo] = {
    s.name: s
    for s in (
        ServiceInfo("insi", "INSi — identité nationale de santé", 8101, "/lps",
                    real_hosts=("qualiflps-services-ps-tlsm.ameli.fr", "qualiflps.services-ps.ameli.fr")),
        ServiceInfo("dmp", "DMP / Mon espace santé", 8102, "/si-dmp-server/v2/services",
                    real_hosts=("dev9.lps2.dmp.gouv.fr", "formation1.lps2.dmp.gouv.fr", "formation2.lps2.dmp.gouv.fr",
                                "formation3.lps2.dmp.gouv.fr", "formation5.lps2.dmp.gouv.fr")),
        ServiceInfo("on", "Ordonnance numérique", 8103, "/eprescription"),
        ServiceInfo("psc", "Pro Santé Connect", 8104, "/auth/realms/esante-wallet",
                    real_hosts=("auth.bas.psc.esante.gouv.fr", "wallet.bas.psc.esante.gouv.fr")),
        ServiceInfo("apcv", "Appli carte Vitale", 8105, "/apcv"),
        ServiceInfo("annuaire", "Annuaire santé", 8106, "/fhir/v2", real_hosts=("gateway.api.esante.gouv.fr",)),
        ServiceInfo("mss", "MSSanté", 8107, "", (("smtp", 2587), ("imap", 2143), ("smtps", 2465), ("imaps", 2993)),
                    real_hosts=("medecin.formation.mssante.fr",)),
    )
}

REFERENCE_LGC_PORT = 8000


class UnknownService(LookupError):
    pass


def info(name: str) -> ServiceInfo:
    try:
        return SERVICES[name]
    except KeyError:
        raise UnknownService(f"unknown simulator {name!r}; known: {', '.join(SERVICES)}") from None


def exists(name: str) -> bool:
    """True when the service's package has been written (services arrive one issue at a time)."""
    module = info(name).module
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the service's package itself is not there yet
        return False


def available() -> list[ServiceInfo]:
    return [s for s in SERVICES.values() if exists(s.name)]


def load_spec(name: str) -> ServiceSpec:
    svc = info(name)
    if not exists(name):
        raise UnknownService(f"the {name} simulator is not available in this version of segur-bench")
    spec = importlib.import_module(svc.module).SPEC
    if not isinstance(spec, ServiceSpec):
        raise TypeError(f"{svc.module}.SPEC is not a ServiceSpec")
    return spec
