"""The starter's journal: what it submitted but has not yet confirmed to the WMS.

The WMS's record is the truth about a taskforce, but a TMS can die between the backend
accepting a cluster and the WMS hearing of it. The journal covers that gap: an entry is
written before submitting ("submitting"), completed with the cluster id as soon as the
backend returns it, and dropped once the WMS has the cluster. After a restart, an entry with
a cluster id is confirmed (or, if the taskforce was stopped meanwhile, its cluster removed)
instead of submitting again.

One small JSON file per taskforce, replaced atomically, in a directory only the TMS's user
can read. Entries hold no credentials (the description in them is the redacted one).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Entry:
    """One taskforce in the gap between submission and confirmation."""

    taskforce_uuid: str
    n_workers: int
    cluster_id: int | None = None  # None: the TMS stopped inside `submit`; a cluster may or may not exist
    description: dict[str, str] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.time)


class Journal:
    """Entries by taskforce uuid, as files under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, uuid: str) -> Path:
        return self.directory / f"{uuid}.json"

    def _write(self, entry: Entry) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(entry.taskforce_uuid)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(dataclasses.asdict(entry)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)

    def begin(self, uuid: str, n_workers: int) -> Entry:
        entry = Entry(uuid, n_workers)
        self._write(entry)
        return entry

    def submitted(self, entry: Entry, cluster_id: int, description: dict[str, str]) -> Entry:
        done = dataclasses.replace(entry, cluster_id=cluster_id, description=description)
        self._write(done)
        return done

    def get(self, uuid: str) -> Entry | None:
        try:
            data: dict[str, Any] = json.loads(self._path(uuid).read_text())
        except FileNotFoundError:
            return None
        return Entry(**data)

    def entries(self) -> list[Entry]:
        if not self.directory.is_dir():
            return []
        found = (self.get(p.stem) for p in sorted(self.directory.glob("*.json")))
        return [e for e in found if e is not None]

    def forget(self, uuid: str) -> None:
        self._path(uuid).unlink(missing_ok=True)
