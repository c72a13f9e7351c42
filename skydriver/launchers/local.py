"""The local launcher: each scanner is a process on this machine (local mode, tests).

A scanner runs as `python -m skydriver.scanner` in its own session, so a Ctrl-C or a signal to
skydriver's process group does not take it down: like a Kubernetes Job, it outlives the skydriver
that started it, and a restarted skydriver finds it again from its handle. The handle is the
instance's name; its directory under the state dir holds the scanner's log and its pid file.

The pid file records the pid *and* the process's start time (from /proc), so a pid the kernel has
since given to another process is never taken for the scanner, and never signalled. Waiting for
an exit uses a pidfd, not a polling loop.

The scanner gets skydriver's environment minus skydriver's own settings (`SKYDRIVER_*`, among them
its auth secret and WMS token), plus the instance's env. The state dir is readable by its owner
only; nothing in it holds the instance's credentials. Memory and CPU requests are not enforced
here: this machine is the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import LauncherError, ScannerInstance

SCANNER_COMMAND = (sys.executable, "-m", "skydriver.scanner")
WITHHELD_PREFIXES = ("SKYDRIVER_",)
PID_FILE = "pid"
LOG_FILE = "scanner.log"
_HANDLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class ProcessIdentity:
    """A pid plus its start time (clock ticks after boot): together they name one process, ever."""

    pid: int
    start_time: int

    def __str__(self) -> str:
        return f"{self.pid} {self.start_time}"

    @classmethod
    def parse(cls, text: str) -> ProcessIdentity:
        pid, start_time = text.split()
        return cls(int(pid), int(start_time))


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) from /proc/<pid>/stat; None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5): the command name is split off


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the process `pid` now, if there is one."""
    stat = _proc_stat(pid)
    return None if stat is None else ProcessIdentity(pid, stat[1])


def is_running(identity: ProcessIdentity) -> bool:
    """Whether that very process runs (not ended, not a zombie, not another process with its pid)."""
    stat = _proc_stat(identity.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == identity.start_time


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@contextlib.contextmanager
def _exit_watch(pidfd: int) -> Iterator[asyncio.Future[None]]:
    """A future that is done once the process behind `pidfd` has ended (the fd turns readable)."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        yield ended
    finally:
        loop.remove_reader(pidfd)


class LocalLauncher:
    """Scanners as local processes, one directory per instance under `state_dir`."""

    name = "local"

    def __init__(self, state_dir: Path, *, command: Sequence[str] = SCANNER_COMMAND, kill_grace: float = 30.0) -> None:
        self.state_dir = state_dir
        self.command = tuple(command)
        self.kill_grace = kill_grace
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # ours to reap, so no zombie lingers

    def directory(self, handle: str) -> Path:
        """The instance's directory; refuses a handle that could point outside the state dir."""
        if not _HANDLE.match(handle):
            raise LauncherError(f"not a local scanner handle: {handle!r}")
        return self.state_dir / handle

    def log_path(self, handle: str) -> Path:
        """The scanner's stdout and stderr (for a person looking into a failed scan)."""
        return self.directory(handle) / LOG_FILE

    def identity(self, handle: str) -> ProcessIdentity | None:
        """The process recorded for `handle`, or None if it was never started."""
        try:
            return ProcessIdentity.parse((self.directory(handle) / PID_FILE).read_text())
        except (OSError, ValueError):
            return None

    # -- starting ---------------------------------------------------------------------------------

    async def start(self, instance: ScannerInstance) -> str:
        return await asyncio.to_thread(self._start, instance)

    def _start(self, instance: ScannerInstance) -> str:
        handle = instance.name
        running = self.identity(handle)
        if running is not None and is_running(running):
            return handle  # this attempt is already up: a retried start must not make a twin
        try:
            _private_dir(self.state_dir)
            directory = _private_dir(self.directory(handle))
            child = self._spawn(instance, directory)
        except OSError as exc:
            raise LauncherError(f"cannot start the scanner of scan {instance.scan_id}: {exc}") from None
        self._children[child.pid] = child
        identity = identify(child.pid)  # a child that already ended is a zombie until reaped: still readable
        if identity is None:
            raise LauncherError(f"the scanner of scan {instance.scan_id} vanished before it could be recorded")
        (directory / f"{PID_FILE}.tmp").write_text(str(identity))
        (directory / f"{PID_FILE}.tmp").replace(directory / PID_FILE)
        return handle

    def _spawn(self, instance: ScannerInstance, directory: Path) -> subprocess.Popen[bytes]:
        log = os.open(directory / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return subprocess.Popen(
                self.command,
                env=self._environment(instance),
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives skydriver, untouched by signals to skydriver's group
                umask=0o077,
            )
        finally:
            os.close(log)

    @staticmethod
    def _environment(instance: ScannerInstance) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(WITHHELD_PREFIXES)}
        return {**inherited, **instance.env}

    # -- watching and stopping --------------------------------------------------------------------

    def _reap(self, pid: int) -> None:
        """Collect our own child's exit status once it has ended (a no-op for others' processes)."""
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]

    async def alive(self, handle: str) -> bool:
        identity = self.identity(handle)
        if identity is None:
            return False
        self._reap(identity.pid)
        return is_running(identity)

    def _open(self, identity: ProcessIdentity) -> int | None:
        """A pidfd for the recorded process, or None if it is gone (opened first, then checked: no pid race)."""
        try:
            pidfd = os.pidfd_open(identity.pid)
        except ProcessLookupError:
            return None
        if is_running(identity):
            return pidfd
        os.close(pidfd)
        return None

    async def stop(self, handle: str) -> None:
        """SIGTERM to the scanner's process group; SIGKILL after `kill_grace` seconds if it is still there."""
        identity = self.identity(handle)
        pidfd = None if identity is None else self._open(identity)
        if identity is None or pidfd is None:
            return
        try:
            with _exit_watch(pidfd) as ended:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(identity.pid, sig)
                    done, _ = await asyncio.wait([ended], timeout=self.kill_grace)
                    if done:
                        break
        finally:
            os.close(pidfd)
            self._reap(identity.pid)

    async def aclose(self) -> None:
        """Reap children that have ended; running scanners are left running."""
        for pid in list(self._children):
            self._reap(pid)
