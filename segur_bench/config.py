"""Bench-wide settings: where each simulator listens, where state and incidents live.

Defaults are the documented addresses (127.0.0.1, INSi 8101 … MSSanté 8107); an optional TOML file
overrides them:

    host = "127.0.0.1"
    data_dir = ".segur-bench/data"
    pki_dir = "/srv/bench-pki"   # the bench PKI, when not <data_dir>/pki (one CA for several data directories)
    workers = 2
    lgc_port = 8000   # the reference LGC `up` starts (its settings are generated from these)
    console_port = 8090   # the trainers' console `up` starts (console/README.md)
    tls = true        # each HTTP simulator also serves TLS on its TLS port (HTTP port + 300)
    tls_names = ["bench.example.lan"]   # more names for the server certificates (a LAN name of this machine)
    front_port = 443  # the HTTPS front door (routes by SNI; see `segur-bench hosts`); 0: none
    authorised_idam = ["BENCH-LGC-0001", "<your CNDA number>"]  # IDAMs INSi, ApCV and ON accept
    [ports]
    insi = 9101
    [tls_ports]
    insi = 9401
    [urls]            # where clients reach a service, e.g. through the network proxy
    insi = "http://127.0.0.1:9201"
    [settings.mss]    # service switches (each service README lists its own)
    strict = true
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from simulators.core.teleservice import DEFAULT_AUTHORISED_IDAM
from simulators.registry import REFERENCE_LGC_PORT, SERVICES

TELESERVICES = ("insi", "apcv", "on")  # the SOAP teleservices that check the software's IDAM

DEFAULT_CONFIG_FILE = "segur-bench.toml"
DEFAULT_FRONT_PORT = 443
DEFAULT_CONSOLE_PORT = 8090
TOKEN_FILE = "control-token"
TOKEN_ENV = "SEGUR_BENCH_CONTROL_TOKEN"  # the control token, for a client that has no access to the data directory
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigError(ValueError):
    pass


@dataclass
class BenchConfig:
    host: str = "127.0.0.1"
    data_dir: Path = Path(".segur-bench/data")
    workers: int = 2
    incidents_dir: Path | None = None
    ports: dict[str, int] = field(default_factory=lambda: {name: s.port for name, s in SERVICES.items()})
    urls: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict] = field(default_factory=dict)
    # Software authorisation numbers (CNDA IDAM) the teleservices accept, bench-wide; None = their defaults
    authorised_idam: list[str] | None = None
    lgc_port: int = REFERENCE_LGC_PORT  # the reference LGC started by `up`
    console_port: int = DEFAULT_CONSOLE_PORT  # the trainers' console started by `up`
    tls: bool = True
    tls_ports: dict[str, int] = field(default_factory=lambda: {name: s.tls_port for name, s in SERVICES.items()})
    tls_names: list[str] = field(default_factory=list)
    front_port: int = DEFAULT_FRONT_PORT
    pki: Path | None = None  # the bench PKI's directory when it is not <data_dir>/pki (settings key pki_dir)
    path: Path | None = None  # the file these settings came from, handed to child processes

    def url(self, service: str) -> str:
        return self.urls.get(service) or f"http://{self.client_host}:{self.ports[service]}"

    def tls_url(self, service: str) -> str:
        """Where the service's TLS port is reached on this machine (None-safe: only for services with TLS)."""
        return f"https://{self.client_host}:{self.tls_ports[service]}"

    def service_settings(self, name: str) -> dict:
        """The settings a simulator starts with: its [settings.<name>] table, plus the bench-wide
        authorised_idam for the teleservices (unless their table sets their own)."""
        settings = dict(self.settings.get(name, {}))
        if self.authorised_idam and name in TELESERVICES:
            settings.setdefault("authorised_idam", list(self.authorised_idam))
        return settings

    def accepted_idam(self, name: str) -> list[str]:
        """The software authorisation numbers a teleservice accepts with these settings."""
        return list(self.service_settings(name).get("authorised_idam") or DEFAULT_AUTHORISED_IDAM)

    def psc_issuer(self) -> str:
        """Pro Santé Connect's issuer as clients and tokens know it: its public URL when set, else its HTTPS port
        when the bench serves TLS (a real issuer is HTTPS), else its HTTP port."""
        base = SERVICES["psc"].base_path
        if self.urls.get("psc"):
            return self.urls["psc"].rstrip("/") + base
        return (self.tls_url("psc") if self.tls else self.url("psc")) + base

    def psc_jwks_url(self) -> str:
        """Where the simulators that check PSC tokens fetch its keys: the back channel, straight to its HTTP port
        (the split horizon: browsers and LGCs use the issuer's public URL, simulators the internal address)."""
        return f"http://{self.client_host}:{self.ports['psc']}{SERVICES['psc'].base_path}/protocol/openid-connect/certs"

    @property
    def client_host(self) -> str:
        """The address clients on this machine use: a wildcard bind is reached on loopback."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"[{host}]" if ":" in host else host

    @property
    def lan(self) -> bool:
        """True when the bench listens beyond loopback (the control API then wants its token)."""
        return self.host not in LOOPBACK_HOSTS

    @property
    def pki_dir(self) -> Path:
        return self.pki or self.data_dir / "pki"

    def control_headers(self) -> dict[str, str]:
        """What the bench's own clients (CLI, scenario runs) send to the control API: the token when there is one."""
        token = os.environ.get(TOKEN_ENV) or control_token(self.data_dir, create=False)
        return {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def load(cls, path: Path | None = None) -> BenchConfig:
        cfg = cls()
        if path is None:
            env = os.environ.get("SEGUR_BENCH_CONFIG")
            path = Path(env) if env else Path(DEFAULT_CONFIG_FILE)
            if not path.is_file():
                return cfg
        elif not path.is_file():
            raise ConfigError(f"configuration file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        cfg.path = path.resolve()
        unknown = set(data) - {"host", "data_dir", "workers", "incidents_dir", "ports", "urls", "settings", "lgc_port",
                               "tls", "tls_ports", "tls_names", "front_port", "pki_dir", "authorised_idam",
                               "console_port"}
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}")
        cfg.host = str(data.get("host", cfg.host))
        if "data_dir" in data:
            cfg.data_dir = Path(data["data_dir"])
        if "incidents_dir" in data:
            cfg.incidents_dir = Path(data["incidents_dir"])
        if "pki_dir" in data:
            cfg.pki = Path(data["pki_dir"])
        workers = data.get("workers", cfg.workers)
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"{path}: workers must be a positive integer")
        cfg.workers = workers
        for section in ("ports", "urls", "tls_ports"):
            values = data.get(section, {})
            bad = set(values) - set(SERVICES)
            if bad:
                raise ConfigError(f"{path}: [{section}] names unknown service(s) {sorted(bad)}")
            getattr(cfg, section).update(values)
        settings = data.get("settings", {})
        bad = set(settings) - set(SERVICES)
        if bad or not all(isinstance(v, dict) for v in settings.values()):
            raise ConfigError(f"{path}: [settings.<service>] tables must name known services, got {sorted(settings)}")
        cfg.settings = {name: dict(values) for name, values in settings.items()}
        cfg.lgc_port = data.get("lgc_port", cfg.lgc_port)
        cfg.console_port = data.get("console_port", cfg.console_port)
        if "authorised_idam" in data:
            idam = data["authorised_idam"]
            if not isinstance(idam, list) or not idam or not all(isinstance(i, str) and i.strip() for i in idam):
                raise ConfigError(f"{path}: authorised_idam must be a non-empty list of software authorisation "
                                  "numbers (IDAM), e.g. [\"BENCH-LGC-0001\", \"<your CNDA number>\"]")
            cfg.authorised_idam = [i.strip() for i in idam]
        if not isinstance(data.get("tls", True), bool):
            raise ConfigError(f"{path}: tls must be true or false")
        cfg.tls = data.get("tls", True)
        names = data.get("tls_names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"{path}: tls_names must be a list of host names or addresses")
        cfg.tls_names = [n.strip() for n in names]
        cfg.front_port = data.get("front_port", cfg.front_port)
        if not isinstance(cfg.front_port, int) or not 0 <= cfg.front_port < 65536:
            raise ConfigError(f"{path}: front_port must be an integer between 0 (no front door) and 65535")
        for name, port in [*cfg.ports.items(), *((f"{k} (tls_ports)", v) for k, v in cfg.tls_ports.items()),
                           ("the reference LGC (lgc_port)", cfg.lgc_port),
                           ("the console (console_port)", cfg.console_port)]:
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"{path}: port of {name} must be an integer between 1 and 65535")
        return cfg


def control_token(data_dir: Path, *, create: bool) -> str | None:
    """The control-plane token of a data directory (created, 0600, when asked): the CLI and scenario runs read it
    here; a person gets it printed once by `segur-bench up`."""
    path = data_dir / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    if not create:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text(encoding="utf-8").strip() or None
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token
