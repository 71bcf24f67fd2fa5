"""Where a client reaches each service of the bench: the `up` table, `segur-bench endpoints --json`, and the
lines `segur-bench hosts` prints. One description, three views."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators import registry

from .config import BenchConfig

FRONT_DOOR_FILE = "front-door.json"


@dataclass
class Endpoint:
    service: str
    title: str
    http: str  # base URL of the service over plain HTTP (its base path included)
    https: str | None  # the same over TLS (the simulator's TLS port), None when TLS is off
    client_cert: str  # required | optional | off (what the TLS port asks for)
    real_hosts: list[str] = field(default_factory=list)  # names a hosts file may map to the bench
    front_door: list[str] = field(default_factory=list)  # URLs under the real names, through the front door
    other: dict[str, str] = field(default_factory=dict)  # e.g. SMTP/IMAP host:port
    control: str = ""  # root of its control API (`<control>/_bench/…`): the simulator's own HTTP port, never proxied

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def client_cert_mode(config: BenchConfig, service: str) -> str:
    try:
        return registry.load_spec(service).client_cert_mode(config.settings.get(service, {}))
    except (registry.UnknownService, ValueError):
        return "off"


def endpoints(config: BenchConfig, services: list[registry.ServiceInfo] | None = None, *,
              front_port: int | None = None) -> list[Endpoint]:
    out = []
    for svc in services or registry.available():
        base = svc.base_path
        https = config.tls_url(svc.name) + base if config.tls else None
        port_part = "" if front_port in (None, 0, 443) else f":{front_port}"
        front = [f"https://{h}{port_part}{base}" for h in svc.real_hosts] if config.tls and front_port else []
        other = {}
        mss = config.settings.get(svc.name, {})
        for label, port in svc.extra_ports:
            other[label] = f"{config.client_host}:{mss.get(f'{label}_port', port)}"
        out.append(Endpoint(svc.name, svc.title, config.url(svc.name) + base, https,
                            client_cert_mode(config, svc.name) if config.tls else "off",
                            list(svc.real_hosts), front, other,
                            f"http://{config.client_host}:{config.ports[svc.name]}"))
    return out


def as_json(config: BenchConfig, eps: list[Endpoint], *, front_port: int | None, lgc_url: str | None,
            console_url: str | None = None) -> dict:
    pki = config.pki_dir.resolve()
    return {
        "host": config.host,
        "data_dir": str(config.data_dir.resolve()),
        "ca": str(pki / "ca-chain.pem") if config.tls else None,
        "crl": str(pki / "crl.pem") if config.tls else None,
        "front_door": {"port": front_port} if front_port else None,
        "control_token_file": str((config.data_dir / "control-token").resolve()) if config.lan else None,
        "reference_lgc": lgc_url,
        "console": console_url,  # the trainers' console (console/README.md)
        "services": {e.service: e.as_dict() for e in eps},
    }


def front_door_routes(config: BenchConfig, services: list[registry.ServiceInfo]) -> tuple[dict, dict]:
    """(names → service, service → (host, TLS port)) for the front door, straight to the simulators."""
    names: dict[str, str] = {}
    targets: dict[str, tuple[str, int]] = {}
    host = config.client_host.strip("[]")
    for svc in services:
        for name in (*svc.real_hosts, f"{svc.name}.segur-bench.test"):
            names[name] = svc.name
        targets[svc.name] = (host, config.tls_ports[svc.name])
    return names, targets


def hosts_lines(address: str, services: list[registry.ServiceInfo]) -> list[str]:
    """hosts-file lines mapping every real host name to `address` (one line per service, with a comment)."""
    lines = []
    for svc in services:
        names = [*svc.real_hosts, f"{svc.name}.segur-bench.test"]
        lines.append(f"{address}\t{' '.join(names)}\t# segur-bench: {svc.title}")
    return lines


def routes_path(config: BenchConfig) -> Path:
    return config.data_dir / FRONT_DOOR_FILE
