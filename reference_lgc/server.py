"""Serving: uvicorn with the Flask app behind a2wsgi. Request threads are many (pages poll status elements)
and never wait on a national service: calls run on the CallRunner's own pool."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from a2wsgi import WSGIMiddleware
from flask import Flask

from .app import create_app
from .config import LgcConfig

REQUEST_THREADS = 32


def asgi(app: Flask) -> WSGIMiddleware:
    return WSGIMiddleware(app, workers=REQUEST_THREADS)


def serve(config: LgcConfig) -> int:
    app = create_app(config)
    app.config["OUTBOX"].start()
    try:
        uvicorn.run(asgi(app), host=config.host, port=config.port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=3)
    finally:
        app.config["OUTBOX"].stop()
        app.config["RUNNER"].shutdown()
    return 0


@contextmanager
def serve_in_thread(config: LgcConfig) -> Iterator[tuple[str, Flask]]:
    """Run the LGC in this process (tests, benchmarks); yields its base URL and the app."""
    app = create_app(config)
    app.config["OUTBOX"].start()
    server = uvicorn.Server(uvicorn.Config(asgi(app), host=config.host, port=config.port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True, name="reference-lgc")
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the reference LGC did not start (port busy?)")
        threading.Event().wait(0.02)
    try:
        yield f"http://{config.host}:{config.port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        app.config["OUTBOX"].stop()
        app.config["RUNNER"].shutdown()
