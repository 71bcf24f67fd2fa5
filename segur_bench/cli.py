"""The `segur-bench` command line."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx

from simulators import registry
from simulators.core.har import to_har
from simulators.core.incidents import IncidentCatalog, IncidentError
from simulators.core.journal import Exchange, to_jsonl

from .bench_state import BenchState, StateFileError, now_iso
from .bench_state import stop as stop_bench
from .config import TELESERVICES, TOKEN_ENV, BenchConfig, ConfigError
from .incident_control import apply_incident, clear_incident, control_call, problem_detail
from .lifeline import process_exists, when_gone
from .supervisor import StartError, Supervisor, port_free

PSC_CONSUMERS = ("insi", "dmp", "on", "mss")  # simulators that check Pro Santé Connect tokens


def _config(ctx: click.Context) -> BenchConfig:
    return ctx.obj["config"]


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _idam_lines(config: BenchConfig, services: list) -> list[str]:
    """Which software authorisation numbers (IDAM) the started teleservices accept: a vendor's LGC sends its own
    CNDA number, refused (siram_100/desir_550) until it is added."""
    accepted = {svc.name: config.accepted_idam(svc.name) for svc in services if svc.name in TELESERVICES}
    if not accepted:
        return []
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, idams in accepted.items():
        groups.setdefault(tuple(idams), []).append(name)
    lines = [f"Software authorisation numbers (IDAM) accepted by {', '.join(names)}: {', '.join(idams)}."
             for idams, names in groups.items()]
    lines.append("Add your CNDA number with authorised_idam = [...] in segur-bench.toml (docs/vendor-guide.md).")
    return lines


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Settings file (default: ./segur-bench.toml when present, or $SEGUR_BENCH_CONFIG).")
@click.version_option(package_name="segur-bench")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Conformity test bench for Ségur vague 2 practice-management software (LGC).

    Simulators of the national e-health services with injectable latency and failures,
    an exchange journal, and named incidents.
    """
    try:
        ctx.obj = {"config": BenchConfig.load(config_path)}
    except ConfigError as exc:
        _fail(str(exc))


# ------------------------------------------------------------------------------------------- serving


@main.command()
@click.option("--only", default=None, help="Comma-separated simulators to start (default: all available).")
@click.option("--host", default=None,
              help="Address to bind (default 127.0.0.1). 0.0.0.0 serves the LAN (a vendor's LGC on another "
                   "computer); the control API then wants the token printed at start.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="State directory (SQLite files).")
@click.option("--workers", type=click.IntRange(1, 16), default=None, help="Worker processes per simulator.")
@click.option("--lgc/--no-lgc", "with_lgc", default=None,
              help="Also start the reference LGC (default: yes, unless --only is given).")
@click.option("--front-port", type=click.IntRange(0, 65535), default=None,
              help="HTTPS front door routing the real host names by SNI (default 443, falling back to 8443 "
                   "when 443 needs privileges; 0: none).")
@click.option("--console/--no-console", "with_console", default=None,
              help="Also start the trainers' console (default: yes, unless --only is given).")
@click.option("--console-port", type=click.IntRange(1, 65535), default=None,
              help="The console's port (default 8090, or console_port in segur-bench.toml).")
@click.option("--detach", "-d", is_flag=True,
              help="Start the bench in the background and return once every service answers (then "
                   "`segur-bench status`, `segur-bench down`).")
@click.option("--wait-timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
              help="How long to wait at start-up for every service to answer, in seconds (with --detach: before "
                   "returning). A loaded CI runner starting several benches may need more than a desktop.")
@click.option("--stop-with", type=click.IntRange(1), default=None, metavar="PID",
              help="Stop this bench when process PID ends, whatever ends it (kill -9 too): a bench that belongs to "
                   "a test session (the pytest plugin gives its own pid).")
@click.pass_context
def up(ctx: click.Context, only: str | None, host: str | None, data_dir: Path | None, workers: int | None,
       with_lgc: bool | None, front_port: int | None, with_console: bool | None, console_port: int | None,
       detach: bool, wait_timeout: float, stop_with: int | None) -> None:
    """Start every available simulator and the reference LGC, print their URLs, stop cleanly on Ctrl-C."""
    from .endpoints import endpoints
    from .netnames import control_token

    config = _config(ctx)
    if host:
        config.host = host
    if data_dir:
        config.data_dir = data_dir
    if workers:
        config.workers = workers
    services = _select(only)
    _check_no_bench(config)
    if stop_with is not None and not process_exists(stop_with):
        _fail(f"--stop-with {stop_with}: no such process (the bench would stop at once)")
    if detach:
        _detach(config, wait_timeout)
        return
    supervisor = Supervisor(config, services, with_lgc=only is None if with_lgc is None else with_lgc)
    signal.signal(signal.SIGTERM, _interrupt)
    if stop_with is not None and not when_gone(stop_with, lambda: os.kill(os.getpid(), signal.SIGTERM)):
        _fail(f"--stop-with {stop_with}: that process has ended")  # between the check above and now
    new_token = config.lan and control_token(config.data_dir, create=False) is None
    try:
        supervisor.start(timeout=wait_timeout, progress=lambda m: click.echo(m, err=True))
        door = _start_front_door(supervisor, config, config.front_port if front_port is None else front_port)
        if (only is None if with_console is None else with_console):
            click.echo(f"starting the console on port {console_port or config.console_port} …", err=True)
            try:
                supervisor.start_console(console_port or config.console_port)
            except StartError as exc:  # the simulators serve without it: say why, keep the bench up
                click.echo(f"warning: no console ({exc})", err=True)
        rows = []
        for ep in endpoints(config, services, front_port=door):
            other = ", ".join(f"{label.upper()} {where}" for label, where in ep.other.items())
            rows.append((ep.service, ep.title, ep.http, ep.https or "", ep.client_cert if ep.https else "", other))
        if supervisor.lgc is not None:
            rows.append(("lgc", "LGC de référence (navigateur)", supervisor.lgc.url, "", "", ""))
        if supervisor.console_url is not None:
            rows.append(("console", "Console du formateur (navigateur)", supervisor.console_url, "", "", ""))
        click.echo(_table(rows, ("service", "title", "http", "https", "client cert", "other ports")))
        lines = [f"\nState in {config.data_dir}, logs in {supervisor.log_dir}. Control API: <url>/_bench/ "
                 "(openapi.json)."]
        if config.tls:
            lines.append(f"Bench CA (install it in your LGC's trust store): {config.pki_dir / 'ca-chain.pem'}; "
                         "client certificates: `segur-bench pki issue-client NAME --out DIR`.")
        if door:
            lines.append(f"HTTPS front door on port {door}: map the real host names to this machine "
                         "(`segur-bench hosts`).")
        if config.lan:
            token = control_token(config.data_dir, create=False)
            where = config.data_dir / "control-token"
            lines.append(f"Listening beyond loopback: the control API wants 'Authorization: Bearer <token>' "
                         f"(in {where}; the CLI reads it there)." + (f"\nControl token: {token}" if new_token else ""))
        lines.extend(_idam_lines(config, services))
        lines.append("`segur-bench endpoints --json` lists all of this for scripts. Press Ctrl-C to stop.")
        state = BenchState(
            pid=os.getpid(), started_at=now_iso(), data_dir=str(config.data_dir.resolve()),
            config=str(config.path) if config.path else None,
            services={c.service.name: {"http": c.url, "https": c.tls_url} for c in supervisor.children},
            lgc=supervisor.lgc.url if supervisor.lgc else None, console=supervisor.console_url,
            children=supervisor.pids(), log_dir=str(supervisor.log_dir))
        click.echo("\n".join(lines))
        sys.stdout.flush()
        state.save()  # after the table is out: `up --detach` waits for this file, `status` and `down` read it
        while True:
            dead = supervisor.dead()
            if dead:
                names = ", ".join(dead)
                _fail(f"{names} stopped unexpectedly; see {supervisor.log_dir}")
            time.sleep(0.5)
    except StartError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo("\nstopping …", err=True)
    finally:
        # Whatever happened (Ctrl-C during start-up included), no simulator outlives the command.
        _stop_shielded(supervisor.stop)
        mine = BenchState.load(config.data_dir) if BenchState.path(config.data_dir).exists() else None
        if mine is not None and mine.pid == os.getpid():
            mine.remove()
    click.echo("all simulators stopped", err=True)


def _check_no_bench(config: BenchConfig) -> None:
    """Refuse to start over a bench that serves this data directory; clear the file a crashed one left."""
    try:
        existing = BenchState.load(config.data_dir)
    except StateFileError as exc:
        _fail(str(exc))
    if existing is None:
        return
    if existing.alive():
        _fail(f"a bench already serves {config.data_dir} (segur-bench up, pid {existing.pid}, since "
              f"{existing.started_at}): `segur-bench status` shows it, `segur-bench down` stops it")
    left = existing.leftovers()
    if left:
        _fail(f"a bench left behind by a crashed `segur-bench up` (pid {existing.pid}, since {existing.started_at}) "
              f"still has {len(left)} process(es) running: `segur-bench down` stops them")
    click.echo(f"note: a `segur-bench up` that served {config.data_dir} (pid {existing.pid}, since "
               f"{existing.started_at}) ended without cleaning up; nothing of it runs any more", err=True)
    existing.remove()


def _detach(config: BenchConfig, wait_timeout: float) -> None:
    """`up` again, in the background in a session of its own; back once its run-state file says it serves and
    every service answers, with its table; its log tail and a non-zero exit code otherwise."""
    # the same command line without --detach: the child waits as long for its services (--wait-timeout kept)
    args = [arg for arg in sys.argv[1:] if arg not in ("--detach", "-d")]
    log_dir = config.data_dir.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "segur_bench", *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait_timeout
    while True:
        if proc.poll() is not None:
            _fail(f"the bench did not start (exit code {proc.returncode}); last lines of {log_path}:\n"
                  + "\n".join(log_path.read_text(errors="replace").splitlines()[-20:]))
        state = BenchState.load(config.data_dir) if BenchState.path(config.data_dir).exists() else None
        if state is not None and state.pid == proc.pid and not _unhealthy(state):
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            _fail(f"the bench did not answer within {wait_timeout:g} s (stopped); last lines of {log_path}:\n"
                  + "\n".join(log_path.read_text(errors="replace").splitlines()[-20:]))
        time.sleep(0.3)
    table = log_path.read_text(errors="replace")
    click.echo(table[table.find("service "):].replace("Press Ctrl-C to stop.", "").rstrip() if "service " in table
               else table)
    click.echo(f"Detached (segur-bench up, pid {proc.pid}; log {log_path}): `segur-bench status` for its health, "
               "`segur-bench down` to stop it.")


def _unhealthy(state: BenchState) -> list[str]:
    """The services of a bench that do not answer their health check (names)."""
    bad = []
    for name, where in state.services.items():
        try:
            if httpx.get(where["http"] + "/_bench/health", timeout=2).status_code != 200:
                bad.append(name)
        except httpx.HTTPError:
            bad.append(name)
    return bad


def _bench_state(ctx: click.Context, data_dir: Path | None) -> tuple[BenchConfig, BenchState | None]:
    """The settings (with --data-dir) and the run-state file of the bench that serves that directory, if any."""
    config = _config(ctx)
    if data_dir:
        config.data_dir = data_dir
    try:
        return config, BenchState.load(config.data_dir)
    except StateFileError as exc:
        _fail(str(exc))
        raise  # not reached: _fail exits


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="The bench's state directory.")
@click.option("--json", "as_json_flag", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, data_dir: Path | None, as_json_flag: bool) -> None:
    """What bench serves this data directory: since when, its addresses, health and active incidents. Exit code 0
    only when every service answers."""
    config, state = _bench_state(ctx, data_dir)
    if state is None:
        if as_json_flag:
            click.echo(json.dumps({"running": False, "data_dir": str(config.data_dir)}))
        else:
            click.echo(f"no bench serves {config.data_dir} (no {BenchState.path(config.data_dir).name} there)")
        sys.exit(3)
    services = {}
    for name, where in state.services.items():
        try:
            health = httpx.get(where["http"] + "/_bench/health", timeout=2).json()
            services[name] = {**where, "healthy": True, "incidents": health.get("incidents", []),
                              "run": health.get("run")}
        except (httpx.HTTPError, ValueError):
            services[name] = {**where, "healthy": False, "incidents": [], "run": None}
    alive = state.alive()
    healthy = alive and all(s["healthy"] for s in services.values())
    if as_json_flag:
        click.echo(json.dumps({"running": alive, "healthy": healthy, "pid": state.pid, "since": state.started_at,
                               "data_dir": state.data_dir, "services": services, "lgc": state.lgc,
                               "console": state.console, "leftovers": [] if alive else state.leftovers()},
                              indent=2, ensure_ascii=False))
    else:
        if not alive:
            click.echo(f"the `segur-bench up` that served {state.data_dir} (pid {state.pid}) is gone"
                       + (f"; {len(state.leftovers())} of its processes still run: `segur-bench down`"
                          if state.leftovers() else "; `segur-bench down` clears its run-state file"))
        else:
            click.echo(f"bench of {state.data_dir}: segur-bench up pid {state.pid}, since {state.started_at}")
        rows = [(n, "oui" if s["healthy"] else "NON", s["http"], s.get("https") or "", ", ".join(s["incidents"]))
                for n, s in services.items()]
        rows += [(n, "", url, "", "") for n, url in (("lgc", state.lgc), ("console", state.console)) if url]
        click.echo(_table(rows, ("service", "répond", "http", "https", "incidents")))
    sys.exit(0 if healthy else 1)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="The bench's state directory.")
@click.option("--timeout", type=click.FloatRange(1, 600), default=15.0, show_default=True,
              help="Seconds for a graceful stop before the bench is killed.")
@click.pass_context
def down(ctx: click.Context, data_dir: Path | None, timeout: float) -> None:
    """Stop the bench that serves this data directory (`up --detach`, or one left behind)."""
    config, state = _bench_state(ctx, data_dir)
    if state is None:
        click.echo(f"no bench serves {config.data_dir}: nothing to stop")
        return
    for line in stop_bench(state, timeout=timeout):
        click.echo(line)
    click.echo(f"bench of {state.data_dir} stopped")


def _start_front_door(supervisor: Supervisor, config: BenchConfig, port: int) -> int | None:
    """The front door on `port`, or on 8443 when 443 is refused for lack of privileges; None when off."""
    if not port or not config.tls:
        return None
    try:
        return supervisor.start_front_door(port)
    except PermissionError:
        if port != 443:
            _fail(f"the front door cannot listen on port {port}: permission denied")
        fallback = 8443
        click.echo("warning: port 443 needs privileges here (run as root, or `sudo sysctl "
                   "net.ipv4.ip_unprivileged_port_start=443`, or use docker compose); the front door listens on "
                   f"{fallback} instead", err=True)
        try:
            return supervisor.start_front_door(fallback)
        except OSError as exc:
            click.echo(f"warning: no HTTPS front door ({exc}); the simulators' own TLS ports still work", err=True)
            return None
    except OSError as exc:
        click.echo(f"warning: no HTTPS front door on port {port} ({exc.strerror or exc}); the simulators' own TLS "
                   "ports still work (--front-port to choose another)", err=True)
        return None


def _stop_shielded(stop) -> None:
    """Stop what a foreground command started; a second Ctrl-C or SIGTERM (a wrapper forwarding its own) must not
    cut the stop short and leave children behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the bench like Ctrl-C: children are stopped too


def _select(only: str | None) -> list[registry.ServiceInfo]:
    available = registry.available()
    if not available:
        _fail("no simulator is available in this version of segur-bench")
    if not only:
        return available
    chosen = []
    for name in (n.strip() for n in only.split(",") if n.strip()):
        try:
            svc = registry.info(name)
        except registry.UnknownService as exc:
            _fail(str(exc))
        if not registry.exists(name):
            _fail(f"the {name} simulator is not available in this version of segur-bench")
        chosen.append(svc)
    return chosen


@main.command()
@click.argument("name")
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: the service's own).")
@click.option("--tls-port", type=click.IntRange(1, 65535), default=None,
              help="TLS port (default: the service's own, HTTP port + 300).")
@click.option("--no-tls", is_flag=True, help="Serve plain HTTP only.")
@click.option("--tls-name", "tls_names", multiple=True, metavar="NAME",
              help="One more host name or address for the server certificate (repeatable).")
@click.option("--pki-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The bench PKI (default: <data-dir>/pki, or a temporary one without --data-dir).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="State directory; without it, state is ephemeral (deleted on exit).")
@click.option("--workers", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Worker processes (more than one needs --data-dir).")
@click.option("--incidents-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Directory of incident profiles (default: scenarios/incidents).")
@click.option("--max-request-bytes", type=click.IntRange(1024), default=None, help="Request size limit.")
@click.option("--max-connections", type=click.IntRange(1), default=None,
              help="Open connections per worker process above which a new one gets 503 (default 1000).")
@click.option("--read-timeout", type=click.FloatRange(0.1, 3600), default=None, metavar="SECONDS",
              help="Time allowed for a request's headers, then for its body (extended by 1 s per 500 bytes "
                   "received); a late request gets 408 (default 20).")
@click.option("--public-url", default=None,
              help="How clients reach this simulator when it differs from host:port (container, proxy); "
                   "PSC's issuer is built from it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Service setting (repeatable; VALUE is read as JSON when it parses, else as text), "
                   "over [settings.<service>] of the settings file. Each service README lists its settings.")
@click.pass_context
def sim(ctx: click.Context, name: str, host: str | None, port: int | None, tls_port: int | None, no_tls: bool,
        tls_names: tuple[str, ...], pki_dir: Path | None, data_dir: Path | None, workers: int,
        incidents_dir: Path | None,
        max_request_bytes: int | None, max_connections: int | None, read_timeout: float | None,
        public_url: str | None, overrides: tuple[str, ...]) -> None:
    """Run one simulator in the foreground (NAME: insi, dmp, on, psc, apcv, annuaire, mss)."""
    from simulators.core.server import serve
    from simulators.core.service import SimConfig

    from .netnames import control_token, service_names

    config = _config(ctx)
    try:
        svc = registry.info(name)
    except registry.UnknownService as exc:
        _fail(str(exc))
    if not registry.exists(name):
        _fail(f"the {name} simulator is not available in this version of segur-bench")
    if workers > 1 and data_dir is None:
        _fail("--workers above 1 needs --data-dir: worker processes share their state through SQLite files")
    config.host = host = host or config.host
    port = port or config.ports.get(name, svc.port)
    if data_dir is not None:
        config.data_dir = data_dir
    if pki_dir is not None:
        config.pki = pki_dir
    with_tls = config.tls and not no_tls
    tls_port = (tls_port or config.tls_ports.get(name, svc.tls_port)) if with_tls else None
    for label, number in (("", port), ("TLS ", tls_port)):
        if number is not None and not port_free(host, number):
            _fail(f"{label}port {number} is already in use on {host}; choose another with --{label.lower()}port"
                  .replace("--tls port", "--tls-port"))
    settings = config.service_settings(name)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set expects KEY=VALUE, got {item!r}")
        try:
            settings[key.strip()] = json.loads(raw)
        except ValueError:
            settings[key.strip()] = raw
    if name == "psc" and tls_port and not (public_url or config.urls.get("psc")):
        public_url = f"https://{config.client_host}:{tls_port}"  # a real issuer is HTTPS: tokens say so
    if name in PSC_CONSUMERS:  # the split horizon: the public issuer in tokens, the keys from the back channel
        settings.setdefault("psc_issuer", config.psc_issuer())
        settings.setdefault("psc_jwks_url", config.psc_jwks_url())
    token = None
    if config.lan:  # beyond loopback: the control API wants the data directory's token (or the one given)
        if os.environ.get(TOKEN_ENV):
            token = os.environ[TOKEN_ENV]
        elif data_dir is not None:
            token = control_token(data_dir, create=True)
        else:
            import secrets

            token = secrets.token_urlsafe(24)
            click.echo(f"control API token (ephemeral bench): {token}", err=True)
    sim_config = SimConfig(host=host, port=port, data_dir=data_dir, workers=workers,
                           incidents_dir=incidents_dir or config.incidents_dir,
                           public_url=public_url or config.urls.get(name), settings=settings, tls_port=tls_port,
                           pki_dir=config.pki_dir if (data_dir is not None or config.pki) else None,
                           tls_names=[*service_names(config, name), *tls_names], control_token=token)
    if max_request_bytes:
        sim_config.max_request_bytes = max_request_bytes
    if max_connections or read_timeout:
        limits = sim_config.limits
        sim_config.limits = dataclasses.replace(
            limits, max_connections=max_connections or limits.max_connections,
            header_timeout_s=read_timeout or limits.header_timeout_s,
            body_timeout_s=read_timeout or limits.body_timeout_s)
    try:
        client_cert = registry.load_spec(name).client_cert_mode(settings)
    except ValueError as exc:
        _fail(str(exc))
    tls_note = f", https://{host}:{tls_port}{svc.base_path} (client certificate: {client_cert})" if tls_port else ""
    click.echo(f"{name} simulator on http://{host}:{port}{svc.base_path}{tls_note} (control API: /_bench/)", err=True)
    try:
        serve(name, sim_config)
    except OSError as exc:
        _fail(str(exc))


@main.command()
@click.option("--host", default=None, help="Address to bind (default: the bench's host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8000, or lgc_port).")
@click.pass_context
def lgc(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the reference LGC in the foreground, pointed at the simulators where the bench publishes them."""
    from .lgc import register_client, write_settings

    config = _config(ctx)
    if host:
        config.host = host
    if port:
        config.lgc_port = port
    settings = write_settings(config)
    try:
        register_client(config)
    except httpx.HTTPError as exc:
        click.echo(f"warning: could not register the LGC's redirect URI with PSC ({exc}); login may fail", err=True)
    click.echo(f"reference LGC on http://{config.host}:{config.lgc_port} (settings {settings})", err=True)
    from reference_lgc.__main__ import main as lgc_main

    sys.exit(lgc_main(["--config", str(settings)]))


@main.command("console")
@click.option("--host", default=None, help="Address to bind (default: the bench's host; beyond loopback the page "
                                            "asks for the bench's control token).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8090, or console_port).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="The bench's state directory (where its control token is).")
@click.option("--only", default=None, help="Comma-separated simulators the console shows (default: all available).")
@click.pass_context
def console_cmd(ctx: click.Context, host: str | None, port: int | None, data_dir: Path | None,
                only: str | None) -> None:
    """The trainers' console alone, in the foreground, against simulators already up (console/README.md)."""
    from console.server import serve

    config = _config(ctx)
    if host:
        config.host = host
    if data_dir:
        config.data_dir = data_dir
    port = port or config.console_port
    if not port_free(config.host, port):
        _fail(f"port {port} is already in use on {config.host}; choose another with --port")
    names = [s.name for s in _select(only)]
    click.echo(f"trainers' console on http://{config.client_host}:{port}", err=True)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by `up` like Ctrl-C: a clean exit, not "Aborted!"
    try:
        serve(config, config.host, port, names)
    except ValueError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


@main.command("run")
@click.argument("ids", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Run every scenario.")
@click.option("--against", default="reference", show_default=True,
              help="'reference' (a fresh reference LGC per scenario) or the URL of your LGC.")
@click.option("--driver", default="playwright", show_default=True, metavar="playwright|guided|MODULE:CLASS",
              help="playwright drives the reference LGC; guided shows each step to an operator; MODULE:CLASS loads "
                   "your own driver (importable from PYTHONPATH; vocabulary in scenarios/driver_protocol.py, "
                   "template in scenarios/driver_template.py).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out/scenarios"),
              show_default=True, help="Run directories, proof bundles, JUnit XML, Allure results.")
@click.option("--running", is_flag=True, help="Use simulators already started by `segur-bench up`.")
@click.option("--operator", type=click.Choice(["human", "auto"]), default="human", show_default=True,
              help="guided driver: a person answers on the operator page, or (CI) an automated operator using "
                   "the reference LGC.")
@click.option("--operator-listen", default="", metavar="HOST:PORT",
              help="guided driver: where the operator page listens (default 127.0.0.1:8790, or the bench's host "
                   "when it listens beyond loopback; then HTTPS with the bench CA, as screen sharing needs).")
@click.option("--parallel", type=click.IntRange(1, 16), default=1, show_default=True, metavar="N",
              help="Play the scenarios on N workers at once against the same simulators (reference LGC): each "
                   "with its own LGC, browser, network layer and client certificates, its runs told apart by "
                   "them; bundles as usual.")
@click.pass_context
def run_cmd(ctx: click.Context, ids: tuple[str, ...], run_all: bool, against: str, driver: str, out: Path,
            running: bool, operator: str, operator_listen: str, parallel: int) -> None:
    """Run REM scenarios (IDS: requirement ids such as LGC.DMP/UX.10.01, or feature names) and build proof bundles."""
    from .run import RunError, features, run

    if not ids and not run_all:
        listing = "\n".join(f"  {f.requirement:<22} {f.title}" for f in features())
        _fail(f"name scenarios or use --all; available:\n{listing}")
    if against != "reference" and not against.startswith(("http://", "https://")):
        _fail("--against must be 'reference' or the URL of your LGC (http://…)")
    if against != "reference" and driver == "playwright":
        _fail("your LGC cannot be driven by the reference LGC's Playwright driver: use --driver guided, or your "
              "own driver (--driver module:Class)")
    if operator_listen and driver != "guided":
        _fail("--operator-listen is for the guided driver's operator page (--driver guided)")
    if operator_listen:
        host, sep, port_text = operator_listen.rpartition(":")
        if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
            _fail(f"--operator-listen {operator_listen!r}: HOST:PORT expected (e.g. 0.0.0.0:8790)")
    if driver not in ("playwright", "guided"):
        from scenarios.driver_plugin import DriverError, is_plugin, load_driver_class, missing_methods

        if not is_plugin(driver):
            _fail(f"--driver {driver!r}: playwright, guided, or module:Class (your own driver)")
        if os.getcwd() not in sys.path:  # as for the scenarios (segur_bench.run): the current directory counts
            sys.path.insert(0, os.getcwd())
        try:  # fail before the bench starts, and say which steps the driver cannot play
            missing = missing_methods(load_driver_class(driver))
        except DriverError as exc:
            _fail(str(exc))
        if missing:
            click.echo(f"warning: {driver} has no {', '.join(missing)}: the steps that call them will fail "
                       "(scenarios/driver_protocol.py)", err=True)
    try:
        code = run(_config(ctx), ids, run_all=run_all, against=against, driver=driver, out=out, running=running,
                   operator=operator, operator_listen=operator_listen, parallel=parallel,
                   echo=lambda m: click.echo(m))
    except RunError as exc:
        _fail(str(exc))
    sys.exit(code)


@main.group()
def bundle() -> None:
    """Proof bundles: check their integrity, rebuild one from a run directory."""


@bundle.command("verify")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
def bundle_verify(path: Path) -> None:
    """Check every file of a bundle (zip or directory) against its manifest's SHA-256."""
    from proofs.bundle import main_verify

    sys.exit(main_verify(path))


@bundle.command("build")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out/bundles"),
              show_default=True)
def bundle_build(run_dir: Path, out: Path) -> None:
    """Build the proof bundle of a scenario run directory."""
    from proofs.bundle import main_build

    sys.exit(main_build(run_dir, out))


@main.command()
@click.option("--running", is_flag=True, help="Check simulators already started (by `segur-bench up`).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out/smoke"), show_default=True,
              help="Where to write the journal (JSONL, HAR) and the summary.")
@click.pass_context
def smoke(ctx: click.Context, running: bool, out: Path) -> None:
    """Start every available simulator, check it end to end over HTTP, stop it."""
    from .smoke import run_smoke

    config = _config(ctx)
    services = registry.available() if not running else [registry.info(n) for n, _ in _targets(config, ())]
    if not services:
        _fail("no simulator is available in this version of segur-bench")
    supervisor = Supervisor(config, [] if running else services)
    try:
        supervisor.start(progress=lambda m: click.echo(m, err=True))
        report = run_smoke({s.name: config.url(s.name) for s in services}, out, progress=click.echo)
    except StartError as exc:
        _fail(str(exc))
    except httpx.HTTPError as exc:
        _fail(f"a simulator stopped answering during the smoke check: {exc}")
    finally:
        supervisor.stop()
    for path in report.files:
        click.echo(f"wrote {path}")
    if not report.ok:
        _fail(f"smoke check failed: {sum(not c.ok for c in report.checks)} check(s) out of {len(report.checks)}")
    click.echo(f"smoke check passed: {len(report.checks)} checks")


# ------------------------------------------------------------------------------------------- control


def _targets(config: BenchConfig, service: tuple[str, ...]) -> list[tuple[str, str]]:
    names = list(service) or [s.name for s in registry.available()]
    for name in names:
        if name not in registry.SERVICES:
            _fail(f"unknown simulator {name!r}; known: {', '.join(registry.SERVICES)}")
    return [(name, config.url(name)) for name in names]


@main.group()
def incident() -> None:
    """Named incident profiles (scenarios/incidents/*.toml): list, apply, clear."""


@incident.command("list")
@click.pass_context
def incident_list(ctx: click.Context) -> None:
    """List the incident profiles."""
    catalog = IncidentCatalog(_config(ctx).incidents_dir)
    rows = []
    for name in catalog.names():
        try:
            inc = catalog.get(name)
            rows.append((name, inc.title, ", ".join(sorted(inc.services()))))
        except IncidentError as exc:
            rows.append((name, f"(invalid: {exc})", ""))
    if not rows:
        _fail(f"no incident profile in {catalog.directory}")
    click.echo(_table(rows, ("incident", "title", "services")))


RUN_OPTION = click.option("--run", "run", default=None, metavar="RUN_ID",
                          help="Only the exchanges of this run (its clients send the header X-Bench-Run: RUN_ID); "
                               "other runs on the same bench do not see it.")


@incident.command("apply")
@click.argument("name")
@click.option("--service", "-s", multiple=True, help="Only these simulators (repeatable).")
@RUN_OPTION
@click.pass_context
def incident_apply(ctx: click.Context, name: str, service: tuple[str, ...], run: str | None) -> None:
    """Apply incident NAME to the running simulators (replacing an earlier application of it)."""
    config = _config(ctx)
    try:
        inc = IncidentCatalog(config.incidents_dir).get(name)
    except IncidentError as exc:
        _fail(str(exc))
    targets = _targets(config, service)
    if not any(inc.rules_for(svc) for svc, _ in targets):
        _fail(f"incident {name} concerns {', '.join(sorted(inc.services()))}; none of the targeted simulators "
              f"({', '.join(svc for svc, _ in targets)}) is concerned")
    outcomes = apply_incident(config, inc, targets, run)
    for o in outcomes:
        click.echo(f"{o.service}: {o.detail}", err=not o.ok)
    applied = sum(o.ok for o in outcomes)
    if not applied:
        _fail(f"incident {name} was applied to no simulator")
    click.echo(f"incident {name} ({inc.title}) applied to {applied} simulator(s)"
               + (f" for run {run} only" if run else ""))


@incident.command("clear")
@click.argument("name", required=False)
@click.option("--service", "-s", multiple=True, help="Only these simulators (repeatable).")
@RUN_OPTION
@click.pass_context
def incident_clear(ctx: click.Context, name: str | None, service: tuple[str, ...], run: str | None) -> None:
    """Remove the rules of incident NAME, or every fault rule when NAME is omitted (with --run: that run's)."""
    outcomes = clear_incident(_config(ctx), name, _targets(_config(ctx), service), run)
    for o in outcomes:
        click.echo(f"{o.service}: {o.detail}" if not o.ok else f"{o.service}: {o.removed} rule(s) removed",
                   err=not o.ok)
    reached = sum(o.ok for o in outcomes)
    if not reached:
        _fail("no simulator reachable (is `segur-bench up` running?)")


@main.group()
def journal() -> None:
    """The exchange journal of the running simulators."""


@journal.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "har"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="File to write.")
@click.option("--since", default=None, help="ISO-8601 instant or epoch seconds.")
@click.option("--until", default=None, help="ISO-8601 instant or epoch seconds.")
@click.option("--run", default=None, help="Only the exchanges of this run id.")
@click.option("--operation", default=None, help="Only this operation.")
@click.option("--service", "-s", multiple=True, help="Only these simulators (repeatable).")
@click.pass_context
def journal_export(ctx: click.Context, fmt: str, out: Path, since: str | None, until: str | None, run: str | None,
                   operation: str | None, service: tuple[str, ...]) -> None:
    """Export the journals of the running simulators, merged in time order."""
    params = {k: v for k, v in {"since": since, "until": until, "run": run, "operation": operation}.items() if v}
    exchanges: list[Exchange] = []
    base_urls = {}
    reached = 0
    config = _config(ctx)
    for svc, url in _targets(config, service):
        resp = control_call(config, "GET", f"{url}/_bench/journal", params=params)
        if resp is None:
            click.echo(f"{svc}: not reachable at {url}", err=True)
            continue
        if resp.status_code != 200:
            _fail(f"{svc}: {problem_detail(resp)}")
        reached += 1
        base_urls[svc] = url
        exchanges += [Exchange.from_dict(e) for e in resp.json()["entries"]]
    if not reached:
        _fail("no simulator reachable (is `segur-bench up` running?)")
    exchanges.sort(key=lambda e: e.received_at)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        out.write_text(to_jsonl(exchanges), encoding="utf-8")
    else:
        out.write_text(json.dumps(to_har(exchanges, base_urls=base_urls), ensure_ascii=False, indent=1),
                       encoding="utf-8")
    click.echo(f"{len(exchanges)} exchange(s) from {reached} simulator(s) written to {out}")


# ------------------------------------------------------------------------------------------- addresses


@main.command("endpoints")
@click.option("--json", "as_json_flag", is_flag=True, help="Machine-readable output (for scripts and CI).")
@click.option("--front-port", type=click.IntRange(0, 65535), default=None,
              help="The front door's port, when `up` printed another than the configured one.")
@click.pass_context
def endpoints_cmd(ctx: click.Context, as_json_flag: bool, front_port: int | None) -> None:
    """Where each service is reached: HTTP and HTTPS URLs, client certificate asked, real host names, CA path."""
    from .endpoints import as_json, endpoints

    config = _config(ctx)
    port = config.front_port if front_port is None else front_port
    eps = endpoints(config, front_port=port)
    lgc_url = f"http://{config.client_host}:{config.lgc_port}"
    if as_json_flag:
        console_url = f"http://{config.client_host}:{config.console_port}"
        click.echo(json.dumps(as_json(config, eps, front_port=port, lgc_url=lgc_url, console_url=console_url),
                              indent=2, ensure_ascii=False))
        return
    rows = [(e.service, e.http, e.https or "", e.client_cert if e.https else "", " ".join(e.front_door)) for e in eps]
    click.echo(_table(rows, ("service", "http", "https", "client cert", "under the real names (front door)")))
    if config.tls:
        click.echo(f"\nBench CA: {config.pki_dir / 'ca-chain.pem'}")


@main.command("requirements")
@click.option("--service", "services", multiple=True,
              type=click.Choice(["insi", "apcv", "dmp", "on", "mss", "psc", "annuaire"]),
              help="Only the requirements whose wording involves this national service (repeatable).")
@click.option("--class", "klass", type=click.Choice(["a", "b", "c"]), default=None,
              help="a: testable by the bench; b: local or UI only; c: third-party certification.")
@click.option("--covered", "which", flag_value="covered", help="Only those a scenario proves.")
@click.option("--missing", "which", flag_value="missing", help="Only those no scenario proves yet.")
@click.option("--draft/--no-draft", default=True, show_default=True,
              help="Include ids found only in the earlier draft of the DSR (seed 004).")
@click.option("--json", "as_json_flag", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="The scenario table of scenarios/README.md, generated.")
def requirements_cmd(services: tuple[str, ...], klass: str | None, which: str | None, draft: bool,
                     as_json_flag: bool, markdown: bool) -> None:
    """The DSR's requirement ids (catalogue scenarios/requirements.toml) and the scenarios that prove each."""
    from scenarios.requirements import CatalogueError, catalogue, proven_by, scenario_table

    try:
        reqs = catalogue()
        proofs = proven_by()
    except CatalogueError as exc:
        _fail(str(exc))
    if markdown:
        click.echo(scenario_table(), nl=False)
        return
    chosen = [r for r in reqs.values()
              if (not services or set(services) & set(r.services)) and (klass is None or r.klass == klass)
              and (draft or r.current)
              and (which is None or (which == "covered") == bool(proofs.get(r.id)))]
    if as_json_flag:
        click.echo(json.dumps([{"id": r.id, "titre": r.title, "chapitre": r.chapter, "ligne": r.row,
                                "services": list(r.services), "sources": list(r.seeds), "classe": r.klass,
                                "en_vigueur": r.current, "scenarios": proofs.get(r.id, [])} for r in chosen],
                              indent=2, ensure_ascii=False))
        return
    rows = [(r.id, r.klass, ",".join(r.services) or "-", "" if r.current else "projet",
             ", ".join(proofs.get(r.id, [])) or "-", r.title[:70] + ("…" if len(r.title) > 70 else ""))
            for r in chosen]
    click.echo(_table(rows, ("exigence", "classe", "services", "DSR", "scénarios", "titre")))
    covered = sum(1 for r in chosen if proofs.get(r.id))
    click.echo(f"\n{len(chosen)} exigence(s), dont {covered} prouvée(s) par un scénario.")


@main.command("hosts")
@click.option("--address", default=None,
              help="The address the LGC's computer reaches this bench at (default: this machine's LAN address "
                   "when the bench serves the LAN, else 127.0.0.1).")
@click.pass_context
def hosts_cmd(ctx: click.Context, address: str | None) -> None:
    """Lines for the hosts file of the LGC's computer: the real services' names → this bench.

    Windows: C:\\Windows\\System32\\drivers\\etc\\hosts (as administrator); Linux, macOS: /etc/hosts.
    Remove them when you are done: while they are there, that computer cannot reach the real services."""
    from .endpoints import hosts_lines
    from .netnames import machine_names

    config = _config(ctx)
    if address is None:
        lan = [n for n in machine_names() if n.replace(".", "").isdigit()]
        address = lan[0] if config.lan and lan else config.client_host.strip("[]")
    click.echo(f"# segur-bench — real service names → the bench at {address} (remove after your tests)")
    for line in hosts_lines(address, registry.available()):
        click.echo(line)


# ------------------------------------------------------------------------------------------- network


@main.group()
def network() -> None:
    """The network layer on its own (docker compose, a trainer's bench): serve it, change its conditions live.

    `segur-bench run` starts one of its own for each run; this one lasts as long as you want."""


@network.command("serve")
@click.option("--listen-host", default=None, help="Address the layer listens on (default: the bench's host).")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Control file and HAR (default: <data_dir>/network).")
@click.option("--service-hosts", is_flag=True,
              help="Reach each simulator under its service name (docker compose) instead of the bench's host.")
@click.pass_context
def network_serve(ctx: click.Context, listen_host: str | None, directory: Path | None, service_hosts: bool) -> None:
    """Serve the network layer in the foreground: each simulator's ports + 1000 (HTTP, TLS passthrough, mail)."""
    from network_proxy.layer import NetworkLayer, NetworkLayerError, bench_ports, bench_targets

    config = _config(ctx)
    directory = directory or config.data_dir / "network"
    targets = bench_targets(config, [s.name for s in registry.available()], service_hosts=service_hosts)
    layer = NetworkLayer(targets, ports=bench_ports(targets, config), listen_host=listen_host or config.host,
                         har_path=directory / "network.har", control_dir=directory)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        layer.start(timeout=120)
        rows = [(name, f"{layer.listen_host}:{layer.ports[name]}", targets[name]) for name in targets]
        click.echo(_table(rows, ("target", "listens on", "relays to")))
        click.echo(f"\nConditions: `segur-bench network set --dir {directory} --latency 3000`; HAR: {layer.har_path}. "
                   "Press Ctrl-C to stop.")
        while layer.running:
            time.sleep(0.5)
        _fail(f"the network layer stopped unexpectedly; see {layer.log_path}")
    except NetworkLayerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo("\nstopping …", err=True)
    finally:
        _stop_shielded(layer.stop)


@network.command("set")
@click.option("--latency", "latency_ms", type=click.IntRange(0, 600_000), default=0, show_default=True,
              help="Milliseconds added to each request (per connection for SMTP/IMAP).")
@click.option("--jitter", "jitter_ms", type=click.IntRange(0, 600_000), default=0, help="± milliseconds, uniform.")
@click.option("--service", "-s", multiple=True, help="Only these services' latency (repeatable; default: all).")
@click.option("--down", multiple=True, help="Services the network cannot reach (repeatable; none by default).")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The layer's directory (default: <data_dir>/network).")
@click.pass_context
def network_set(ctx: click.Context, latency_ms: int, jitter_ms: int, service: tuple[str, ...], down: tuple[str, ...],
                directory: Path | None) -> None:
    """Change a running layer's conditions, live (e.g. --latency 3000: the REM's throttled network)."""
    from network_proxy.layer import NetworkLayerError, edit_conditions

    directory = directory or _config(ctx).data_dir / "network"
    try:
        edit_conditions(directory / "conditions.json", latency_ms=latency_ms, jitter_ms=jitter_ms,
                        services=service or None, down=down)
    except (NetworkLayerError, ValueError) as exc:
        _fail(str(exc))
    where = ", ".join(service) if service else "every service"
    click.echo(f"network: {latency_ms} ms ± {jitter_ms} ms on {where}; down: {', '.join(down) or 'none'}")


@main.command("front-door")
@click.option("--host", default=None, help="Address to listen on (default: the bench's host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: front_port, 443).")
@click.option("--route", "routes", multiple=True, metavar="SERVICE=HOST:PORT",
              help="Where a service's TLS port is (repeatable; default: this machine's TLS ports).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the routes file goes (default: the settings' data_dir).")
@click.pass_context
def front_door_cmd(ctx: click.Context, host: str | None, port: int | None, routes: tuple[str, ...],
                   data_dir: Path | None) -> None:
    """The HTTPS front door alone, in the foreground: the real host names, routed by SNI (TLS passed through)."""
    from .endpoints import front_door_routes, routes_path
    from .front_door import FrontDoor, write_routes

    config = _config(ctx)
    if data_dir is not None:
        config.data_dir = data_dir
    names, targets = front_door_routes(config, registry.available())
    for item in routes:
        service, sep, where = item.partition("=")
        target_host, _, target_port = where.rpartition(":")
        if not sep or service not in registry.SERVICES or not target_host or not target_port.isdigit():
            _fail(f"--route expects SERVICE=HOST:PORT with a known service, got {item!r}")
        targets[service] = (target_host, int(target_port))
    path = routes_path(config)
    write_routes(path, names, targets)
    door = FrontDoor(host or config.host, port or config.front_port or 443, path)
    try:
        door.bind()
    except OSError as exc:
        _fail(f"the front door cannot listen on {door.host}:{door.port}: {exc.strerror or exc}")
    click.echo(f"HTTPS front door on {door.host}:{door.port}: " + ", ".join(
        f"{svc} → {h}:{p}" for svc, (h, p) in sorted(targets.items())), err=True)
    with contextlib.suppress(KeyboardInterrupt):
        door.serve_forever()


@main.command("load")
@click.argument("profile", default="cabinet")
@click.option("--users", "-u", type=click.IntRange(1), default=10, show_default=True,
              help="Simulated practitioners working at once.")
@click.option("--spawn-rate", "-r", type=click.FloatRange(0.01), default=1.0, show_default=True,
              help="Practitioners started per second.")
@click.option("--duration", "-t", default="60s", show_default=True, help="How long: seconds, or 90s, 5m, 1h30m.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("out/load"), show_default=True,
              help="Run directory: Locust's CSV (stats_*.csv), HTML report (report.html), logs.")
@click.option("--incident", "incidents", multiple=True, metavar="NAME@SECONDS",
              help="Apply incident NAME (scenarios/incidents/) that long after the load started, cleared at the "
                   "end (repeatable). It acts on the whole bench, as `incident apply` does.")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Distributed mode on this machine: one Locust master and N worker processes.")
@click.option("--expect-workers", type=click.IntRange(1, 1024), default=None,
              help="Workers the master waits for, other machines' included (default: --workers).")
@click.option("--master-bind", default="127.0.0.1", show_default=True,
              help="Address the master listens on for workers (0.0.0.0 for workers on other machines).")
@click.option("--master-port", type=click.IntRange(0, 65535), default=0,
              help="The master's port (default: a free one for local workers only, else 5557).")
@click.option("--worker", "worker_mode", is_flag=True,
              help="Be one more worker of a master on another machine (--master-host) instead.")
@click.option("--master-host", default=None, help="With --worker: the master's address.")
@click.option("--target", default=None, metavar="MODULE:CLASS",
              help="Your LGC instead of the simulators: a LoadTarget subclass importable from PYTHONPATH "
                   "(template: segur_bench/load/template_target.py).")
@click.option("--pace", type=click.FloatRange(0.01, 1000), default=1.0, show_default=True,
              help="Divides every think time (2 = practitioners twice as fast).")
@click.option("--call-timeout", type=click.FloatRange(0.1, 600), default=10.0, show_default=True,
              help="Seconds a call may take before it counts as failed (the reference LGC's default).")
@click.pass_context
def load_cmd(ctx: click.Context, profile: str, users: int, spawn_rate: float, duration: str, out: Path,
             incidents: tuple[str, ...], workers: int, expect_workers: int | None, master_bind: str,
             master_port: int, worker_mode: bool, master_host: str | None, target: str | None, pace: float,
             call_timeout: float) -> None:
    """Run load profile PROFILE (cabinet) with Locust, headless, against the running bench (segur_bench/load/).

    Exit status: 0 every request succeeded, 3 the run completed with failed requests, 1 it could not run."""
    from simulators.core.incidents import IncidentCatalog

    from .load.runner import (
        LoadError,
        LoadOptions,
        parse_duration,
        parse_incident,
        profile_path,
        run_load,
        run_worker,
        summary_table,
    )

    config = _config(ctx)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI job's timeout: stop Locust and clear the incidents too
    try:
        profile_path(profile)
        seconds = parse_duration(duration)
        catalog = IncidentCatalog(config.incidents_dir)
        schedule = [parse_incident(spec, catalog, seconds) for spec in incidents]
        opts = LoadOptions(profile=profile, users=users, spawn_rate=spawn_rate, duration_s=seconds, out=out,
                           incidents=schedule, workers=workers, expect_workers=expect_workers,
                           master_bind=master_bind, master_port=master_port, target=target, pace=pace,
                           call_timeout=call_timeout)
        if worker_mode:
            if not master_host:
                _fail("--worker needs --master-host (the address of the machine running the master)")
            sys.exit(run_worker(opts, config, master_host, master_port or 5557, echo=click.echo))
        if master_host:
            _fail("--master-host is for --worker mode")
        result = run_load(config, opts, echo=click.echo)
    except LoadError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; Locust and the incidents it applied were stopped")
    click.echo("\n" + summary_table(result))
    if result.workers_reported is not None:
        click.echo(f"\n{result.workers_reported} worker(s) reported to the master.")
    click.echo(f"\nCSV: {out}/stats_stats.csv (and _failures, _history); HTML: {out}/report.html")
    if result.failures:
        click.echo(f"{result.failures} request(s) failed: {out}/stats_failures.csv says why", err=True)
        sys.exit(3)


from .pki_cli import pki  # noqa: E402 - the `pki` group lives in its own module

main.add_command(pki)


def run() -> None:
    main(prog_name="segur-bench")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
