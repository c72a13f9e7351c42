"""Why a task failed, and the part of its stderr a person needs to see.

Class names matter: `EWMS_PILOT_OKAY_ERRORS` lists exception names, as upstream does, so
the upstream names (`ContainerRunError`, `InvalidDataForInfileException`, ...) are kept and
a failure matches a name anywhere in its class hierarchy (`TaskTimeoutError` also matches
`ContainerRunError`, which is what upstream raises on a timeout).
"""

from __future__ import annotations

import os
from pathlib import Path

TAIL_BYTES = 64 * 1024
TAIL_LINES = 10
TRACEBACK_MAX_LINES = 60
TRACEBACK_START = "Traceback (most recent call last):"


class StartupError(Exception):
    """The pilot cannot work on this host (no container platform, bad callable, init failed)."""


class TaskError(Exception):
    """A task failed: the event is nacked and the failure is reported at exit."""

    def __init__(self, reason: str, *, exit_code: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    @property
    def kind(self) -> str:
        """The name shown in reports and matched against OKAY_ERRORS."""
        return type(self).__name__

    def names(self) -> set[str]:
        """Every name this failure answers to in `EWMS_PILOT_OKAY_ERRORS`."""
        return {cls.__name__ for cls in type(self).__mro__ if issubclass(cls, TaskError)}


class ContainerRunError(TaskError):
    """The task's process exited non-zero (upstream's name, kept for OKAY_ERRORS)."""


class TaskTimeoutError(ContainerRunError):
    """The task ran past `EWMS_PILOT_TASK_TIMEOUT` and its process group was killed."""


class InvalidDataForInfileException(TaskError):
    """The event cannot be written to the infile (upstream's name)."""

    def __init__(self, reason: str, path: Path) -> None:
        super().__init__(f"{reason} (infile {path.name})")


class InvalidDataFromOutfileException(TaskError):
    """The outfile cannot be turned into an output event (upstream's name)."""

    def __init__(self, reason: str, path: Path) -> None:
        super().__init__(f"{reason} (outfile {path.name})")


class CallableError(TaskError):
    """An in-process callable raised; it answers to the original exception's names too."""

    def __init__(self, exc: BaseException, traceback_text: str) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}", stderr_tail=traceback_text)
        self.original = type(exc).__name__
        self.original_names = {cls.__name__ for cls in type(exc).__mro__}

    @property
    def kind(self) -> str:
        return self.original

    def names(self) -> set[str]:
        return super().names() | self.original_names


class PublishError(TaskError):
    """The output could not be published: the event is retried like any failed task."""


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    """The last `max_bytes` of a (possibly huge) file as text; '' if it does not exist."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def error_summary(stderr_text: str) -> str:
    """The most useful part of a task's stderr: its last Python traceback, else its last lines.

    A traceback is what a user needs to fix a Python task; for anything else the last few
    lines usually carry the error message.
    """
    lines = [ln for ln in stderr_text.splitlines() if ln.strip()]
    if not lines:
        return "<no stderr>"
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(TRACEBACK_START):
            block = _traceback_block(lines, i)
            return "\n".join(block[-TRACEBACK_MAX_LINES:])
    return "\n".join(lines[-TAIL_LINES:])


def _traceback_block(lines: list[str], start: int) -> list[str]:
    """The traceback starting at `start`, through its final `ExcType: message` line.

    A traceback's body is indented; the first unindented line after the header is the
    exception line (chained tracebacks came earlier, so this one is the last).
    """
    for j in range(start + 1, len(lines)):
        if not lines[j].startswith((" ", "\t")):
            return lines[start : j + 1]
    return lines[start:]
