"""A task run as a host command: no image given, so `TASK_ARGS` is the command line.

The arguments are split like a shell would split them, but no shell runs unless the
arguments start one (`sh -c '...'`), so an event's data can never be interpreted as shell
syntax by the pilot itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..layout import EventDirs
from .base import TaskPaths, build_argv, host_environment
from .process import OutputFds, ProcessHandle, run_process


class CommandLauncher:
    """Builds and runs the host command for one event (or for the init step)."""

    def __init__(
        self,
        args: str,
        *,
        env: Mapping[str, str],
        data_hub: Path,
        timeout: float | None,
        kill_grace: float,
        label: str = "task",
    ) -> None:
        self._args = args
        self._env = host_environment(env)  # once: the pilot's environment does not change
        self._data_hub = data_hub
        self._timeout = timeout
        self.kill_grace = kill_grace
        self._label = label

    def task_paths(self, dirs: EventDirs, *, with_io: bool = True) -> TaskPaths:
        """A host command sees the host paths."""
        if not with_io:
            return TaskPaths(self._data_hub)
        return TaskPaths(self._data_hub, dirs.infile, dirs.outfile)

    def argv(self, paths: TaskPaths) -> list[str]:
        """The command line with placeholders replaced."""
        return build_argv(self._args, paths.replacements())

    def launch(self, dirs: EventDirs, paths: TaskPaths, outputs: OutputFds, handle: ProcessHandle) -> None:
        run_process(
            self.argv(paths),
            env={**self._env, **paths.env()},
            outputs=outputs,
            stderr_path=dirs.stderrfile,
            time_limit=self._timeout,
            label=self._label,
            handle=handle,
        )
