"""A bench of the test session's own: `segur-bench up --detach` on free ports in a fresh directory, `down` at the
end — the same commands a CI job runs (docs/ci/), so what the plugin starts is what a team would start."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from simulators import registry

from .bench import BenchError


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now: every socket is held until all are chosen (the kernel hands a port just
    released to the next bind(0) more often than one would think)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def write_config(workdir: Path) -> Path:
    """A segur-bench.toml with every port free (another bench, or another session's, may hold the defaults)."""
    extra = [(svc.name, label) for svc in registry.available() for label, _ in svc.extra_ports]
    ports = iter(free_ports(2 + 2 * len(registry.SERVICES) + len(extra)))
    lines = [f'data_dir = "{(workdir / "data").as_posix()}"', "front_port = 0",
             f"lgc_port = {next(ports)}", f"console_port = {next(ports)}", "[ports]"]
    lines += [f"{name} = {next(ports)}" for name in registry.SERVICES]
    lines.append("[tls_ports]")
    lines += [f"{name} = {next(ports)}" for name in registry.SERVICES]
    for service in dict.fromkeys(name for name, _ in extra):
        lines.append(f"[settings.{service}]")
        lines += [f"{label}_port = {next(ports)}" for name, label in extra if name == service]
    path = workdir / "segur-bench.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "segur_bench", "--config", str(config), *args]


def start(workdir: Path, *, lgc: bool, wait_timeout: float) -> tuple[Path, dict[str, Any]]:
    """Start a detached bench under `workdir`; (its config file, its description). BenchError with the bench's
    own explanation (its log tail) when it does not come up."""
    config = write_config(workdir)
    up = subprocess.run(_cli(config, "up", "--detach", "--wait-timeout", f"{wait_timeout:g}",
                             "--lgc" if lgc else "--no-lgc", "--no-console",
                             "--stop-with", str(os.getpid())),  # a killed session leaves no bench behind
                        capture_output=True, text=True, timeout=wait_timeout + 60, stdin=subprocess.DEVNULL)
    if up.returncode != 0:
        raise BenchError(f"the plugin's own bench did not start (segur-bench up --detach, exit {up.returncode}):\n"
                         + (up.stderr or up.stdout)[-3000:])
    shown = subprocess.run(_cli(config, "endpoints", "--json"), capture_output=True, text=True, timeout=60)
    if shown.returncode != 0:
        stop(config)
        raise BenchError(f"segur-bench endpoints --json failed: {shown.stderr[-2000:]}")
    description = json.loads(shown.stdout)
    state = json.loads((workdir / "data" / "bench.json").read_text(encoding="utf-8"))
    description["reference_lgc"] = state.get("lgc")
    return config, description


def stop(config: Path) -> str:
    """`segur-bench down` of that bench; what it said."""
    done = subprocess.run(_cli(config, "down", "--timeout", "15"), capture_output=True, text=True, timeout=120)
    return (done.stdout + done.stderr).strip()
