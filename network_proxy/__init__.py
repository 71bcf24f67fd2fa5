"""Network layer: mitmdump (its own virtual environment) as a reverse proxy in front of each simulator, with
live network conditions (latency, jitter, services down) and a HAR 1.2 recording. See README.md."""

from .layer import (
    DEFAULT_VENV,
    MITMPROXY_REQUIREMENT,
    NetworkLayer,
    NetworkLayerError,
    bench_targets,
    ensure_venv,
)

__all__ = ["DEFAULT_VENV", "MITMPROXY_REQUIREMENT", "NetworkLayer", "NetworkLayerError", "bench_targets",
           "ensure_venv"]
