"""Local mode's services as supervised children: own process groups, logs in files, health checks, sure stops.

Each service runs `python -m <module>` in a session of its own, so a Ctrl-C at the terminal reaches
only local-scan, which then stops the services in order (SIGTERM to the group, SIGKILL after a
grace). Everything started — the services and what they start in turn (scanners, pilots, each in a
session of its own) — carries `MARKER_VARIABLE=<run id>` in its environment: after the stop, any
process still carrying it is a leftover and is stopped the same way, so nothing outlives the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .deployment import MARKER_VARIABLE
from .errors import CliError, Exit

READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.2
GONE_POLL_S = 0.1
KILL_WAIT_S = 10.0  # after SIGKILL: only a process stuck in the kernel takes longer
TAIL_LINES = 25


class ServiceFailed(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.SERVICES)


def wait_gone(pid: int, timeout: float, give_up: Callable[[], bool] = lambda: False) -> bool:
    """True once `pid` has exited (a zombie counts), waiting on a pidfd; False after `timeout` or when `give_up()`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not poller.poll(int(GONE_POLL_S * 1000)):
            if time.monotonic() >= deadline or give_up():
                return False
        return True
    finally:
        os.close(fd)


def terminate(pid: int, grace: float, give_up: Callable[[], bool] = lambda: False) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `grace` seconds (or as soon as `give_up()`)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        if wait_gone(pid, grace if sig == signal.SIGTERM else KILL_WAIT_S, give_up):
            return


def carries_marker(pid: int, marker: str) -> bool:
    """Whether `pid` runs with our marker in its environment (guards against a pid reused by someone else)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_VARIABLE}={marker}".encode() in environ.split(b"\0")


def leftovers(marker: str) -> list[int]:
    """Every process of this run still alive, wherever it was started from."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and carries_marker(int(entry), marker)]


def sweep(marker: str, grace: float, give_up: Callable[[], bool] = lambda: False) -> list[int]:
    """Stop the leftovers of this run (each by pid: they may lead no group); returns their pids."""
    found = [pid for pid in leftovers(marker) if pid != os.getpid()]
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in found:
        if not wait_gone(pid, max(0.0, deadline - time.monotonic()), give_up):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, KILL_WAIT_S)
    return found


def http_ok(url: str) -> bool:
    """The health probe: an HTTP 200 from `url`."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclasses.dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str | None


class Supervisor:
    """Starts services in order, watches them, and stops them in reverse order."""

    def __init__(
        self, log_dir: Path, marker: str, withheld: tuple[str, ...] = (), ready_timeout: float = READY_TIMEOUT_S
    ) -> None:
        """`withheld`: prefixes of our environment's variables the services do not inherit."""
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout
        self.marker = marker
        self.withheld = withheld
        self.children: list[Child] = []

    def start(self, name: str, module: str, env: dict[str, str], url: str | None = None) -> Child:
        """`python -m module` with `env` added to ours, output to `<log_dir>/<name>.log` (truncated)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(self.withheld)}
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                env={**inherited, **env, MARKER_VARIABLE: self.marker},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log, url)
        self.children.append(child)
        return child

    async def wait_healthy(self, child: Child, health_path: str) -> None:
        """Until `child.url + health_path` answers 200; a child that exits first or never answers is reported."""
        deadline = time.monotonic() + self.ready_timeout
        while not await asyncio.to_thread(http_ok, f"{child.url}{health_path}"):
            self.check()
            if time.monotonic() >= deadline:
                raise ServiceFailed(
                    f"{child.name} did not answer {child.url}{health_path} within {self.ready_timeout:.0f}s; "
                    f"the end of {child.log}:\n{log_tail(child.log)}"
                )
            await asyncio.sleep(READY_POLL_S)

    def check(self) -> None:
        """Raise `ServiceFailed`, with the end of its log, when a service has exited."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise ServiceFailed(
                    f"{child.name} exited with code {code}; the end of {child.log}:\n{log_tail(child.log)}"
                )

    def stop_all(self, grace: float, give_up: Callable[[], bool] = lambda: False) -> None:
        """Stop every service, last started first, then any leftover of the run; reap the children."""
        for child in reversed(self.children):
            if child.proc.returncode is None:  # not reaped yet: its pid still names its group
                terminate(child.proc.pid, grace, give_up)
            child.proc.wait()
        sweep(self.marker, grace, give_up)
