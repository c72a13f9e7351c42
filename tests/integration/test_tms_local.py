"""The local backend with real pilot processes on the real broker: states, exit codes, error tails,
removal, the max-runtime backstop, re-adoption by a restarted TMS, and no credential on disk or in logs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ewms_mq
from ewms_tms.schedulers import JobState, JobStatus, PilotSpec
from ewms_tms.schedulers.local import LocalScheduler
from ewms_tms.spec import SECRET_VARIABLES

HANG_GUARD = 90.0  # seconds: only ever reached when something is broken
ECHO_TASK = "cp {{INFILE}} {{OUTFILE}}"


async def wait_for(
    check: Callable[[], Awaitable[Any]], what: str, guard: float = HANG_GUARD, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns something truthy (and return that), or fail saying what never happened."""
    deadline = time.monotonic() + guard
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(interval)


async def final_jobs(backend: LocalScheduler, cluster: int) -> list[JobStatus]:
    """The cluster's jobs once every one has ended."""

    async def ended() -> list[JobStatus] | None:
        jobs = await backend.status(cluster)
        return jobs if jobs and all(j.final for j in jobs) else None

    result: list[JobStatus] = await wait_for(ended, f"every job of cluster {cluster} ended")
    return result


def assert_secret_free(root: Path, secret: str) -> list[Path]:
    """No file under `root` contains `secret`; returns the files looked at."""
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        assert secret not in path.read_text(errors="replace"), path
    return files


def private_to_owner(root: Path) -> bool:
    """Nothing under `root` (files or directories) is open to the group or others."""
    return all(p.stat().st_mode & 0o077 == 0 for p in root.rglob("*"))


@pytest.fixture
def broker_user(management_api: Any) -> Iterator[tuple[str, str]]:
    """A broker user with a random password, as the WMS makes per workflow (the secret the tests look for)."""
    name, password = f"tms-test-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    quoted = urllib.parse.quote(name, safe="")
    assert management_api("PUT", f"/api/users/{quoted}", {"password": password, "tags": ""})[0] in (201, 204)
    management_api("PUT", f"/api/permissions/%2F/{quoted}", {"configure": ".*", "write": ".*", "read": ".*"})
    yield name, password
    management_api("DELETE", f"/api/users/{quoted}")


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LocalScheduler]:
    """A local backend; every pilot it started is removed (and has ended) after the test."""
    scheduler = LocalScheduler(tmp_path / "jobs", kill_grace=5)
    yield scheduler
    for cluster_dir in (tmp_path / "jobs").glob("[0-9]*"):
        await scheduler.cancel(int(cluster_dir.name))
        await final_jobs(scheduler, int(cluster_dir.name))


def make_spec(address: str, token: str, queues: tuple[str, str], task_args: str = ECHO_TASK, **env: str) -> PilotSpec:
    environment = {
        "EWMS_PILOT_QUEUE_INCOMING": queues[0],
        "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN": token,
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": address,
        "EWMS_PILOT_QUEUE_OUTGOING": queues[1],
        "EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN": token,
        "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": address,
        "EWMS_PILOT_TASK_ARGS": task_args,
        "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": "600",
        "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "600",
        **{f"EWMS_PILOT_{k}": v for k, v in env.items()},
    }
    return PilotSpec("tf-local", "wf-local", "task-local", environment, SECRET_VARIABLES, max_runtime=3600)


@pytest.fixture
async def queues(amqp_url: str, queue_factory: Any) -> tuple[str, str]:
    names = (queue_factory("in"), queue_factory("out"))
    async with await ewms_mq.connect(amqp_url) as broker:
        for name in names:
            await broker.declare_queue(name)
    return names


async def test_pilots_process_every_event_then_complete_without_leaking_the_password(
    backend: LocalScheduler,
    queues: tuple[str, str],
    broker_user: tuple[str, str],
    amqp_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user, password = broker_user
    idle = {"TIMEOUT_QUEUE_INCOMING": "2", "TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": "2"}  # a pilot may get none
    spec = make_spec(f"{user}@127.0.0.1:5672", password, queues, **idle)
    cluster = await backend.submit(spec, 2)

    sent = [f"event {i}" for i in range(10)]
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.publish_many(queues[0], sent)
        received = []
        async with broker.consume(queues[1], prefetch=10, idle_timeout=HANG_GUARD) as outputs:
            async for msg in outputs:
                received.append(msg.data)
                await msg.ack()
                if len(received) == len(sent):
                    break
    assert sorted(received) == sorted(sent)

    jobs = await final_jobs(backend, cluster)  # idle for 2 s: the pilots stop by themselves
    assert [(j.job_id, j.state, j.exit_code, j.last_error) for j in jobs] == [
        (f"{cluster}.0", JobState.COMPLETED, 0, None),
        (f"{cluster}.1", JobState.COMPLETED, 0, None),
    ]
    written = assert_secret_free(tmp_path, password)
    assert {p.name for p in written} >= {"stdout", "stderr", "events.jsonl", "summary.json", "cluster.json"}
    assert password not in caplog.text
    assert private_to_owner(tmp_path)


async def test_failed_pilots_report_exit_code_and_error_tail(
    backend: LocalScheduler, queues: tuple[str, str], amqp_url: str
) -> None:
    bad_task = make_spec(amqp_url, "", queues, "sh -c 'echo Traceback >&2; echo ValueError: bad pixel 12 >&2; exit 3'")
    bad_config = make_spec(amqp_url, "", queues, PREFETCH="lots")
    failing = await backend.submit(bad_task, 1)
    misconfigured = await backend.submit(bad_config, 1)
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.publish(queues[0], "poison")

    [job] = await final_jobs(backend, failing)
    assert (job.state, job.exit_code) == (JobState.FAILED, 1)
    assert job.last_error == "ContainerRunError: task failed (exit code 3): ValueError: bad pixel 12"
    [job] = await final_jobs(backend, misconfigured)
    assert (job.state, job.exit_code) == (JobState.FAILED, 2)
    assert job.last_error is not None and "EWMS_PILOT_PREFETCH" in job.last_error


async def test_cancel_removes_running_pilots_even_from_a_restarted_tms(
    backend: LocalScheduler, queues: tuple[str, str], amqp_url: str
) -> None:
    cluster = await backend.submit(make_spec(amqp_url, "", queues), 2)

    async def running() -> bool:
        return all(j.state is JobState.RUNNING for j in await backend.status(cluster))

    await wait_for(running, "both pilots running")
    restarted = LocalScheduler(backend.state_dir, kill_grace=5)  # a new TMS process: no child handles, only files
    assert [j.state for j in await restarted.status(cluster)] == [JobState.RUNNING, JobState.RUNNING]

    await restarted.cancel(cluster)
    jobs = await final_jobs(restarted, cluster)
    assert [(j.state, j.last_error) for j in jobs] == [(JobState.REMOVED, None)] * 2  # our own removal: no error
    assert [j.state for j in await final_jobs(backend, cluster)] == [JobState.REMOVED] * 2
    assert await restarted.submit(make_spec(amqp_url, "", queues), 1) == cluster + 1  # ids never reused
    await restarted.cancel(cluster + 1)


async def test_max_worker_runtime_removes_a_pilot(
    backend: LocalScheduler, queues: tuple[str, str], amqp_url: str
) -> None:
    spec = make_spec(amqp_url, "", queues)
    spec = PilotSpec(spec.taskforce_uuid, spec.workflow_id, spec.task_id, spec.environment, spec.secret_names,
                     max_runtime=1)  # fmt: skip
    cluster = await backend.submit(spec, 1)
    [job] = await final_jobs(backend, cluster)
    assert (job.state, job.last_error) == (JobState.REMOVED, "removed: max_worker_runtime of 1s reached")
