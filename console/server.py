"""Serving the console: its settings from the bench's (segur-bench.toml), uvicorn in the foreground."""

from __future__ import annotations

import os

from segur_bench.config import TOKEN_ENV, BenchConfig, control_token
from segur_bench.endpoints import as_json, endpoints

from .app import Console, ConsoleSettings
from .bench import Service

DEFAULT_PORT = 8090


def services_of(config: BenchConfig, names: list[str] | None = None) -> list[Service]:
    """The bench's services as the console reaches them: the control API on each HTTP port, the URLs the
    `up` table prints."""
    out = []
    for ep in endpoints(config):
        if names is not None and ep.service not in names:
            continue
        out.append(Service(ep.service, ep.title, config.url(ep.service), ep.http, ep.https, ep.client_cert))
    return out


def bench_token(config: BenchConfig, *, create: bool) -> str | None:
    """The bench's control token, read where the CLI reads it (created for a console beyond loopback)."""
    return os.environ.get(TOKEN_ENV) or control_token(config.data_dir, create=create)


def build_console(config: BenchConfig, host: str, names: list[str] | None = None) -> Console:
    settings = ConsoleSettings(host=host)
    token = bench_token(config, create=not settings.loopback)
    settings.token = token if not settings.loopback else None
    settings.bench = {"data_dir": str(config.data_dir.resolve())}
    eps = [ep for ep in endpoints(config) if names is None or ep.service in names]
    settings.description = as_json(config, eps, front_port=None, lgc_url=None)
    return Console(services_of(config, names), settings, bench_token=token)


def serve(config: BenchConfig, host: str, port: int, names: list[str] | None = None) -> None:
    import uvicorn

    app = build_console(config, host, names)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=3, access_log=False))
    handle_exit = server.handle_exit

    def exiting(sig: int, frame: object) -> None:
        app.stopping()  # open event streams would hold the graceful shutdown until its timeout
        handle_exit(sig, frame)  # type: ignore[arg-type]

    server.handle_exit = exiting  # type: ignore[method-assign]
    server.run()
