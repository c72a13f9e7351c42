"""The HTCondor backend: pilots as container-universe jobs, watched through their job event log.

This module is the only importer of the `htcondor2` bindings. The schedd sits behind the
small `Schedd` protocol (`submit`, `remove`), because no schedd can run where the tests
run; the submit description and the event-log reading are plain bindings code and are
tested with the real bindings.

Why the job event log and not `condor_q`: the log is written by the schedd/shadow for every
job of the cluster and survives the jobs leaving the queue, so a TMS that restarts (or
polls late) still learns how every job ended. One log per cluster
(`cluster-<ClusterId>.log`, expanded by HTCondor at submit time) makes a cluster's log
findable from its id alone, which is all the WMS records.

Credentials: the queue tokens travel only in the job's `environment`, in memory, to the
schedd. `describe` (what the WMS stores) redacts them; nothing here logs the environment.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import htcondor2

from . import ClusterId, JobState, JobStatus, PilotSpec, SchedulerError, UnknownCluster

TMS_REMOVE_REASON = "removed by the EWMS TMS: its taskforce was stopped"
CHIRP_ERROR_ATTR = "HTChirpEWMSPilotError"
# below whatever the spec says: the pilot reports its errors into the event log (read by `status`)
PILOT_DEFAULTS = {
    "EWMS_PILOT_HTCHIRP": "true",
    "EWMS_PILOT_HTCHIRP_DEST": "JOB_EVENT_LOG",
    "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": ".",  # the job's scratch directory
}
MIB = 1024**2
KIB = 1024

Event = Any  # htcondor2.JobEvent (untyped bindings)


class Schedd(Protocol):
    """The two schedd calls the backend makes (real: `RealSchedd`; tests: a fake)."""

    def submit(self, description: htcondor2.Submit, count: int) -> ClusterId: ...

    def remove(self, cluster_id: ClusterId, reason: str) -> None: ...


class RealSchedd:
    """The access point's schedd through the bindings, located on first use.

    Locating lazily lets the TMS start (and report the problem per submission) while the
    schedd is briefly down, instead of failing at start-up.
    """

    def __init__(self, name: str | None = None, collector: str | None = None) -> None:
        self.name = name
        self.collector = collector
        self._schedd: htcondor2.Schedd | None = None

    def _connect(self) -> htcondor2.Schedd:
        if self._schedd is None:
            try:
                if self.name:
                    ad = htcondor2.Collector(self.collector).locate(htcondor2.DaemonType.Schedd, self.name)
                    self._schedd = htcondor2.Schedd(ad)
                else:
                    self._schedd = htcondor2.Schedd()
            except htcondor2.HTCondorException as exc:
                where = f"schedd {self.name!r}" if self.name else "the local schedd"
                raise SchedulerError(f"cannot reach {where}: {exc}") from None
        return self._schedd

    def submit(self, description: htcondor2.Submit, count: int) -> ClusterId:
        try:
            return int(self._connect().submit(description, count=count).cluster())
        except htcondor2.HTCondorException as exc:
            self._schedd = None  # locate again next time: the schedd may have moved or restarted
            raise SchedulerError(f"condor submit failed: {exc}") from None

    def remove(self, cluster_id: ClusterId, reason: str) -> None:
        try:
            self._connect().act(htcondor2.JobAction.Remove, f"ClusterId == {int(cluster_id)}", reason=reason)
        except htcondor2.HTCondorException as exc:
            self._schedd = None
            raise SchedulerError(f"condor_rm of cluster {cluster_id} failed: {exc}") from None


# -- the submit description ---------------------------------------------------------------------


def classad_string(value: str) -> str:
    """A ClassAd string literal (for `My.*` attributes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def condor_environment(env: Mapping[str, str]) -> str:
    """HTCondor's quoted `environment` syntax: `"A='x y' B='it''s'"`.

    Every value is single-quoted (so spaces are safe); quotes are doubled as the syntax
    wants, and `$` becomes `$(DOLLAR)` so submit-macro expansion cannot touch a value.
    """
    parts = []
    for name in sorted(env):
        value = env[name]
        if "\n" in value or "\r" in value:
            raise SchedulerError(f"environment variable {name} contains a line break, which HTCondor cannot carry")
        value = value.replace("$", "$(DOLLAR)").replace('"', '""').replace("'", "''")
        parts.append(f"{name}='{value}'")
    return '"' + " ".join(parts) + '"'


def submit_description(
    spec: PilotSpec, environment: Mapping[str, str], *, pilot_image: str, pilot_executable: str, log_dir: Path
) -> dict[str, str]:
    """The submit description of one taskforce's pilots (a dict for `htcondor2.Submit`)."""
    description = {
        "universe": "container",
        "container_image": pilot_image,
        "executable": pilot_executable,
        "transfer_executable": "false",
        "environment": condor_environment({**PILOT_DEFAULTS, **environment}),
        "request_cpus": str(spec.n_cores),
        "request_memory": f"{math.ceil(spec.memory_bytes / MIB)}MB",
        "request_disk": f"{math.ceil(spec.disk_bytes / KIB)}KB",
        "priority": str(spec.priority),
        # the pilot stops itself before this (EWMS_PILOT_MAX_RUNTIME); this is the backstop
        "periodic_remove": f"(JobStatus == 2) && ((time() - EnteredCurrentStatus) > {spec.max_runtime})",
        "log": str(log_dir / "cluster-$(ClusterId).log"),
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT_OR_EVICT",
        "My.WantIOProxy": "true",  # condor_chirp: the pilot reports its errors into the event log
        "My.EWMSWorkflowId": classad_string(spec.workflow_id),
        "My.EWMSTaskId": classad_string(spec.task_id),
        "My.EWMSTaskforceUUID": classad_string(spec.taskforce_uuid),
    }
    if spec.requirements.strip():
        description["requirements"] = spec.requirements
    if spec.transfer_stdouterr:
        description["output"] = str(log_dir / "cluster-$(ClusterId).$(ProcId).out")
        description["error"] = str(log_dir / "cluster-$(ClusterId).$(ProcId).err")
    if spec.input_files:
        description["transfer_input_files"] = ",".join(spec.input_files)
    return description


# -- reading the job event log ------------------------------------------------------------------


def _chirped_error(event: Event) -> str | None:
    """The pilot's error from a `condor_chirp ulog` line (`HTChirpEWMSPilotError: "..."`)."""
    name, sep, value = str(event.get("Info", "")).partition(":")
    if not sep or name.strip() != CHIRP_ERROR_ATTR:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return value


def _terminated(job: JobStatus, event: Event) -> JobStatus:
    if event.get("TerminatedNormally", False):
        code = int(event.get("ReturnValue", 0))
        state = JobState.COMPLETED if code == 0 else JobState.FAILED
        return JobStatus(job.job_id, state, code, None, job.last_error)
    signal = event.get("TerminatedBySignal")
    error = job.last_error or f"pilot killed by signal {signal}"
    return JobStatus(job.job_id, JobState.FAILED, None, None, error)


def _aborted(job: JobStatus, event: Event) -> JobStatus:
    reason = str(event.get("Reason", "")).strip()
    # our own removal is no error; a periodic_remove or someone else's condor_rm is worth reporting
    error = job.last_error if (not reason or TMS_REMOVE_REASON in reason) else f"removed: {reason}"
    return JobStatus(job.job_id, JobState.REMOVED, job.exit_code, None, error)


def _moved(state: JobState) -> Callable[[JobStatus, Event], JobStatus]:
    def move(job: JobStatus, _event: Event) -> JobStatus:
        return JobStatus(job.job_id, state, job.exit_code, None, job.last_error)

    return move


def _held(job: JobStatus, event: Event) -> JobStatus:
    reason = str(event.get("HoldReason", "")).strip() or "held (no reason given)"
    return JobStatus(job.job_id, JobState.HELD, job.exit_code, reason, job.last_error)


def _generic(job: JobStatus, event: Event) -> JobStatus:
    error = _chirped_error(event)
    return job if error is None else JobStatus(job.job_id, job.state, job.exit_code, job.hold_reason, error)


ET = htcondor2.JobEventType
TRANSITIONS: dict[Any, Callable[[JobStatus, Event], JobStatus]] = {
    ET.SUBMIT: _moved(JobState.IDLE),
    ET.EXECUTE: _moved(JobState.RUNNING),
    ET.JOB_EVICTED: _moved(JobState.IDLE),  # back in the queue, to run again elsewhere
    ET.SHADOW_EXCEPTION: _moved(JobState.IDLE),
    ET.JOB_RECONNECT_FAILED: _moved(JobState.IDLE),
    ET.JOB_RELEASED: _moved(JobState.IDLE),
    ET.JOB_HELD: _held,
    ET.JOB_TERMINATED: _terminated,
    ET.JOB_ABORTED: _aborted,
    ET.GENERIC: _generic,
}


def apply_event(jobs: dict[int, JobStatus], cluster_id: ClusterId, event: Event) -> None:
    """Fold one event into the cluster's jobs; other clusters' events and final jobs are left alone."""
    if event.cluster != cluster_id:
        return
    move = TRANSITIONS.get(event.type)
    if move is None:
        return
    job = jobs.get(event.proc) or JobStatus(f"{cluster_id}.{event.proc}", JobState.IDLE)
    if job.final and event.type != ET.GENERIC:
        return  # nothing moves a job out of a final state
    jobs[event.proc] = move(job, event)


class ClusterLog:
    """One cluster's event log, read incrementally (each call reads only what was appended)."""

    def __init__(self, cluster_id: ClusterId, path: Path) -> None:
        self.cluster_id = cluster_id
        self.jobs: dict[int, JobStatus] = {}
        try:
            self._log = htcondor2.JobEventLog(str(path))
        except (htcondor2.HTCondorException, OSError) as exc:
            raise UnknownCluster(f"no job event log for cluster {cluster_id} at {path}: {exc}") from None

    def refresh(self) -> list[JobStatus]:
        for event in self._log.events(stop_after=0):
            apply_event(self.jobs, self.cluster_id, event)
        return [self.jobs[proc] for proc in sorted(self.jobs)]

    def close(self) -> None:
        self._log.close()


# -- the backend --------------------------------------------------------------------------------


class HTCondorScheduler:
    """Pilots as HTCondor jobs on one access point."""

    name = "htcondor"

    def __init__(self, schedd: Schedd, *, log_dir: Path, pilot_image: str, pilot_executable: str) -> None:
        self.schedd = schedd
        self.log_dir = log_dir
        self.pilot_image = pilot_image
        self.pilot_executable = pilot_executable
        self._logs: dict[ClusterId, ClusterLog] = {}
        self._finished: dict[ClusterId, list[JobStatus]] = {}
        self._lock = threading.Lock()

    def log_path(self, cluster_id: ClusterId) -> Path:
        return self.log_dir / f"cluster-{int(cluster_id)}.log"

    def _description(self, spec: PilotSpec, environment: Mapping[str, str]) -> dict[str, str]:
        return submit_description(
            spec,
            environment,
            pilot_image=self.pilot_image,
            pilot_executable=self.pilot_executable,
            log_dir=self.log_dir,
        )

    def describe(self, spec: PilotSpec) -> dict[str, str]:
        return self._description(spec, spec.redacted_environment())

    async def submit(self, spec: PilotSpec, count: int) -> ClusterId:
        if not self.pilot_image:
            raise SchedulerError("no pilot image configured (TMS_PILOT_IMAGE)")
        description = htcondor2.Submit(self._description(spec, spec.environment))
        await asyncio.to_thread(self.log_dir.mkdir, parents=True, exist_ok=True)
        return await asyncio.to_thread(self.schedd.submit, description, count)

    async def status(self, cluster_id: ClusterId) -> list[JobStatus]:
        return await asyncio.to_thread(self._status, cluster_id)

    def _status(self, cluster_id: ClusterId) -> list[JobStatus]:
        with self._lock:
            if cluster_id in self._finished:
                return list(self._finished[cluster_id])
            log = self._logs.get(cluster_id)
            if log is None:
                log = self._logs[cluster_id] = ClusterLog(cluster_id, self.log_path(cluster_id))
            jobs = log.refresh()
            if jobs and all(job.final for job in jobs):
                # nothing will change any more: keep the answer, give back the open log
                self._finished[cluster_id] = jobs
                self._logs.pop(cluster_id).close()
            return jobs

    async def cancel(self, cluster_id: ClusterId) -> None:
        await asyncio.to_thread(self.schedd.remove, cluster_id, TMS_REMOVE_REASON)

    async def aclose(self) -> None:
        with self._lock:
            for log in self._logs.values():
                log.close()
            self._logs.clear()
