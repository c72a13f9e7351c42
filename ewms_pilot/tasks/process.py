"""Run one task process in its own session, and make sure its whole tree goes away.

A task is often a shell script that starts helpers; killing only the direct child on a
timeout would leave the helpers running on the worker node, eating the CPU the next event
needs. So every task starts in a new session (its own process group), a timeout sends
SIGTERM to the group, waits a grace period, then SIGKILLs the group. After a normal exit the
group is SIGKILLed too, so stragglers left in the background never outlive their event.
(A helper that calls `setsid` itself escapes the group; nothing short of cgroups catches it.)

The process is started and waited for in a worker thread (`run_process` blocks), together
with the event's file work, so an event costs the event loop one thread hand-off instead
of one per step; with short commands each hand-off is a visible share of the event. The
loop never waits on the process itself: `run_in_thread` turns a cancellation (the pilot's
drain deadline, max runtime) into signals to the group through a `ProcessHandle`, and the
worker thread, which owns all waiting, notices the exit.

stdout and stderr go straight to files, never through pipes: a chatty task cannot block on
a full pipe, and nobody copies task output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ContainerRunError, TaskTimeoutError, error_summary, read_tail

LOGGER = logging.getLogger(__name__)

KillHook = Callable[[], None]
OutputFds = tuple[int, int]
T = TypeVar("T")


class Interrupted(Exception):
    """The pilot interrupted the task (its awaiting asyncio task was cancelled)."""


@dataclasses.dataclass
class ProcessHandle:
    """Shared by the worker thread running a task and the event loop that may interrupt it."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    proc: subprocess.Popen[bytes] | None = None
    interrupted: bool = False
    kill_grace: float = 5.0
    on_kill: KillHook | None = None

    def send(self, sig: signal.Signals) -> None:
        """Mark the task interrupted and signal its group (if it started); never blocks."""
        with self.lock:
            self.interrupted = True
            proc = self.proc
        if proc is not None:
            _signal_group(proc.pid, sig)


async def run_in_thread(pool: concurrent.futures.Executor | None, func: Callable[[], T], handle: ProcessHandle) -> T:
    """Run blocking `func` (which runs a process through `handle`) in `pool`.

    If the caller is cancelled, the process group gets SIGTERM, then SIGKILL after the
    grace period, and the cancellation propagates once the worker thread has let go.
    """
    future = asyncio.get_running_loop().run_in_executor(pool, func)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await _interrupt(future, handle)
        raise


async def _interrupt(future: asyncio.Future[Any], handle: ProcessHandle) -> None:
    handle.send(signal.SIGTERM)
    try:
        await asyncio.wait({future}, timeout=handle.kill_grace)
    finally:  # also when cancelled again meanwhile: never leave the group running
        if not future.done():
            handle.send(signal.SIGKILL)
    if handle.on_kill is not None and handle.proc is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(handle.on_kill)
    await asyncio.wait({future})
    if not future.cancelled():
        future.exception()  # retrieved: the task was interrupted, whatever it raised


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    outputs: OutputFds,
    stderr_path: Path,
    time_limit: float | None,
    label: str,
    handle: ProcessHandle,
) -> None:
    """Run `argv` to completion (blocking); raise `ContainerRunError`/`TaskTimeoutError`.

    `outputs` are the task's stdout and stderr file descriptors (see `open_outputs`); they
    are closed here once the child has its copies. The kill grace and clean-up hook come
    from `handle`, which the event loop may use to interrupt the run.
    """
    proc = _spawn(argv, env, outputs, handle)
    try:
        returncode = proc.wait(time_limit)
    except subprocess.TimeoutExpired:
        terminate(proc, handle.kill_grace, handle.on_kill)
        raise TaskTimeoutError(
            f"{label} timed out after {time_limit:g}s; its process group was killed",
            exit_code=proc.returncode,
            stderr_tail=error_summary(read_tail(stderr_path)),
        ) from None
    _signal_group(proc.pid, signal.SIGKILL)  # background leftovers die with their event
    if handle.interrupted:
        raise Interrupted(label)
    if returncode != 0:
        tail = error_summary(read_tail(stderr_path))
        raise ContainerRunError(f"{label} failed (exit code {returncode})", exit_code=returncode, stderr_tail=tail)


def _spawn(
    argv: Sequence[str], env: Mapping[str, str], outputs: OutputFds, handle: ProcessHandle
) -> subprocess.Popen[bytes]:
    """Start the process in a new session unless the pilot already gave up on it."""
    out, err = outputs
    try:
        with handle.lock:  # an interrupt either comes before the start, or sees the process
            if handle.interrupted:
                raise Interrupted(argv[0])
            handle.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env), start_new_session=True
            )
            return handle.proc
    except OSError as exc:  # e.g. the command does not exist on this host
        raise ContainerRunError(f"cannot start {argv[0]!r}: {exc}", exit_code=None) from None
    finally:
        os.close(out)
        os.close(err)


def terminate(proc: subprocess.Popen[bytes], grace: float, on_kill: KillHook | None) -> None:
    """SIGTERM the group, wait `grace` seconds, then SIGKILL the group and reap the leader."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    _signal_group(proc.pid, signal.SIGKILL)
    if on_kill is not None:
        try:
            on_kill()
        except Exception:  # best effort: the group is already dead
            LOGGER.exception("cleanup after killing the task failed")
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group; an already-empty group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def open_outputs(stdout_path: Path, stderr_path: Path) -> OutputFds:
    """File descriptors for a task's stdout and stderr (blocking; `run_process` closes them)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    out = os.open(stdout_path, flags, 0o644)
    try:
        return out, os.open(stderr_path, flags, 0o644)
    except OSError:
        os.close(out)
        raise


def dump_outputs(stdout_path: Path, stderr_path: Path) -> None:
    """Copy a task's stdout/stderr to the pilot's (EWMS_PILOT_DUMP_TASK_OUTPUT); blocking."""
    for path, stream in ((stdout_path, sys.stdout), (stderr_path, sys.stderr)):
        try:
            with open(path, "rb") as f:
                stream.flush()
                shutil.copyfileobj(f, stream.buffer)
                stream.buffer.flush()
        except OSError as exc:
            LOGGER.error("cannot dump task output %s: %s", path, exc)
