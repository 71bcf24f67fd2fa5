"""The names under which the bench is reached: what its server certificates cover.

Loopback names always; the machine's own names and addresses when the bench listens beyond loopback (a vendor's
LGC on another computer of the LAN); the compose service names; the names a settings file adds (`tls_names`);
and, for server certificates, the real qualification host names of each service (registry.py), so a vendor can
map them to the bench in a hosts file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from simulators.registry import SERVICES

from .config import LOOPBACK_HOSTS, BenchConfig, control_token  # noqa: F401 - re-exported


def machine_names() -> list[str]:
    """This machine's host name, fully qualified name and non-loopback addresses (best effort, no network)."""
    names: list[str] = []
    hostname = socket.gethostname()
    names.append(hostname)
    with contextlib.suppress(OSError):
        names.append(socket.getfqdn())
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(hostname, None):
            names.append(str(info[4][0]))
    # The address of the default route's interface: a UDP "connect" sends nothing.
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere
        names.append(s.getsockname()[0])
    out = []
    for name in names:
        name = name.strip().lower()
        if not name or name in out:
            continue
        with contextlib.suppress(ValueError):
            addr = ipaddress.ip_address(name.split("%")[0])
            if addr.is_loopback or addr.is_unspecified or addr.is_link_local:
                continue
        out.append(name)
    return out


def bench_names(config: BenchConfig) -> list[str]:
    """Names of the bench itself (without the real services' names)."""
    names = list(LOOPBACK_HOSTS)
    if config.host not in ("0.0.0.0", "::", ""):
        names.append(config.host)
    if config.lan:
        names += machine_names()
    names += config.tls_names
    return list(dict.fromkeys(n.lower().strip("[]") for n in names))


def service_names(config: BenchConfig, service: str) -> list[str]:
    """What the server certificate of `service` covers: the bench's names, the compose service name,
    `<service>.localhost` (browsers resolve *.localhost to loopback; docker-compose.yml makes them network aliases),
    and the service's real qualification host names."""
    return list(dict.fromkeys([*bench_names(config), service, f"{service}.localhost", f"{service}.segur-bench.test",
                               *SERVICES[service].real_hosts]))
