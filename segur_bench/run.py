"""`segur-bench run`: start the bench (simulators, network layer, reference LGC per scenario), run the selected
REM scenarios with pytest-bdd, and leave one proof bundle per scenario run plus JUnit XML (and Allure results)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from simulators.registry import SERVICES

from .config import BenchConfig
from .supervisor import StartError, Supervisor, port_free

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ROOT / "scenarios" / "features"
TAG = re.compile(r"@exigence=(\S+)")
PROXIED = ("insi", "apcv", "dmp", "on", "annuaire")  # HTTP services the LGC reaches through the network layer


class RunError(RuntimeError):
    pass


@dataclass(frozen=True)
class Feature:
    path: Path
    requirement: str
    title: str


def features() -> list[Feature]:
    out = []
    for path in sorted(FEATURES.glob("*.feature")):
        text = path.read_text(encoding="utf-8")
        tag = TAG.search(text)
        heads = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.strip().startswith("Fonctionnalité")]
        title = heads[0] if heads else path.stem
        out.append(Feature(path, tag.group(1) if tag else path.stem, title))
    return out


def select(ids: tuple[str, ...], run_all: bool) -> list[Feature]:
    known = features()
    if run_all or not ids:
        return known
    chosen = []
    for ident in ids:
        match = [f for f in known if ident in (f.requirement, f.path.stem, f.path.name)]
        if not match:
            listing = ", ".join(f.requirement for f in known)
            raise RunError(f"unknown scenario {ident!r}; known requirement ids: {listing}")
        chosen += [m for m in match if m not in chosen]
    return chosen


def run(config: BenchConfig, ids: tuple[str, ...], *, run_all: bool, against: str, driver: str, out: Path,
        running: bool, operator: str = "human", echo=print) -> int:
    chosen = select(ids, run_all)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundles.txt").unlink(missing_ok=True)
    echo(f"scenarios: {', '.join(f.requirement for f in chosen)}")
    supervisor = None
    layer = None
    try:
        if not running:
            busy = [s for s in SERVICES if not port_free(config.host, config.ports[s])]
            if busy:
                raise RunError(f"ports of {', '.join(busy)} are in use: a bench is already running? Use --running to "
                               "run against it, or stop it")
            config.data_dir = out / ".bench-data"
            supervisor = Supervisor(config, list(SERVICES.values()), log_dir=out / "logs")
            supervisor.start(progress=lambda m: echo(m))
        sims = {s: config.url(s) for s in SERVICES}
        layer, network = _network_layer(config, out, echo)
        env = _bench_env(config, sims, layer, network, out, against, driver)
        env.operator = operator
        if against != "reference":
            echo("configure your LGC with these endpoints (through the network layer when present):")
            for name, spec in env.lgc_settings["services"].items():
                extra = " ".join(f"{k}={v}" for k, v in (spec.get("extra") or {}).items())
                echo(f"  {name:<9} {spec['url']} {extra}".rstrip())
            echo(f"  psc       {env.psc_issuer}")
        env_path = out / "scenario-env.json"
        env.save(env_path)
        cmd = [sys.executable, "-m", "pytest", str(ROOT / "scenarios" / "test_scenarios.py"), "-p", "no:cacheprovider",
               "-o", "console_output_style=classic", "-o", "timeout=900", "--rootdir", str(ROOT), "-v",
               f"--junitxml={out / 'junit.xml'}"]
        if importlib.util.find_spec("allure_pytest_bdd"):
            cmd += [f"--alluredir={out / 'allure-results'}"]
        child_env = dict(os.environ, SEGUR_BENCH_SCENARIO_ENV=str(env_path),
                         SEGUR_BENCH_FEATURES=",".join(f.path.name for f in chosen))
        started = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT, env=child_env)
        wall = time.monotonic() - started
        echo(f"\nscenarios finished in {wall:.1f} s (exit code {code}); JUnit: {out / 'junit.xml'}")
        bundles = (out / "bundles.txt").read_text(encoding="utf-8").splitlines() if (out / "bundles.txt").exists() \
            else []
        for line in bundles:
            req, path = line.split("\t", 1)
            echo(f"proof bundle {req}: {path}")
        if not bundles:
            echo("no proof bundle was written (see the output above)")
        return code
    except StartError as exc:
        raise RunError(str(exc)) from None
    finally:
        if layer is not None:
            layer.stop()
        if supervisor is not None:
            supervisor.stop()


def _network_layer(config: BenchConfig, out: Path, echo) -> tuple[object | None, dict]:
    """mitmdump in front of the simulators the LGC calls (its own venv); without it, latency is injected by the
    simulators themselves (fault rules), which the bundle says."""
    try:
        from network_proxy.layer import NetworkLayer, bench_targets, ensure_venv
    except ImportError:
        echo("network layer not available: latency will be injected by the simulators themselves")
        return None, {"mode": "faults"}
    try:
        ensure_venv()
        control = out / "network"
        targets = bench_targets(config, [*PROXIED, "mss"])
        # Fixed ports (simulator port + 1000) so a vendor's LGC can be configured once to go through the layer.
        ports = {name: config.ports[name] + 1000 for name in [*PROXIED, "mss"]}
        mss = config.settings.get("mss", {})
        ports.update({"mss-smtp": int(mss.get("smtp_port", 2587)) + 1000,
                      "mss-imap": int(mss.get("imap_port", 2143)) + 1000})
        layer = NetworkLayer(targets, ports=ports, har_path=control / "network.har", control_dir=control)
        layer.start()
    except Exception as exc:  # no PyPI, mitmdump fails…: the run goes on with in-simulator latency
        echo(f"network layer unavailable ({exc}); latency will be injected by the simulators themselves")
        return None, {"mode": "faults"}
    echo("network layer (mitmdump) in front of: " + ", ".join([*PROXIED, "mss (SMTP, IMAP)"]))
    return layer, {"mode": "proxy", "control_file": str(layer.control_path), "har": str(control / "network.har")}


def _bench_env(config: BenchConfig, sims: dict[str, str], layer: object | None, network: dict, out: Path,
               against: str, driver: str):
    from importlib.metadata import version

    from scenarios.runtime import BenchEnv

    urls = layer.urls() if layer is not None else {}  # type: ignore[attr-defined]
    services = {}
    for name in ("insi", "apcv", "dmp", "on", "annuaire", "mss"):
        base = urls.get(name) or sims[name]
        services[name] = {"url": base + SERVICES[name].base_path, "timeout": 15 if name != "on" else 8,
                          "retries": 0}
    mss = config.settings.get("mss", {})
    ports = {"smtp_port": str(mss.get("smtp_port", 2587)), "imap_port": str(mss.get("imap_port", 2143))}
    if layer is not None:  # SMTP and IMAP through the proxy too (latency once per connection)
        addresses = layer.addresses()  # type: ignore[attr-defined]
        ports = {"smtp_port": str(addresses["mss-smtp"][1]), "imap_port": str(addresses["mss-imap"][1])}
    services["mss"]["extra"] = ports
    return BenchEnv(sims=sims, out_dir=str(out), against=against, driver=driver, network=network,
                    psc_issuer=sims["psc"] + SERVICES["psc"].base_path, bench_version=version("segur-bench"),
                    lgc_settings={"services": services, "psc_issuer": sims["psc"] + SERVICES["psc"].base_path,
                                  "dmp_defer_seconds": 2})
