"""The scheduler interface the TMS loops drive (DESIGN §4.4), and the two backends behind it.

A backend is three calls — `submit(spec, count) -> cluster_id`, `status(cluster_id)`,
`cancel(cluster_id)` — so the loops never know whether pilots are HTCondor jobs or local
processes. `describe(spec)` is not a scheduler call: it renders what `submit` sends, with the
queue credentials redacted, for the WMS's record of the submission.

Each backend lives in its own module and is the only importer of its client library, so a
TMS in local mode runs without the HTCondor bindings installed (`load` imports lazily).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Config

ClusterId = int
REDACTED = "<redacted>"


class JobState(enum.StrEnum):
    """Where one pilot job is; the first three may still change, the last three are final."""

    IDLE = "idle"
    RUNNING = "running"
    HELD = "held"
    COMPLETED = "completed"
    FAILED = "failed"
    REMOVED = "removed"


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.REMOVED})


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """One pilot job as its backend last saw it.

    `last_error` is the pilot's own last error (a failed pilot's closing report, a removal
    that was not the TMS's own doing); `hold_reason` says why a held job is held.
    """

    job_id: str
    state: JobState
    exit_code: int | None = None
    hold_reason: str | None = None
    last_error: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclasses.dataclass(frozen=True)
class PilotSpec:
    """Everything a backend needs to start the pilots of one taskforce.

    `environment` carries the queue credentials: it is handed to the job and nowhere else
    (`repr=False` keeps it out of logs); `secret_names` names the variables `describe`
    redacts.
    """

    taskforce_uuid: str
    workflow_id: str
    task_id: str
    environment: Mapping[str, str] = dataclasses.field(repr=False)
    secret_names: frozenset[str]
    n_cores: int = 1
    memory_bytes: int = 1024**3
    disk_bytes: int = 1024**3
    max_runtime: int = 24 * 3600
    priority: int = 0
    requirements: str = ""
    transfer_stdouterr: bool = False
    input_files: tuple[str, ...] = ()

    def redacted_environment(self) -> dict[str, str]:
        """The environment as it may be shown or stored: credentials replaced, passwords in addresses masked."""
        return {
            name: REDACTED if name in self.secret_names else mask_password(value)
            for name, value in self.environment.items()
        }


def mask_password(value: str) -> str:
    """`user:secret@host` (with or without a scheme) -> `user:<redacted>@host`."""
    return re.sub(r"^((?:[a-z][a-z0-9+.-]*://)?[^:/@\s]*):[^@/\s]*@", rf"\1:{REDACTED}@", value)


class SchedulerError(Exception):
    """The backend could not do what was asked; the message is fit for the WMS's records."""


class UnknownCluster(SchedulerError):
    """The backend has no record of this cluster (its log or state is gone)."""


class Scheduler(Protocol):
    """What the TMS loops need from a batch system."""

    name: str

    async def submit(self, spec: PilotSpec, count: int) -> ClusterId:
        """Start `count` pilots; returns once the backend has them, with the cluster's id."""
        ...

    async def status(self, cluster_id: ClusterId) -> list[JobStatus]:
        """Every known job of the cluster, as of now."""
        ...

    async def cancel(self, cluster_id: ClusterId) -> None:
        """Ask every job of the cluster to go away (final states follow in `status`)."""
        ...

    def describe(self, spec: PilotSpec) -> dict[str, str]:
        """What `submit` would send for `spec`, credentials redacted (for the WMS's record)."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (not the jobs: they outlive the TMS)."""
        ...


def load(config: Config) -> Scheduler:
    """The backend `config.scheduler` names, imported only when chosen."""
    if config.scheduler == "local":
        from .local import LocalScheduler

        return LocalScheduler(
            config.state_dir / "local-jobs",
            kill_grace=config.local_kill_grace,
            stop_pilots_on_exit=config.local_stop_pilots_on_exit,
        )
    from .htcondor import HTCondorScheduler, RealSchedd

    return HTCondorScheduler(
        RealSchedd(config.schedd_name or None, config.collector_address or None),
        log_dir=config.state_dir / "condor-logs",
        pilot_image=config.pilot_image,
        pilot_executable=config.pilot_executable,
    )
