"""What every task kind shares: the runner protocol, placeholders, and the file dance.

The pilot sees one interface, `TaskRunner.run(message_id, data) -> TaskOutput`, whatever
the task is. Command and container tasks both go through files (`FileTaskRunner`): write
the infile, start a process (`Launcher`), read the outfile, clean up. They differ only in
the argv and environment they build, which is what a `Launcher` supplies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ..errors import TaskError
from ..io import TaskOutput, read_outfile, write_infile
from ..layout import EventDirs, PilotLayout
from .process import OutputFds, ProcessHandle, dump_outputs, open_outputs, run_in_thread

LOGGER = logging.getLogger(__name__)

PLACEHOLDERS = {
    "infile": ("{{INFILE}}", "{{IN_FILE}}"),
    "outfile": ("{{OUTFILE}}", "{{OUT_FILE}}"),
    "data_hub": ("{{DATA_HUB}}", "{{DATAHUB}}"),
}
ENV_INFILE = "EWMS_TASK_INFILE"
ENV_OUTFILE = "EWMS_TASK_OUTFILE"
ENV_DATA_HUB = "EWMS_TASK_DATA_HUB_DIR"
PILOT_ENV_PREFIXES = ("EWMS_PILOT_", "_EWMS_PILOT_")


class TaskRunner(Protocol):
    """Runs one event's task; raises `TaskError` when the task failed."""

    kind: str

    async def run(self, message_id: str | None, data: Any) -> TaskOutput:
        """Process `data`; the result says whether there is something to publish."""
        ...

    async def aclose(self) -> None:
        """Finish background work (file clean-up) before the pilot exits."""
        ...


class Launcher(Protocol):
    """Starts the process of a file-based task (a host command or a container)."""

    def task_paths(self, dirs: EventDirs, *, with_io: bool = True) -> TaskPaths:
        """The paths as the task will see them (on the host, or inside the container)."""
        ...

    kill_grace: float

    def launch(self, dirs: EventDirs, paths: TaskPaths, outputs: OutputFds, handle: ProcessHandle) -> None:
        """Run to completion, blocking (takes over `outputs`); raise `ContainerRunError`/`TaskTimeoutError`."""
        ...


class TaskPaths:
    """The paths a task is told about, as the task sees them (host or in-container)."""

    def __init__(self, data_hub: Path, infile: Path | None = None, outfile: Path | None = None) -> None:
        self.data_hub = data_hub
        self.infile = infile
        self.outfile = outfile

    def replacements(self) -> dict[str, str]:
        """Placeholder -> path, for the placeholders this run has (init has no in/out files)."""
        values = {"data_hub": self.data_hub, "infile": self.infile, "outfile": self.outfile}
        return {token: str(path) for key, path in values.items() if path is not None for token in PLACEHOLDERS[key]}

    def env(self) -> dict[str, str]:
        """The `EWMS_TASK_*` variables upstream gives every task."""
        env = {ENV_DATA_HUB: str(self.data_hub)}
        if self.infile is not None:
            env[ENV_INFILE] = str(self.infile)
        if self.outfile is not None:
            env[ENV_OUTFILE] = str(self.outfile)
        return env


def build_argv(args: str, replacements: Mapping[str, str]) -> list[str]:
    """Split `args` like a shell would (no shell runs), then fill in the placeholders.

    Splitting first keeps a path with spaces as one argument; for paths without spaces
    this is the same as upstream's replace-then-split.
    """
    argv = shlex.split(args)
    for token, value in replacements.items():
        argv = [a.replace(token, value) for a in argv]
    return argv


def host_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The pilot's environment minus its own settings (broker tokens), plus `extra`.

    Containers start from a clean environment; a host command inherits the pilot's, and it
    has no business seeing the queue credentials.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(PILOT_ENV_PREFIXES)}
    env.update(extra)
    return env


class FileTaskRunner:
    """A task that talks through an infile and an outfile (command or container).

    An event is one blocking function in a worker thread: make the directories, write the
    infile, run the process, read the outfile. One thread hand-off per event instead of
    one per step matters when tasks are short; the pool has a thread per task slot, so a
    long task never holds up another. Removing a finished event's directory is off the
    event's path: it runs in the background, and `aclose` waits for what is left.
    """

    def __init__(
        self,
        kind: str,
        layout: PilotLayout,
        launcher: Launcher,
        *,
        keep_files: bool,
        dump_output: bool,
        max_concurrent: int = 1,
    ) -> None:
        self.kind = kind
        self._layout = layout
        self._launcher = launcher
        self._keep_files = keep_files
        self._dump_output = dump_output
        self._pool = concurrent.futures.ThreadPoolExecutor(max_concurrent, thread_name_prefix=f"ewms-{kind}")
        self._cleanups: set[asyncio.Task[None]] = set()

    async def run(self, message_id: str | None, data: Any) -> TaskOutput:
        handle = ProcessHandle(kill_grace=self._launcher.kill_grace)
        run = functools.partial(self._run_event, message_id, data, handle)
        output, dirs = await run_in_thread(self._pool, run, handle)
        self._remove_later(dirs)
        return output

    def _run_event(self, message_id: str | None, data: Any, handle: ProcessHandle) -> tuple[TaskOutput, EventDirs]:
        """Everything about one event that touches the disk or waits (blocking)."""
        dirs = self._layout.event(message_id)
        try:
            outputs = self._prepare(dirs, data)
            self._launcher.launch(dirs, self._launcher.task_paths(dirs), outputs, handle)
            if self._dump_output:
                dump_outputs(dirs.stdoutfile, dirs.stderrfile)
            return read_outfile(dirs.outfile), dirs
        except BaseException:
            self._discard(dirs)
            raise

    def _prepare(self, dirs: EventDirs, data: Any) -> OutputFds:
        """Make the event's directories, write its infile, open its output files."""
        try:
            dirs.create()
            write_infile(data, dirs.infile)
            return open_outputs(dirs.stdoutfile, dirs.stderrfile)
        except OSError as exc:  # a full or read-only disk fails this event, visibly
            raise TaskError(f"cannot prepare the files of event {dirs.event_id}: {exc}") from None

    def _discard(self, dirs: EventDirs) -> None:
        """After a failure: show the output if asked, then clean up."""
        if self._dump_output:
            dump_outputs(dirs.stdoutfile, dirs.stderrfile)
        if not self._keep_files:
            dirs.remove()

    def _remove_later(self, dirs: EventDirs) -> None:
        if self._keep_files:
            return
        task = asyncio.create_task(asyncio.to_thread(dirs.remove))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def aclose(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        self._pool.shutdown(wait=False)
