"""Named incident profiles: human-readable TOML files grouping fault rules across services.

    title = "Latence réseau de 3 secondes"
    description = "…"

    [[rule]]
    service = "*"                 # or "insi", or ["dmp", "on"]
    effect = { type = "latency", ms = 3000 }

Each service applies the rules that concern it, tagged with the incident name, so that clearing
an incident removes exactly its rules.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class IncidentError(ValueError):
    pass


@dataclass(frozen=True)
class Incident:
    name: str
    title: str
    description: str
    rules: list[dict] = field(default_factory=list)
    path: Path | None = None

    def rules_for(self, service: str) -> list[dict]:
        out = []
        for rule in self.rules:
            target = rule.get("service", "*")
            targets = [target] if isinstance(target, str) else list(target)
            if "*" in targets or service in targets:
                out.append(dict(rule))
        return out

    def services(self) -> set[str]:
        names: set[str] = set()
        for rule in self.rules:
            target = rule.get("service", "*")
            names.update([target] if isinstance(target, str) else target)
        return names

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description,
                "rules": self.rules, "services": sorted(self.services())}


def default_incidents_dir() -> Path:
    env = os.environ.get("SEGUR_BENCH_INCIDENTS")
    if env:
        return Path(env)
    local = Path.cwd() / "scenarios" / "incidents"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "scenarios" / "incidents"


def load_incident(path: Path) -> Incident:
    name = path.stem
    if not NAME_RE.match(name):
        raise IncidentError(f"{path.name}: incident names are lower-case words joined by hyphens")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise IncidentError(f"{path}: not valid TOML: {exc}") from None
    title = data.get("title")
    if not isinstance(title, str) or not title:
        raise IncidentError(f"{path}: missing 'title'")
    rules = data.get("rule", [])
    if not isinstance(rules, list) or not rules or not all(isinstance(r, dict) for r in rules):
        raise IncidentError(f"{path}: an incident needs at least one [[rule]] table")
    unknown = set(data) - {"title", "description", "rule"}
    if unknown:
        raise IncidentError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    return Incident(name, title, str(data.get("description", "")).strip(), rules, path)


class IncidentCatalog:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_incidents_dir()

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.toml"))

    def all(self) -> list[Incident]:
        return [self.get(n) for n in self.names()]

    def get(self, name: str) -> Incident:
        if not NAME_RE.match(name or ""):
            raise IncidentError(f"invalid incident name {name!r}")
        path = self.directory / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise IncidentError(f"unknown incident {name!r} (known: {known}; directory {self.directory})")
        return load_incident(path)
