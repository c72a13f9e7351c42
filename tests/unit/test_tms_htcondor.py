"""The HTCondor backend with the real `htcondor2` bindings: its submit description and the job
states it reads from hand-written job event logs (no schedd can run here: DESIGN §5).

The only stand-in is `FakeSchedd`, behind the backend's own `Schedd` protocol: it takes a
submission as a schedd would (and writes the submit events into the cluster's log, as the
submitter does) and records removals.
"""

from __future__ import annotations

import logging
from pathlib import Path

import htcondor2
import pytest

from ewms_tms.schedulers import JobState, JobStatus, PilotSpec, SchedulerError, UnknownCluster
from ewms_tms.schedulers.htcondor import (
    TMS_REMOVE_REASON,
    HTCondorScheduler,
    RealSchedd,
    condor_environment,
)
from ewms_tms.spec import SECRET_VARIABLES

TOKEN = "s3cret-T0ken-that-must-not-leak"
STAMP = "2026-11-27 10:00:00"
USAGE = "\n".join(
    [
        "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage",
        "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage",
        "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Remote Usage",
        "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage",
        "\t0  -  Run Bytes Sent By Job",
        "\t0  -  Run Bytes Received By Job",
        "\t0  -  Total Bytes Sent By Job",
        "\t0  -  Total Bytes Received By Job",
    ]
)


# -- writing job event logs the way HTCondor does (text format) -----------------------------------


def _event(code: int, cluster: int, proc: int, text: str, *details: str) -> str:
    lines = [f"{code:03d} ({cluster:03d}.{proc:03d}.000) {STAMP} {text}", *details, "..."]
    return "\n".join(lines) + "\n"


def submitted(c: int, p: int) -> str:
    return _event(0, c, p, "Job submitted from host: <127.0.0.1:9618?addrs=127.0.0.1-9618>")


def executing(c: int, p: int) -> str:
    return _event(1, c, p, "Job executing on host: <127.0.0.2:9618?addrs=127.0.0.2-9618>")


def held(c: int, p: int, reason: str, code: int = 13) -> str:
    return _event(12, c, p, "Job was held.", f"\t{reason}", f"\tCode {code} Subcode 0")


def released(c: int, p: int) -> str:
    return _event(13, c, p, "Job was released.", "\tvia condor_release (by user ewms)")


def evicted(c: int, p: int) -> str:
    return _event(4, c, p, "Job was evicted.", "\t(0) Job was not checkpointed.", *USAGE.splitlines()[:2])


def terminated(c: int, p: int, *, exit_code: int | None = 0, signal: int | None = None) -> str:
    how = f"\t(1) Normal termination (return value {exit_code})"
    if signal is not None:
        how = f"\t(0) Abnormal termination (signal {signal})\n\t(0) No core file"
    return _event(5, c, p, "Job terminated.", how, USAGE)


def aborted(c: int, p: int, reason: str) -> str:
    return _event(9, c, p, "Job was aborted.", f"\t{reason}")


def chirped_error(c: int, p: int, error: str) -> str:
    return _event(8, c, p, f'HTChirpEWMSPilotError: "{error}"')


class FakeSchedd:
    """Takes submissions like a schedd (writing each job's submit event to the cluster's log) and records removals."""

    def __init__(self, first_cluster: int = 1234) -> None:
        self.next_cluster = first_cluster
        self.submissions: list[tuple[htcondor2.Submit, int]] = []
        self.removals: list[tuple[int, str]] = []

    def submit(self, description: htcondor2.Submit, count: int) -> int:
        cluster = self.next_cluster
        self.next_cluster += 1
        self.submissions.append((description, count))
        log = Path(description["log"].replace("$(ClusterId)", str(cluster)))
        with log.open("a") as f:
            f.writelines(submitted(cluster, proc) for proc in range(count))
        return cluster

    def remove(self, cluster_id: int, reason: str) -> None:
        self.removals.append((cluster_id, reason))


def make_spec(**overrides: object) -> PilotSpec:
    env = {
        "EWMS_PILOT_QUEUE_INCOMING": "wf1-in",
        "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN": TOKEN,
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "ewms-wf-1@mq.example.org:5672",
        "EWMS_PILOT_QUEUE_OUTGOING": "wf1-out",
        "EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN": TOKEN,
        "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": f"amqp://ewms-wf-1:{TOKEN}@mq.example.org:5672/",
        "EWMS_PILOT_TASK_IMAGE": "icecube/skymap_scanner:3.20.3",
        "EWMS_PILOT_TASK_ARGS": "client --in {{INFILE}} --out {{OUTFILE}} --note 'it''s $(HOME) \"q\"'",
    }
    fields: dict[str, object] = {
        "taskforce_uuid": "tf-uuid-1",
        "workflow_id": "wf-1",
        "task_id": "task-1",
        "environment": env,
        "secret_names": SECRET_VARIABLES,
        "n_cores": 4,
        "memory_bytes": 3 * 1024**3,
        "disk_bytes": 512 * 1024**2 + 1,
        "max_runtime": 600,
        "priority": 7,
    }
    fields.update(overrides)
    return PilotSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def schedd() -> FakeSchedd:
    return FakeSchedd()


@pytest.fixture
def backend(tmp_path: Path, schedd: FakeSchedd) -> HTCondorScheduler:
    return HTCondorScheduler(
        schedd, log_dir=tmp_path / "logs", pilot_image="docker://ewms/pilot:1", pilot_executable="/usr/bin/ewms-pilot"
    )


# -- the submit description -----------------------------------------------------------------------


async def test_submit_description_runs_the_pilot_image_with_the_requested_resources(
    backend: HTCondorScheduler, schedd: FakeSchedd, tmp_path: Path
) -> None:
    cluster = await backend.submit(make_spec(), 3)

    assert cluster == 1234
    description, count = schedd.submissions[0]
    assert count == 3
    assert description["universe"] == "container"
    assert description["container_image"] == "docker://ewms/pilot:1"
    assert description["executable"] == "/usr/bin/ewms-pilot"
    assert description["request_cpus"] == "4"
    assert description["request_memory"] == "3072MB"
    assert description["request_disk"] == f"{512 * 1024 + 1}KB"  # rounded up, never below the request
    assert description["priority"] == "7"
    assert "600" in description["periodic_remove"] and "JobStatus == 2" in description["periodic_remove"]
    assert description.expand("log") == str(tmp_path / "logs" / "cluster-1.log")  # $(ClusterId), per cluster
    assert description["My.EWMSTaskforceUUID"] == '"tf-uuid-1"'
    assert description["My.EWMSWorkflowId"] == '"wf-1"'
    assert description["My.EWMSTaskId"] == '"task-1"'
    assert "requirements" not in description
    assert "output" not in description and "error" not in description  # no transfer unless asked


async def test_requirements_stdout_transfer_and_input_files_only_when_asked(
    backend: HTCondorScheduler, schedd: FakeSchedd
) -> None:
    spec = make_spec(requirements='HAS_CVMFS_icecube_opensciencegrid_org && OpSysMajorVer == 9',
                     transfer_stdouterr=True, input_files=("/data/a.json", "/data/b.json"))  # fmt: skip
    await backend.submit(spec, 1)
    description, _ = schedd.submissions[0]
    assert description["requirements"] == spec.requirements
    assert description["output"].endswith("cluster-$(ClusterId).$(ProcId).out")
    assert description["error"].endswith("cluster-$(ClusterId).$(ProcId).err")
    assert description["transfer_input_files"] == "/data/a.json,/data/b.json"


async def test_environment_reaches_the_job_verbatim(backend: HTCondorScheduler, schedd: FakeSchedd) -> None:
    spec = make_spec()
    await backend.submit(spec, 1)
    description, _ = schedd.submissions[0]
    expanded = description.expand("environment")  # as HTCondor itself reads the description
    for name, value in spec.environment.items():
        quoted = value.replace('"', '""').replace("'", "''")
        assert f"{name}='{quoted}'" in expanded  # `$(HOME)` stays literal, quotes survive
    assert "EWMS_PILOT_HTCHIRP='true'" in expanded and "EWMS_PILOT_HTCHIRP_DEST='JOB_EVENT_LOG'" in expanded


def test_environment_refuses_line_breaks() -> None:
    with pytest.raises(SchedulerError, match="X"):
        condor_environment({"X": "one\ntwo"})


async def test_credentials_only_go_to_the_schedd(
    backend: HTCondorScheduler, schedd: FakeSchedd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = make_spec()
    cluster = await backend.submit(spec, 2)
    await backend.status(cluster)

    described = backend.describe(spec)
    assert TOKEN not in str(described) and TOKEN not in repr(spec)
    assert "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN='<redacted>'" in described["environment"]
    assert "ewms-wf-1:<redacted>@mq.example.org" in described["environment"]  # a password in a URL, too
    assert TOKEN not in caplog.text
    assert all(TOKEN not in p.read_text() for p in (tmp_path / "logs").iterdir())
    assert TOKEN in schedd.submissions[0][0].expand("environment")  # the job itself gets it


# -- job states from the job event log ------------------------------------------------------------


def write_log(backend: HTCondorScheduler, cluster: int, *events: str) -> None:
    backend.log_dir.mkdir(parents=True, exist_ok=True)
    with backend.log_path(cluster).open("a") as f:
        f.writelines(events)


async def states(backend: HTCondorScheduler, cluster: int) -> list[JobStatus]:
    return await backend.status(cluster)


async def test_submitted_jobs_are_idle_then_running(backend: HTCondorScheduler) -> None:
    write_log(backend, 77, submitted(77, 0), submitted(77, 1))
    assert [j.state for j in await states(backend, 77)] == [JobState.IDLE, JobState.IDLE]

    write_log(backend, 77, executing(77, 1))  # appended later: read incrementally
    jobs = await states(backend, 77)
    assert [(j.job_id, j.state) for j in jobs] == [("77.0", JobState.IDLE), ("77.1", JobState.RUNNING)]


async def test_held_with_reason_then_released(backend: HTCondorScheduler) -> None:
    reason = "Error from slot1@ep01: Failed to pull docker://ewms/pilot:1"
    write_log(backend, 5, submitted(5, 0), executing(5, 0), held(5, 0, reason))
    [job] = await states(backend, 5)
    assert job.state is JobState.HELD and job.hold_reason == reason and not job.final

    write_log(backend, 5, released(5, 0))
    [job] = await states(backend, 5)
    assert job.state is JobState.IDLE and job.hold_reason is None


async def test_evicted_job_is_idle_again(backend: HTCondorScheduler) -> None:
    write_log(backend, 6, submitted(6, 0), executing(6, 0), evicted(6, 0))
    [job] = await states(backend, 6)
    assert job.state is JobState.IDLE


async def test_terminated_normally_and_abnormally(backend: HTCondorScheduler) -> None:
    write_log(
        backend, 8,
        submitted(8, 0), submitted(8, 1), submitted(8, 2),
        executing(8, 0), executing(8, 1), executing(8, 2),
        terminated(8, 0, exit_code=0),
        chirped_error(8, 1, "ContainerRunError: task failed (exit code 1)"),
        terminated(8, 1, exit_code=1),
        terminated(8, 2, signal=9),
    )  # fmt: skip
    ok, failed, killed = await states(backend, 8)
    assert (ok.state, ok.exit_code, ok.last_error) == (JobState.COMPLETED, 0, None)
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 1)
    assert failed.last_error == "ContainerRunError: task failed (exit code 1)"  # the pilot's own words
    assert (killed.state, killed.exit_code, killed.last_error) == (JobState.FAILED, None, "pilot killed by signal 9")
    assert all(job.final for job in (ok, failed, killed))


async def test_aborted_by_the_tms_is_no_error_but_periodic_remove_is(backend: HTCondorScheduler) -> None:
    periodic = (
        "The job attribute PeriodicRemove expression '(JobStatus == 2) && ((time() - x) > 600)' evaluated to TRUE"
    )
    write_log(
        backend, 9,
        submitted(9, 0), submitted(9, 1), submitted(9, 2),
        executing(9, 1),
        aborted(9, 0, TMS_REMOVE_REASON),
        aborted(9, 1, periodic),
        aborted(9, 2, "via condor_rm (by user someone)"),
    )  # fmt: skip
    ours, timed_out, by_hand = await states(backend, 9)
    assert (ours.state, ours.last_error) == (JobState.REMOVED, None)
    assert (timed_out.state, timed_out.last_error) == (JobState.REMOVED, f"removed: {periodic}")
    assert (by_hand.state, by_hand.last_error) == (JobState.REMOVED, "removed: via condor_rm (by user someone)")


async def test_a_final_job_stays_final_and_other_clusters_are_ignored(backend: HTCondorScheduler) -> None:
    write_log(backend, 10, submitted(10, 0), executing(10, 0), terminated(10, 0), submitted(11, 0), executing(11, 0))
    [job] = await states(backend, 10)
    assert job.state is JobState.COMPLETED and job.job_id == "10.0"
    write_log(backend, 10, evicted(10, 0))  # nonsense after the end: ignored
    assert [j.state for j in await states(backend, 10)] == [JobState.COMPLETED]


async def test_unknown_cluster(backend: HTCondorScheduler) -> None:
    with pytest.raises(UnknownCluster, match="cluster 404"):
        await backend.status(404)


async def test_submit_then_cancel_goes_through_the_schedd(backend: HTCondorScheduler, schedd: FakeSchedd) -> None:
    cluster = await backend.submit(make_spec(), 2)
    assert [j.state for j in await backend.status(cluster)] == [JobState.IDLE, JobState.IDLE]

    await backend.cancel(cluster)
    assert schedd.removals == [(cluster, TMS_REMOVE_REASON)]
    write_log(backend, cluster, aborted(cluster, 0, TMS_REMOVE_REASON), aborted(cluster, 1, TMS_REMOVE_REASON))
    jobs = await backend.status(cluster)
    assert [(j.state, j.last_error) for j in jobs] == [(JobState.REMOVED, None)] * 2
    await backend.aclose()


async def test_submission_without_a_pilot_image_is_refused(tmp_path: Path, schedd: FakeSchedd) -> None:
    backend = HTCondorScheduler(schedd, log_dir=tmp_path, pilot_image="", pilot_executable="/x")
    with pytest.raises(SchedulerError, match="TMS_PILOT_IMAGE"):
        await backend.submit(make_spec(), 1)
    assert schedd.submissions == []


def test_the_real_schedd_says_clearly_when_there_is_none() -> None:
    description = htcondor2.Submit({"executable": "/bin/true"})
    with pytest.raises(SchedulerError, match="cannot reach the local schedd"):
        RealSchedd().submit(description, 1)
