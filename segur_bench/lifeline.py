"""Children that die with their supervisor, whatever kills it (issue 22).

`segur-bench up` and `segur-bench run` start every simulator, the reference LGC and the console in a session of
its own (Ctrl-C in the terminal must reach the supervisor, which stops them in order). A supervisor killed with
SIGKILL — what a CI runner does when a job times out — used to leave them all running, ports held, so the next
`up` failed with "port in use".

Each child is now started through this launcher, which stays its parent in the child's session:

    python -m segur_bench.lifeline -- CMD ARGS…

and watches its own supervisor two ways, either of which is enough:

- a **lifeline**: the read end of a pipe whose write end only the supervisor holds (`Lifeline`); when the supervisor
  dies, the kernel closes that end and the read returns end-of-file — on any POSIX system;
- on Linux, a **parent-death signal** (`prctl(PR_SET_PDEATHSIG, SIGTERM)`): the kernel signals the launcher when the
  supervisor's thread that started it exits.

Then it stops its whole session's process group (the service and its worker processes) with SIGTERM, and SIGKILL
after a grace period, as `Supervisor.stop()` does. Otherwise it waits for its command and exits with its code;
a SIGTERM or SIGINT from the supervisor's own stop reaches the whole group, the launcher included, and the
launcher only waits for the command to finish.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

FD_ENV = "SEGUR_BENCH_LIFELINE_FD"
PARENT_ENV = "SEGUR_BENCH_LIFELINE_PARENT"
GRACE_S = 8.0
_PR_SET_PDEATHSIG = 1


class Lifeline:
    """The supervisor's side: one pipe for all its children; `wrap` turns a command into a launched one."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_inheritable(self.write_fd, False)  # never in a child: the pipe must close when we die

    def wrap(self, cmd: list[str], env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str], tuple]:
        """(command, environment, pass_fds) for subprocess.Popen."""
        child_env = dict(os.environ if env is None else env)
        child_env.update({FD_ENV: str(self.read_fd), PARENT_ENV: str(os.getpid())})
        return [sys.executable, "-m", "segur_bench.lifeline", "--", *cmd], child_env, (self.read_fd,)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _signal_me_when_parent_dies(parent: int) -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl
            os.kill(os.getpid(), signal.SIGTERM)


def dies_with_this_process() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: on Linux the child gets SIGTERM when this process dies (even SIGKILLed),
    for children that need no launcher — they have no workers of their own to stop, or they stop them on SIGTERM
    (the scenario suite's pytest, the reference LGC of a scenario, mitmdump, Locust). None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    return functools.partial(_signal_me_when_parent_dies, os.getpid())


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group (the command and its workers), SIGKILL to what is left after the grace."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher outlives the SIGTERM it sends its group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(0, signal.SIGKILL)  # the launcher too: nothing of the group survives


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m segur_bench.lifeline -- CMD [ARGS…]", file=sys.stderr)
        return 2
    fd_text, parent_text = os.environ.pop(FD_ENV, ""), os.environ.pop(PARENT_ENV, "")
    _die_with_parent()  # set before looking at the parent: no moment where its death goes unseen
    gone = threading.Event()
    if parent_text.isdigit() and os.getppid() != int(parent_text):
        gone.set()  # the supervisor died before we could watch it
    if fd_text.isdigit():
        def wait_eof(fd: int) -> None:
            with contextlib.suppress(OSError):
                while os.read(fd, 1):
                    pass
            gone.set()

        threading.Thread(target=wait_eof, args=(int(fd_text),), daemon=True).start()
    # SIGTERM: the parent-death signal, or the supervisor's own stop of the group — told apart by the parent.
    signal.signal(signal.SIGTERM, lambda *_: gone.set() if os.getppid() != int(parent_text or 0) else None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the group is the command's to handle
    proc = subprocess.Popen(argv)  # same session and group as the launcher; the pipe is not passed on
    while proc.poll() is None:
        if gone.is_set():
            _stop_group(proc)
            return 1
        time.sleep(0.2)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        pass
    return True


def when_gone(pid: int, action: Callable[[], None]) -> bool:
    """Call `action` once process `pid` has ended, from a daemon thread: a bench that belongs to a test session
    stops with it, whatever ends the session (kill -9 included). Linux: a pidfd, readable as soon as the process
    ends (zombie or reaped, never confused with a later process of the same number); elsewhere: polling.
    False when no such process exists now (nothing is watched)."""
    fd: int | None = None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):  # no pidfd here: poll
        if not process_exists(pid):
            return False

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
            os.close(fd)
        else:
            while process_exists(pid):
                time.sleep(0.5)
        action()

    threading.Thread(target=watch, name=f"stop-with-{pid}", daemon=True).start()
    return True
