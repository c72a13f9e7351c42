"""The local backend: pilots as processes on this machine (local mode, tests).

Each pilot runs under `local_job`, which records the pilot's life in the job's directory,
`<state_dir>/<cluster>/<proc>/` (events, stdout, stderr, the pilot's JSON summary). The
directory tree is the backend's whole state, so a restarted TMS re-adopts its clusters
from it, as an HTCondor TMS does from its job event logs. Pilots run in their own session
and outlive the TMS, as batch jobs do.

Credentials reach a pilot only through its process environment; the state directory is
readable by its owner only, and what is written there (`cluster.json`) is redacted. The
TMS's own variables (`TMS_*`, among them its WMS token) are not passed on.

Resource requests (cores, memory, disk) are not enforced here: this machine is the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import ClusterId, JobState, JobStatus, PilotSpec, SchedulerError, UnknownCluster
from .local_job import read_events, record

TMS_REMOVE_REASON = "removed by the EWMS TMS: its taskforce was stopped"
PILOT_COMMAND = ("-m", "ewms_pilot")
WITHHELD_PREFIXES = ("TMS_", "EWMS_PILOT_")  # the TMS's secrets; pilot settings come from the spec only
_LOG_PREFIX = re.compile(r"^\S+ \S+ (?:ERROR|CRITICAL) \[[^\]]*\] ")
_TAIL_BYTES = 64 * 1024


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _private_file(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def _process_alive(pid: int, marker: str) -> bool:
    """Whether `pid` runs (not a zombie) with `marker` on its command line (guards against pid reuse)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X") and marker in cmdline


def _last_error_line(stderr: Path) -> str | None:
    """The pilot's last logged error, else its last stderr line (what a person would look at first)."""
    try:
        with stderr.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if _LOG_PREFIX.match(line):
            return _LOG_PREFIX.sub("", line)
    return lines[-1] if lines else None


def pilot_error(jobdir: Path) -> str | None:
    """A failed pilot's error: its last failed task (from its summary), else its stderr tail."""
    try:
        summary = json.loads((jobdir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    failures = summary.get("failures") or []
    if failures:
        last = failures[-1]
        text = f"{last.get('kind', 'TaskError')}: {last.get('reason', '')}"
        tail = [line for line in str(last.get("stderr_tail") or "").splitlines() if line.strip()]
        return f"{text}: {tail[-1].strip()}" if tail else text
    return _last_error_line(jobdir / "stderr")


class LocalScheduler:
    """Pilots as local processes, one directory per job."""

    name = "local"

    def __init__(
        self,
        state_dir: Path,
        *,
        kill_grace: float = 30.0,
        python: str = sys.executable,
        stop_pilots_on_exit: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.kill_grace = kill_grace
        self.python = python
        self.stop_pilots_on_exit = stop_pilots_on_exit
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # pid -> our child, reaped by status()
        self._lock = threading.Lock()

    # -- describing and starting ------------------------------------------------------------------

    def _command(self, jobdir: Path, spec: PilotSpec) -> list[str]:
        wrapper = [self.python, "-m", "ewms_tms.schedulers.local_job"]
        limits = ["--kill-grace", f"{self.kill_grace:g}", "--max-runtime", str(spec.max_runtime)]
        return [*wrapper, *limits, str(jobdir), "--", self.python, *PILOT_COMMAND]

    def describe(self, spec: PilotSpec) -> dict[str, str]:
        env = spec.redacted_environment()
        return {
            "executable": self.python,
            "arguments": " ".join(PILOT_COMMAND),
            "environment": " ".join(f"{k}={env[k]}" for k in sorted(env)),
            "max_runtime": str(spec.max_runtime),
            "state_dir": str(self.state_dir),
        }

    async def submit(self, spec: PilotSpec, count: int) -> ClusterId:
        return await asyncio.to_thread(self._submit, spec, count)

    def _new_cluster(self) -> tuple[ClusterId, Path]:
        """The next free cluster id; `mkdir` is the atomic claim, so two TMSs never share one."""
        _private_dir(self.state_dir)
        while True:
            taken = [int(p.name) for p in self.state_dir.iterdir() if p.name.isdigit()]
            cluster_id = max(taken, default=0) + 1
            path = self.state_dir / str(cluster_id)
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
                return cluster_id, path

    def _submit(self, spec: PilotSpec, count: int) -> ClusterId:
        try:
            cluster_id, cluster_dir = self._new_cluster()
            info = {"taskforce_uuid": spec.taskforce_uuid, "count": count, "description": self.describe(spec)}
            fd = _private_file(cluster_dir / "cluster.json")
            try:
                os.write(fd, json.dumps(info, indent=1).encode())
            finally:
                os.close(fd)
            for proc in range(count):
                self._start(spec, _private_dir(cluster_dir / str(proc)))
        except OSError as exc:
            raise SchedulerError(f"cannot start local pilots: {exc}") from None
        return cluster_id

    def _environment(self, spec: PilotSpec, jobdir: Path) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(WITHHELD_PREFIXES)}
        return {
            **inherited,
            **spec.environment,
            "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": str(jobdir),  # pilots on one machine must not share it
            "EWMS_PILOT_SUMMARY_PATH": str(jobdir / "summary.json"),
        }

    def _start(self, spec: PilotSpec, jobdir: Path) -> None:
        record(jobdir, "submit")
        out, err = _private_file(jobdir / "stdout"), _private_file(jobdir / "stderr")
        try:
            child = subprocess.Popen(
                self._command(jobdir, spec),
                env=self._environment(spec, jobdir),
                cwd=jobdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # like a batch job: not stopped by a signal to the TMS's group
                umask=0o077,  # what the pilot writes (its summary, task files) is its owner's only
            )
        finally:
            os.close(out)
            os.close(err)
        with self._lock:
            self._children[child.pid] = child
        record(jobdir, "spawned", pid=child.pid)

    # -- watching ---------------------------------------------------------------------------------

    def _cluster_dir(self, cluster_id: ClusterId) -> Path:
        path = self.state_dir / str(int(cluster_id))
        if not path.is_dir():
            raise UnknownCluster(f"no local cluster {cluster_id} under {self.state_dir}")
        return path

    @staticmethod
    def _jobdirs(cluster_dir: Path) -> list[Path]:
        return sorted((p for p in cluster_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))

    def _alive(self, pid: int | None, jobdir: Path) -> bool:
        if pid is None:
            return False
        with self._lock:
            child = self._children.get(pid)
        if child is not None:
            if child.poll() is None:  # poll() also reaps it once it has ended
                return True
            with self._lock:
                self._children.pop(pid, None)
            return False
        return _process_alive(pid, str(jobdir))

    def _job_status(self, cluster_id: ClusterId, jobdir: Path) -> JobStatus:
        events = read_events(jobdir)
        job_id = f"{cluster_id}.{jobdir.name}"
        pid = next((e["pid"] for e in events if e["event"] == "spawned"), None)
        removal = next((e for e in events if e["event"] == "remove"), None)
        ended = next((e for e in events if e["event"] == "terminated"), None)
        if ended is None and self._alive(pid, jobdir):
            started = any(e["event"] == "execute" for e in events)
            return JobStatus(job_id, JobState.RUNNING if started else JobState.IDLE)
        return self._final_status(job_id, jobdir, ended, removal)

    @staticmethod
    def _final_status(
        job_id: str, jobdir: Path, ended: dict[str, Any] | None, removal: dict[str, Any] | None
    ) -> JobStatus:
        code = None if ended is None else ended.get("exit_code")
        if removal is not None:
            reason = str(removal.get("reason", ""))
            error = None if reason == TMS_REMOVE_REASON else f"removed: {reason}"
            return JobStatus(job_id, JobState.REMOVED, code, None, error)
        if code == 0:
            return JobStatus(job_id, JobState.COMPLETED, 0)
        if ended is None:
            error = "the pilot's process ended without recording its exit (killed?)"
            return JobStatus(job_id, JobState.FAILED, None, None, pilot_error(jobdir) or error)
        if code is None:
            error = pilot_error(jobdir) or f"pilot killed by signal {ended.get('signal')}"
            return JobStatus(job_id, JobState.FAILED, None, None, error)
        return JobStatus(job_id, JobState.FAILED, code, None, pilot_error(jobdir) or f"pilot exited with {code}")

    def _status(self, cluster_id: ClusterId) -> list[JobStatus]:
        cluster_dir = self._cluster_dir(cluster_id)
        return [self._job_status(cluster_id, jobdir) for jobdir in self._jobdirs(cluster_dir)]

    async def status(self, cluster_id: ClusterId) -> list[JobStatus]:
        return await asyncio.to_thread(self._status, cluster_id)

    # -- stopping ---------------------------------------------------------------------------------

    def _cancel(self, cluster_id: ClusterId) -> None:
        for jobdir in self._jobdirs(self._cluster_dir(cluster_id)):
            events = read_events(jobdir)
            if any(e["event"] in ("terminated", "remove") for e in events):
                continue
            record(jobdir, "remove", reason=TMS_REMOVE_REASON)
            pid = next((e["pid"] for e in events if e["event"] == "spawned"), None)
            if pid is not None and self._alive(pid, jobdir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    async def cancel(self, cluster_id: ClusterId) -> None:
        await asyncio.to_thread(self._cancel, cluster_id)

    def _running_clusters(self) -> list[ClusterId]:
        if not self.state_dir.is_dir():
            return []
        clusters = [int(p.name) for p in self.state_dir.iterdir() if p.name.isdigit()]
        return [c for c in clusters if not all(job.final for job in self._status(c))]

    async def aclose(self) -> None:
        """With `stop_pilots_on_exit` (local mode), take the pilots down with the TMS."""
        if not self.stop_pilots_on_exit:
            return
        for cluster_id in await asyncio.to_thread(self._running_clusters):
            await self.cancel(cluster_id)
