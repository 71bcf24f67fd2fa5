"""The run-state file of a bench (`<data dir>/bench.json`): which `segur-bench up` serves this data directory, since
when, its children and addresses — what `status` and `down` read, and what the next `up` checks so that a bench
left behind by a crashed one is recognised instead of failing later with "port in use" (issue 22).

Written by `up` once every service answers, removed when it stops; a file whose supervisor is gone is stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FILE_NAME = "bench.json"


@dataclass
class BenchState:
    pid: int  # the supervisor: `segur-bench up`
    started_at: str
    data_dir: str
    config: str | None
    services: dict[str, dict]  # name -> {"http": url, "https": url|None, "pid": launcher pid}
    lgc: str | None = None
    console: str | None = None
    children: list[int] = field(default_factory=list)  # every launcher pid (each leads its child's session)
    log_dir: str = ""

    @staticmethod
    def path(data_dir: Path) -> Path:
        return Path(data_dir) / FILE_NAME

    def save(self) -> Path:
        path = self.path(Path(self.data_dir))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, data_dir: Path) -> BenchState | None:
        try:
            data = json.loads(cls.path(data_dir).read_text(encoding="utf-8"))
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise StateFileError(f"{cls.path(data_dir)} is not a bench run-state file ({exc}); remove it") from None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def leftovers(self) -> list[int]:
        """Children of a dead supervisor that are still there (they should have died with it)."""
        return [pid for pid in self.children if pid_alive(pid)]

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(Path(self.data_dir)).unlink()


class StateFileError(ValueError):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (dead, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def stop(state: BenchState, timeout: float = 15.0) -> list[str]:
    """Stop a bench: SIGTERM to its supervisor (which stops its children in order), SIGKILL after `timeout`, then
    whatever of its children is left (the lifeline makes that rare). Returns what was done, for the user."""
    done = []
    if state.alive():
        os.kill(state.pid, signal.SIGTERM)
        done.append(f"asked segur-bench up (pid {state.pid}) to stop")
        deadline = time.monotonic() + timeout
        while state.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if state.alive():
            os.kill(state.pid, signal.SIGKILL)
            done.append(f"it did not stop within {timeout:g} s: killed")
    deadline = time.monotonic() + 10
    while state.leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)  # the launchers stop their groups when their supervisor is gone
    for pid in state.leftovers():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        done.append(f"killed a leftover child (pid {pid})")
    state.remove()
    return done
