"""Fault 1: a pilot SIGKILLed in the middle of a scan.

What it held (its prefetched and running pixel tasks, never acked) goes back to the queue and the other
pilot does it: the scan completes with every pixel exactly once, and the skymap is the one an undisturbed
scan makes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import pytest

import ewms_mq
from ewms_tms.schedulers import JobState
from tests.integration.test_tms_local import wait_for
from tests.system import PILOTS, SCAN_GUARD, expected_skymap_async, pixels_once

pytestmark = pytest.mark.slow
NSIDES = {"16": 0, "64": 8}  # 3,072 pixels, then 8 refined ones (16 sub-pixels each, 2 sets)
PREFETCH = 8  # each pilot holds this many deliveries: the victim surely dies with some unacked


async def test_a_pilot_killed_mid_scan_loses_nothing_and_doubles_nothing(system_factory: Any, amqp_url: str) -> None:
    system = await system_factory(tms_env={"TMS_PILOT_ENV_JSON": json.dumps({"EWMS_PILOT_PREFETCH": PREFETCH})})
    expected = asyncio.create_task(expected_skymap_async(NSIDES))
    scan_id = await system.post(NSIDES)
    queue = await system.task_queue(scan_id)

    async with await ewms_mq.connect(amqp_url) as broker:

        async def both_pilots_hold_tasks() -> bool:
            # both consuming with more tasks waiting than they may hold: each holds its full prefetch
            depth = await broker.queue_depth(queue)
            return depth.consumers == PILOTS and depth.messages > PILOTS * PREFETCH

        await wait_for(both_pilots_hold_tasks, "both pilots consuming with tasks to spare", guard=SCAN_GUARD)
    pilots = await system.tms.running_pilots()
    assert len(pilots) == PILOTS, pilots
    victim, pid = sorted(pilots.items())[0]
    os.kill(pid, signal.SIGKILL)

    result = await system.complete(scan_id)
    manifest = await system.manifest(scan_id)
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY" and manifest["dead_tasks"] == []
    pixels_once(result["skyscan_result"])
    assert result["skyscan_result"] == await expected  # every pixel there, once, with the undisturbed value

    await system.workflow_ended(scan_id, "FINISHED")
    cluster = int(victim.split(".")[0])
    states = {job.job_id: job for job in await system.tms.jobs.status(cluster)}
    assert states[victim].state is JobState.FAILED and states[victim].exit_code is None, states[victim]  # a signal
    survivors = system.tms.pilot_summaries()  # the victim wrote none
    assert len(survivors) == PILOTS - 1
    assert sum(s["events_retried"] for s in survivors) >= 1, survivors  # what the victim held came back
