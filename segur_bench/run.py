"""`segur-bench run`: start the bench (simulators, network layer, reference LGC per scenario), run the selected
REM scenarios with pytest-bdd, and leave one proof bundle per scenario run plus JUnit XML (and Allure results)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios.requirements import feature_ids
from simulators.registry import SERVICES

from .config import LOOPBACK_HOSTS, BenchConfig
from .lifeline import dies_with_this_process
from .supervisor import StartError, Supervisor, port_free

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ROOT / "scenarios" / "features"
PROXIED = ("insi", "apcv", "dmp", "on", "annuaire")  # HTTP services the LGC reaches through the network layer


class RunError(RuntimeError):
    pass


@dataclass(frozen=True)
class Feature:
    path: Path
    requirements: tuple[str, ...]  # the ids its tags name, in file order; the first is its primary id
    title: str

    @property
    def requirement(self) -> str:
        return self.requirements[0]


def features() -> list[Feature]:
    out = []
    for path in sorted(FEATURES.glob("*.feature")):
        text = path.read_text(encoding="utf-8")
        ids = feature_ids(path) or (path.stem,)
        heads = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.strip().startswith("Fonctionnalité")]
        title = heads[0] if heads else path.stem
        out.append(Feature(path, ids, title))
    return out


def select(ids: tuple[str, ...], run_all: bool) -> list[Feature]:
    known = features()
    if run_all or not ids:
        return known
    chosen = []
    for ident in ids:
        match = [f for f in known if ident in (*f.requirements, f.path.stem, f.path.name)]
        if not match:
            listing = ", ".join(f.requirement for f in known)
            raise RunError(f"unknown scenario {ident!r}; known requirement ids: {listing}")
        chosen += [m for m in match if m not in chosen]
    return chosen


def run(config: BenchConfig, ids: tuple[str, ...], *, run_all: bool, against: str, driver: str, out: Path,
        running: bool, operator: str = "human", operator_listen: str = "", parallel: int = 1, echo=print) -> int:
    chosen = select(ids, run_all)
    if parallel > 1 and (against != "reference" or driver == "guided"):
        raise RunError("--parallel runs the reference LGC, one per worker, driven by Playwright (or your driver): "
                       "a vendor's LGC or a guided run plays its scenarios one after another")
    if parallel > 1 and not config.tls:
        raise RunError("--parallel needs the bench's TLS ports (tls = true): the runs are told apart by their LGCs' "
                       "client certificates")
    workers = max(1, min(parallel, len(chosen)))
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundles.txt").unlink(missing_ok=True)
    echo(f"scenarios: {', '.join(f.requirement for f in chosen)}")
    supervisor = None
    layer = None
    routes_backup = None
    try:
        if not running:
            busy = [s for s in SERVICES if not port_free(config.host, config.ports[s])
                    or (config.tls and not port_free(config.host, config.tls_ports[s]))]
            if busy:
                raise RunError(f"ports of {', '.join(busy)} are in use: a bench is already running? Use --running to "
                               "run against it, or stop it")
            # The run's state is its own; the PKI stays the bench's, so a vendor's LGC keeps trusting the same CA.
            config.pki = config.pki_dir
            config.data_dir = out / ".bench-data"
            supervisor = Supervisor(config, list(SERVICES.values()), log_dir=out / "logs")
            supervisor.start(progress=lambda m: echo(m))
        sims = {s: config.url(s) for s in SERVICES}
        if workers > 1:
            return _run_parallel(config, chosen, workers, sims, out, driver, running, echo)
        layer, network = _network_layer(config, out / "network", echo)
        env = _bench_env(config, sims, layer, network, out, against, driver)
        env.operator = operator
        if driver == "guided":
            _operator_page(config, env, operator_listen, echo)
        if running and layer is not None:
            routes_backup = _front_door_through(config, layer)
        if against != "reference":
            echo("configure your LGC with these endpoints (through the network layer when present):")
            for name, spec in env.lgc_settings["services"].items():
                extra = " ".join(f"{k}={v}" for k, v in (spec.get("extra") or {}).items())
                echo(f"  {name:<9} {spec['url']} {extra}".rstrip())
            echo(f"  psc       {env.psc_issuer}")
            if env.ca_file:
                echo(f"  CA to trust: {env.ca_file}")
                echo("  client certificates: `segur-bench pki issue-client NAME --out DIR`")
            if routes_backup is not None:
                echo("  the real host names through the front door (`segur-bench hosts`) go through the network "
                     "layer for this run too")
        env_path = out / "scenario-env.json"
        env.save(env_path)
        cmd, child_env = _scenario_command(out, env_path, out / "junit.xml", chosen, driver)
        started = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT, env=child_env, preexec_fn=dies_with_this_process())
        echo(f"\nscenarios finished in {time.monotonic() - started:.1f} s (exit code {code}); JUnit: "
             f"{out / 'junit.xml'}")
        _list_bundles(out, echo)
        return code
    except StartError as exc:
        raise RunError(str(exc)) from None
    finally:
        if routes_backup is not None:
            routes_backup()
        if layer is not None:
            layer.stop()
        if supervisor is not None:
            supervisor.stop()


def _scenario_command(out: Path, env_path: Path, junit: Path, chosen: list[Feature],
                      driver: str) -> tuple[list[str], dict[str, str]]:
    """The pytest command that plays `chosen` with the bench described in `env_path`, and its environment."""
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "scenarios" / "test_scenarios.py"), "-p", "no:cacheprovider",
           "-o", "console_output_style=classic", "-o", "timeout=900", "--rootdir", str(ROOT), "-v",
           # sys-level capture only: the guided driver's prompts to the operator (sys.__stderr__) reach the
           # terminal while a scenario runs, instead of waiting in pytest's captured output
           "--capture=sys",
           f"--junitxml={junit}"]
    if importlib.util.find_spec("allure_pytest_bdd"):
        cmd += [f"--alluredir={out / 'allure-results'}"]
    child_env = dict(os.environ, SEGUR_BENCH_SCENARIO_ENV=str(env_path),
                     SEGUR_BENCH_FEATURES=",".join(f.path.name for f in chosen))
    if ":" in driver:  # the user's driver module: importable by the scenarios as it was here (cwd, PYTHONPATH)
        paths = [os.getcwd(), *(str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                if p)]
        child_env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return cmd, child_env


def _list_bundles(out: Path, echo) -> None:
    bundles = (out / "bundles.txt").read_text(encoding="utf-8").splitlines() if (out / "bundles.txt").exists() \
        else []
    for line in bundles:
        req, path = line.split("\t", 1)
        echo(f"proof bundle {req}: {path}")
    if not bundles:
        echo("no proof bundle was written (see the output above)")


def _run_parallel(config: BenchConfig, chosen: list[Feature], workers: int, sims: dict[str, str], out: Path,
                  driver: str, running: bool, echo) -> int:
    """`workers` pytest processes at once against the same simulators, each with its own network layer (its
    latency is its own), its own reference LGC per scenario, browser, and client certificates bound to each run
    it plays (core/run_attribution.py): the simulators tell the runs apart though no LGC names its run. Each
    worker's output goes to logs/poste-N.log and, prefixed, to the terminal; the JUnit files are merged."""
    if running:
        echo("note: --running --parallel: each run resets only its own fault rules, journal entries and its own "
             "state in the DMP, INSi, ON and ApCV; the MSSanté mailboxes and Pro Santé Connect are shared with "
             "whatever else uses this bench")
    from .lgc import reference_certificates

    groups = _balanced(chosen, workers)
    layers: list[Any] = []
    children: list[tuple[str, subprocess.Popen, Path, threading.Thread]] = []
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        for n, group in enumerate(groups, start=1):
            name = f"poste-{n}"
            layer, network = _network_layer(config, out / "network" / name, echo, fixed_ports=n == 1)
            if layer is not None:
                layers.append(layer)
            env = _bench_env(config, sims, layer, network, out, "reference", driver, workstation=name)
            env.shared_bench = True
            env.client_certs = [str(crt.resolve()) for crt, _key in reference_certificates(config, name).values()]
            env_path = out / f"scenario-env-{name}.json"
            env.save(env_path)
            junit = out / f"junit-{name}.xml"
            cmd, child_env = _scenario_command(out, env_path, junit, group, driver)
            echo(f"[{name}] {', '.join(f.requirement for f in group)}")
            proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    preexec_fn=dies_with_this_process())
            log = out / "logs" / f"{name}.log"
            relay = threading.Thread(target=_relay, args=(proc, log, name, echo), daemon=True)
            relay.start()
            children.append((name, proc, junit, relay))
        codes = []
        for _name, proc, _junit, relay in children:
            codes.append(proc.wait())
            relay.join(timeout=10)
    finally:
        for _name, proc, _junit, _thread in children:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for layer in layers:
            layer.stop()
    _merge_junit([junit for _n, _p, junit, _r in children], out / "junit.xml")
    code = next((c for c in codes if c != 0), 0)
    echo(f"\nscenarios finished in {time.monotonic() - started:.1f} s on {workers} workers (exit codes "
         f"{', '.join(str(c) for c in codes)}); JUnit: {out / 'junit.xml'}")
    _list_bundles(out, echo)
    return code


def _balanced(chosen: list[Feature], workers: int) -> list[list[Feature]]:
    """Scenarios dealt to the workers so their sums of steps are close (a scenario's length grows with its steps,
    the latency ones excepted), longest first; each worker keeps the catalogue order."""
    weight = {f.path: f.path.read_text(encoding="utf-8").count("\n") for f in chosen}
    groups: list[list[Feature]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for f in sorted(chosen, key=lambda f: -weight[f.path]):
        i = loads.index(min(loads))
        groups[i].append(f)
        loads[i] += weight[f.path]
    order = {f.path: i for i, f in enumerate(chosen)}
    return [sorted(g, key=lambda f: order[f.path]) for g in groups if g]


def _relay(proc: subprocess.Popen, log: Path, name: str, echo) -> None:
    with log.open("wb") as fh:
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            fh.flush()
            echo(f"[{name}] {line.decode('utf-8', 'replace').rstrip()}")


def _merge_junit(parts: list[Path], target: Path) -> None:
    """One JUnit file for CI tools: every worker's <testsuite> under one <testsuites>."""
    from lxml import etree

    root = etree.Element("testsuites")
    for part in parts:
        if not part.is_file():
            continue
        tree = etree.parse(str(part), etree.XMLParser(resolve_entities=False, no_network=True))
        suites = [tree.getroot()] if tree.getroot().tag == "testsuite" else list(tree.getroot())
        root.extend(suites)
    target.write_bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True))


def _network_layer(config: BenchConfig, control: Path, echo, *,
                   fixed_ports: bool = True) -> tuple[object | None, dict]:
    """mitmdump in front of the simulators the LGC calls (its own venv); without it, latency is injected by the
    simulators themselves (fault rules), which the bundle says. Only one layer of a run has the fixed ports (a
    vendor's LGC is configured once); the other parallel workers' layers take free ports."""
    try:
        from network_proxy.layer import NetworkLayer, bench_ports, bench_targets, ensure_venv
    except ImportError:
        echo("network layer not available: latency will be injected by the simulators themselves")
        return None, {"mode": "faults"}
    try:
        ensure_venv()
        targets = bench_targets(config, [*PROXIED, "mss"])
        # Fixed ports (simulator port + 1000) so a vendor's LGC can be configured once to go through the layer.
        ports = bench_ports(targets, config) if fixed_ports else None
        layer = NetworkLayer(targets, ports=ports, har_path=control / "network.har", control_dir=control)
        layer.start()
    except Exception as exc:  # no PyPI, mitmdump fails…: the run goes on with in-simulator latency
        echo(f"network layer unavailable ({exc}); latency will be injected by the simulators themselves")
        return None, {"mode": "faults"}
    echo("network layer (mitmdump) in front of: " + ", ".join([*PROXIED, "mss (SMTP, IMAP)"])
         + (" — HTTP and HTTPS (TLS kept end to end)" if config.tls else ""))
    return layer, {"mode": "proxy", "control_file": str(layer.control_path), "har": str(control / "network.har")}


def _front_door_through(config: BenchConfig, layer: object):
    """While the run lasts, the front door of `segur-bench up` (real host names, port 443) leads to the network
    layer's TLS ports instead of the simulators'; returns the function that puts the routes back."""
    from .endpoints import routes_path
    from .front_door import read_routes, write_routes

    path = routes_path(config)
    if not path.is_file():
        return None
    saved = read_routes(path)
    addresses = layer.addresses()  # type: ignore[attr-defined]
    targets = {svc: tuple(addresses[f"{svc}-tls"]) if f"{svc}-tls" in addresses else tuple(where)
               for svc, where in saved.get("targets", {}).items()}
    write_routes(path, saved.get("names", {}), {k: (h.strip("[]"), p) for k, (h, p) in targets.items()})

    def restore() -> None:
        write_routes(path, saved.get("names", {}), {k: tuple(v) for k, v in saved.get("targets", {}).items()})

    return restore


OPERATOR_PORT = 8790  # the operator page keeps one address for a whole `segur-bench run` (a human keeps the tab)


def _operator_page(config: BenchConfig, env: Any, listen: str, echo: Callable[[str], None]) -> None:
    """Where the guided driver's operator page listens. On loopback it is plain HTTP (browsers treat localhost as a
    secure page, so screen sharing works); beyond loopback (the vendor's LGC on another computer) it is HTTPS with
    a certificate of the bench PKI, since browsers only offer screen sharing to secure pages."""
    import secrets

    from simulators.core.pki import BenchPki

    from .netnames import bench_names

    if listen:  # HOST:PORT, checked by the CLI
        host, _, port_text = listen.rpartition(":")
        host, port = host.strip("[]") or "127.0.0.1", int(port_text)
    else:
        host = config.host if config.lan else "127.0.0.1"
        port = 0 if env.operator == "auto" else OPERATOR_PORT
    if port and not port_free(host, port):
        raise RunError(f"the operator page's port {host}:{port} is in use (another guided run?): stop it, or "
                       "choose another with --operator-listen HOST:PORT")
    env.operator_listen = f"{host}:{port}"
    env.operator_token = secrets.token_urlsafe(12)
    if host in LOOPBACK_HOSTS:
        return
    public = next((n for n in config.tls_names), None) or next(
        (n for n in bench_names(config) if n not in LOOPBACK_HOSTS), host)
    env.operator_public_host = public
    if not config.tls:
        echo("warning: the operator page is served without TLS beyond loopback: browsers will not offer screen "
             "sharing there (set tls = true), the operator can only upload a picture per step")
        return
    names = list(dict.fromkeys([*bench_names(config), *([host] if host not in ("0.0.0.0", "::") else [])]))
    env.operator_certificate = str(BenchPki.open(config.pki_dir).server_material("operateur", names))


def _bench_env(config: BenchConfig, sims: dict[str, str], layer: object | None, network: dict, out: Path,
               against: str, driver: str, workstation: str = ""):
    from importlib.metadata import version

    from scenarios.runtime import BenchEnv

    from .lgc import tls_settings

    urls = layer.urls() if layer is not None else {}  # type: ignore[attr-defined]
    services = {}
    for name in ("insi", "apcv", "dmp", "on", "annuaire", "mss"):
        # HTTPS when the bench serves TLS, through the layer's TLS passthrough when present
        tls_base = urls.get(f"{name}-tls") or config.tls_url(name)
        base = tls_base if config.tls else (urls.get(name) or sims[name])
        services[name] = {"url": base + SERVICES[name].base_path, "timeout": 15 if name != "on" else 8,
                          "retries": 0}
    mss = config.settings.get("mss", {})
    ports = {"smtp_port": str(mss.get("smtp_port", 2587)), "imap_port": str(mss.get("imap_port", 2143))}
    if layer is not None:  # SMTP and IMAP through the proxy too (latency per connection)
        addresses = layer.addresses()  # type: ignore[attr-defined]
        ports = {"smtp_port": str(addresses["mss-smtp"][1]), "imap_port": str(addresses["mss-imap"][1])}
    services["mss"]["extra"] = ports
    tls = tls_settings(config, workstation)
    return BenchEnv(sims=sims, out_dir=str(out), against=against, driver=driver, network=network,
                    psc_issuer=config.psc_issuer(), bench_version=version("segur-bench"),
                    lgc_settings={"services": services, "psc_issuer": config.psc_issuer(), "dmp_defer_seconds": 2,
                                  "tls": tls},
                    control_token=config.control_headers().get("Authorization", "Bearer ").split(" ", 1)[1] or None,
                    ca_file=tls.get("ca_file"))
