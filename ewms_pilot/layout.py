"""Where a pilot puts its files: the `ewms-pilot-data/` tree of upstream EWMS.

Tasks written for the upstream pilot find their input, output and shared data at these
paths, and operators debugging a kept tree (`EWMS_PILOT_KEEP_ALL_TASK_FILES`) expect this
exact shape::

    <DATA_DIR_PARENT_PATH_ON_HOST>/ewms-pilot-data/
        data-hub/                          shared by the init step and all tasks
        init-<hex>/outputs/stdoutfile      the init step's output
                          /stderrfile
        <event-id>/task-io/infile-<event-id>.<ext>
                          /outfile-<event-id>.<ext>
                  /outputs/stdoutfile
                          /stderrfile

Only paths are decided here; the functions that touch the disk are plain blocking calls
meant to be run in a thread.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import uuid
from pathlib import Path

DATA_DIR_NAME = "ewms-pilot-data"
DATA_HUB_DIR_NAME = "data-hub"
TASK_IO_DIR_NAME = "task-io"
OUTPUTS_DIR_NAME = "outputs"
STDOUT_FILE = "stdoutfile"
STDERR_FILE = "stderrfile"

# inside a task container, the same directories are mounted at these fixed paths
CONTAINER_DATA_HUB = Path(f"/{DATA_DIR_NAME}/{DATA_HUB_DIR_NAME}")
CONTAINER_TASK_IO = Path(f"/{DATA_DIR_NAME}/{TASK_IO_DIR_NAME}")

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def file_extension(ext: str) -> str:
    """Normalise an extension as upstream does: no leading dot, lower case."""
    return ext.lstrip(".").lower()


def safe_event_id(message_id: str | None) -> str:
    """Turn a message id into a directory name; a missing id gets a fresh uuid.

    Message ids come from whoever published the event, so anything that could climb out
    of the data directory or confuse a shell is replaced.
    """
    cleaned = _UNSAFE_ID_CHARS.sub("_", message_id or "").strip(".")
    return cleaned or uuid.uuid4().hex


@dataclasses.dataclass(frozen=True)
class EventDirs:
    """The directories and files of one event (or of the init step, which has no task-io)."""

    event_id: str
    base: Path
    infile_ext: str = ""
    outfile_ext: str = ""

    @property
    def task_io(self) -> Path:
        return self.base / TASK_IO_DIR_NAME

    @property
    def outputs(self) -> Path:
        return self.base / OUTPUTS_DIR_NAME

    @property
    def infile_name(self) -> str:
        return _with_ext(f"infile-{self.event_id}", self.infile_ext)

    @property
    def outfile_name(self) -> str:
        return _with_ext(f"outfile-{self.event_id}", self.outfile_ext)

    @property
    def infile(self) -> Path:
        return self.task_io / self.infile_name

    @property
    def outfile(self) -> Path:
        return self.task_io / self.outfile_name

    @property
    def stdoutfile(self) -> Path:
        return self.outputs / STDOUT_FILE

    @property
    def stderrfile(self) -> Path:
        return self.outputs / STDERR_FILE

    def create(self, *, with_task_io: bool = True) -> None:
        """Make the directories; an event directory that already exists is a bug, so it fails.

        Plain `mkdir` calls, no `parents=True` probing: on a journaling disk every metadata
        call counts when tasks are short.
        """
        self.base.mkdir()
        self.outputs.mkdir()
        if with_task_io:
            self.task_io.mkdir()

    def remove(self) -> None:
        """Delete this event's tree (never the data hub)."""
        shutil.rmtree(self.base, ignore_errors=True)


def _with_ext(stem: str, ext: str) -> str:
    return f"{stem}.{ext}" if ext else stem


@dataclasses.dataclass(frozen=True)
class PilotLayout:
    """The pilot's data directory and how event directories are named inside it."""

    root: Path
    infile_ext: str = "in"
    outfile_ext: str = "out"

    @classmethod
    def from_parent(cls, parent: str, infile_ext: str = ".in", outfile_ext: str = ".out") -> PilotLayout:
        """Upstream's rule: `<parent without trailing slash>/ewms-pilot-data` ('' -> '/ewms-pilot-data').

        A relative parent (HTCondor's "." for the job's scratch dir) is made absolute now, so
        container bind mounts and the paths handed to tasks stay valid from any directory.
        """
        root = Path(f"{parent.rstrip('/')}/{DATA_DIR_NAME}").absolute()
        return cls(root, file_extension(infile_ext), file_extension(outfile_ext))

    @property
    def data_hub(self) -> Path:
        return self.root / DATA_HUB_DIR_NAME

    def prepare(self) -> None:
        """Create the root and the data hub (blocking; once at start-up)."""
        self.data_hub.mkdir(parents=True, exist_ok=True)

    def event(self, message_id: str | None) -> EventDirs:
        """Directories for one event; a name already on disk (a kept retry) gets a suffix."""
        event_id = safe_event_id(message_id)
        candidate, n = event_id, 1
        while (self.root / candidate).exists():
            candidate, n = f"{event_id}-{n}", n + 1
        return EventDirs(candidate, self.root / candidate, self.infile_ext, self.outfile_ext)

    def init(self) -> EventDirs:
        """Directories for the init step: `init-<hex>/outputs/`."""
        name = f"init-{uuid.uuid4().hex}"
        return EventDirs(name, self.root / name)
