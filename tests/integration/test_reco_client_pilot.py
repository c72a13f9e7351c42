"""The reco client run by real pilots (`python -m ewms_pilot`) on the real broker, as a workflow's task runs it.

The scan's event reaches the pilot only through the task environment (`EWMS_PILOT_TASK_ENV_JSON`
holding `event_env(event)`, as the TMS sets it from the workflow's task `environment`); pixel tasks go
in as JSON objects, pixel results come out as JSON objects. Each test publishes its tasks before the
pilot starts and reads the queues after it exited.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ewms_mq
from skydriver.event import Event, TrackSpec, simulate_track
from skydriver.recos import PixelResult, PixelTask, run_pixel_task
from skydriver.recos.transport import event_env

PROCESS_LIMIT = 120.0  # a safety net against a hung pilot, not a timing assertion
COMMAND = f"{sys.executable} -m skydriver.recos.client --in {{{{INFILE}}}} --out {{{{OUTFILE}}}}"
CALLABLE = "skydriver.recos.client:run"


@dataclass
class PilotRun:
    returncode: int
    summary: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def event() -> Event:
    return simulate_track(TrackSpec(ra=3.0, dec=-0.4, energy_gev=4000.0), 21)


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[ewms_mq.RabbitMQBroker]:
    async with await ewms_mq.connect(amqp_url) as b:
        yield b


@pytest.fixture
async def queues(broker: ewms_mq.RabbitMQBroker, queue_factory: Callable[..., str]) -> tuple[str, str]:
    """The workflow's to-clients and from-clients queues."""
    tasks, results = queue_factory("to-clients"), queue_factory("from-clients")
    await broker.declare_queue(tasks)
    await broker.declare_queue(results)
    return tasks, results


@pytest.fixture
def run_pilot(amqp_url: str, tmp_path: Path, queues: tuple[str, str], event: Event) -> Callable[..., Any]:
    """`await run_pilot(**EWMS_PILOT_settings)`: one pilot on the queues, run to its exit."""

    async def run(**settings: str) -> PilotRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EWMS_PILOT_", "_EWMS_PILOT_", "SKYDRIVER_"))}
        env.update(
            EWMS_PILOT_QUEUE_INCOMING=queues[0],
            EWMS_PILOT_QUEUE_OUTGOING=queues[1],
            EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS=amqp_url,
            EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS=amqp_url,
            EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(tmp_path / "pilot"),
            EWMS_PILOT_TASK_ENV_JSON=json.dumps(event_env(event)),
            EWMS_PILOT_INFILE_EXT=".json",
            EWMS_PILOT_OUTFILE_EXT=".json",
            EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="2",
        )
        env.update({f"EWMS_PILOT_{name}": value for name, value in settings.items()})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ewms_pilot", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(PROCESS_LIMIT):
                stdout, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
        return PilotRun(proc.returncode or 0, json.loads(stdout.decode().strip().splitlines()[-1]), stderr.decode())

    return run


async def drain(broker: ewms_mq.RabbitMQBroker, queue: str) -> list[Any]:
    """Every message in `queue` now (acked); its depth says how many to read."""
    depth = (await broker.queue_depth(queue)).messages
    got: list[Any] = []
    if depth:
        async with broker.consume(queue, prefetch=depth, idle_timeout=PROCESS_LIMIT) as messages:
            async for msg in messages:
                got.append(msg.data)
                await msg.ack()
                if len(got) == depth:
                    break
    return got


def pixel_tasks(event: Event, reco_algo: str, pixels: range, **options: Any) -> list[PixelTask]:
    return [PixelTask(event.ref, reco_algo, 8, pixel, 0, dict(options)) for pixel in pixels]


def expected(event: Event, tasks: list[PixelTask]) -> dict[tuple[int, int, int], float]:
    """llh per key, computed here with the same code (the dummy reco is deterministic)."""
    plain = [PixelTask(t.event_ref, "dummy", t.nside, t.pixel, t.seed) for t in tasks]
    return {t.key: run_pixel_task(t.to_dict(), event)["llh"] for t in plain}


def llhs(outputs: list[Any]) -> dict[tuple[int, int, int], float]:
    results = [PixelResult.from_dict(doc) for doc in outputs]
    assert len({r.key for r in results}) == len(results), "each task answered once"
    return {r.key: r.llh for r in results}


@pytest.mark.parametrize("runner", ["command", "callable"])
async def test_pilot_runs_pixel_tasks_with_the_event_from_its_task_environment(
    runner: str, broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], run_pilot: Any, event: Event
) -> None:
    tasks = pixel_tasks(event, "dummy", range(100, 104) if runner == "command" else range(100, 140))
    await broker.publish_many(queues[0], [t.to_dict() for t in tasks])
    settings = {"TASK_ARGS": COMMAND} if runner == "command" else {"TASK_CALLABLE": CALLABLE}
    result = await run_pilot(**settings)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.summary["events_done"] == len(tasks) and result.summary["events_failed"] == 0
    assert llhs(await drain(broker, queues[1])) == expected(event, tasks)


async def test_crash_dummy_failures_are_retried_by_the_broker(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], run_pilot: Any, event: Event, management_url: str
) -> None:
    api = ewms_mq.ManagementAPI.for_broker(broker.address, management_url)
    await ewms_mq.apply_dlq_policy(api, queues[0], max_deliveries=20)  # a 0.3 failure rate never runs out
    tasks = pixel_tasks(event, "crash_dummy", range(200, 230), failure_rate=0.3, random_seed=4)
    await broker.publish_many(queues[0], [t.to_dict() for t in tasks])
    result = await run_pilot(TASK_CALLABLE=CALLABLE, STOP_LISTENING_ON_TASK_ERROR="false", MAX_CONSECUTIVE_FAILURES="0")
    assert result.summary["events_failed"] > 0, "the seeded failure sequence fails some tasks"
    assert result.summary["events_retried"] == result.summary["events_failed"]  # each failure came back
    assert {f["reason"].split(":")[0] for f in result.summary["failures"]} == {"RecoCrash"}
    assert llhs(await drain(broker, queues[1])) == expected(event, tasks)
    assert (await broker.queue_depth(ewms_mq.dlq_name(queues[0]))).messages == 0
    assert result.returncode == 1  # failed attempts make a non-zero exit, as upstream


async def test_a_command_that_always_fails_is_dead_lettered_with_its_reason(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], run_pilot: Any, event: Event, management_url: str
) -> None:
    api = ewms_mq.ManagementAPI.for_broker(broker.address, management_url)
    await ewms_mq.apply_dlq_policy(api, queues[0], max_deliveries=2)
    (task,) = pixel_tasks(event, "crash_dummy", range(300, 301), failure_rate=1.0)
    await broker.publish(queues[0], task.to_dict())
    result = await run_pilot(TASK_ARGS=COMMAND, STOP_LISTENING_ON_TASK_ERROR="false", MAX_CONSECUTIVE_FAILURES="0")
    assert result.summary["events_failed"] == 2
    assert "reco failed: RecoCrash: crash_dummy failed on purpose" in result.summary["failures"][0]["stderr_tail"]
    assert await drain(broker, ewms_mq.dlq_name(queues[0])) == [task.to_dict()]  # what the scanner gives up
    assert (await broker.queue_depth(queues[1])).messages == 0
