"""Bench-wide settings: where each simulator listens, where state and incidents live.

Defaults are the documented addresses (127.0.0.1, INSi 8101 … MSSanté 8107); an optional TOML file
overrides them:

    host = "127.0.0.1"
    data_dir = ".segur-bench/data"
    workers = 2
    lgc_port = 8000   # the reference LGC `up` starts (its settings are generated from these)
    [ports]
    insi = 9101
    [urls]            # where clients reach a service, e.g. through the network proxy
    insi = "http://127.0.0.1:9201"
    [settings.mss]    # service switches (each service README lists its own)
    strict = true
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from simulators.registry import REFERENCE_LGC_PORT, SERVICES

DEFAULT_CONFIG_FILE = "segur-bench.toml"


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
    lgc_port: int = REFERENCE_LGC_PORT  # the reference LGC started by `up`
    path: Path | None = None  # the file these settings came from, handed to child processes

    def url(self, service: str) -> str:
        return self.urls.get(service) or f"http://{self.host}:{self.ports[service]}"

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
        unknown = set(data) - {"host", "data_dir", "workers", "incidents_dir", "ports", "urls", "settings", "lgc_port"}
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}")
        cfg.host = str(data.get("host", cfg.host))
        if "data_dir" in data:
            cfg.data_dir = Path(data["data_dir"])
        if "incidents_dir" in data:
            cfg.incidents_dir = Path(data["incidents_dir"])
        workers = data.get("workers", cfg.workers)
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"{path}: workers must be a positive integer")
        cfg.workers = workers
        for section in ("ports", "urls"):
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
        for name, port in [*cfg.ports.items(), ("the reference LGC (lgc_port)", cfg.lgc_port)]:
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"{path}: port of {name} must be an integer between 1 and 65535")
        return cfg
