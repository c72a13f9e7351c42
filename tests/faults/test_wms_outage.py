"""Fault 5: the WMS down for 30 s in the middle of things.

It goes down at the worst moment for the TMS: right after it handed out a claim on a scan's taskforce,
before the TMS could confirm a submission. While it is down a second scan is requested, so skydriver's
starter has to wait for it too, and the first scan's end cannot be told to it. Then it comes back on the
same port with the same database. The TMS and skydriver retry until it answers; nothing is submitted twice
(one workflow per scan, one cluster per taskforce) and both scans complete.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.test_tms_local import wait_for
from tests.system import SCAN_GUARD, System, expected_skymap_async, pixels_once, stable_port

pytestmark = pytest.mark.slow
DOWN_FOR = 30.0  # the outage (the fault itself, not a wait for something to happen)
SECOND_SCAN_AT = 20.0  # into the outage: the second scan's start is retried before and after the WMS is back
NSIDES = {"8": 0, "32": 4}


def stop_at_first_claim(system: System) -> asyncio.Event:
    """An event set the moment the WMS has recorded a claim for the TMS (before the TMS hears of it)."""
    claimed = asyncio.Event()
    taskforces = system.wms.wms.db.taskforces
    claim: Callable[..., Awaitable[Any]] = taskforces.claim

    async def claim_and_tell(*args: Any, **kwargs: Any) -> Any:
        doc = await claim(*args, **kwargs)
        if doc is not None:
            claimed.set()
        return doc

    taskforces.claim = claim_and_tell  # type: ignore[method-assign]
    return claimed


async def test_tms_and_skydriver_ride_out_a_wms_outage_without_submitting_twice(system_factory: Any) -> None:
    system: System = await system_factory(wms={"port": stable_port()})  # it must come back where they look
    expected = asyncio.create_task(expected_skymap_async(NSIDES))
    claimed = stop_at_first_claim(system)
    first = await system.post(NSIDES)

    await asyncio.wait_for(claimed.wait(), SCAN_GUARD)
    await system.wms.stop()
    down_since = time.monotonic()

    async def tms_retried() -> bool:
        return "trying again in" in system.tms.log_text()

    await wait_for(tms_retried, "the TMS noticed the WMS is gone and backs off", guard=SCAN_GUARD)
    await asyncio.sleep(max(0.0, down_since + SECOND_SCAN_AT - time.monotonic()))  # the outage goes on
    second = await system.post(NSIDES)

    async def start_retried() -> bool:
        manifest = await system.manifest(second)
        return manifest["scan_state"] == "PENDING__PRESTARTUP" and "starting failed" in (manifest["error"] or "")

    await wait_for(start_retried, "skydriver's starter found the WMS down", guard=SCAN_GUARD)
    await asyncio.sleep(max(0.0, down_since + DOWN_FOR - time.monotonic()))  # the outage goes on
    await system.wms.start()

    for scan_id in (first, second):
        result = await system.complete(scan_id)
        pixels_once(result["skyscan_result"])
        assert result["skyscan_result"] == await expected
        assert (await system.manifest(scan_id))["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY"
    for scan_id in (first, second):
        await system.workflow_ended(scan_id, "FINISHED")

    # one workflow per scan, one cluster per taskforce, and the TMS started no other cluster
    taskforces = []
    for scan_id in (first, second):
        workflows = await system.workflows_of(scan_id)
        assert workflows == [(await system.manifest(scan_id))["ewms_workflow_id"]], workflows
        taskforces += await system.taskforces(workflows[0])
    assert len(taskforces) == 2 and all(tf["cluster_id"] is not None for tf in taskforces)
    clusters = system.tms.cluster_taskforces()
    assert clusters == {tf["cluster_id"]: tf["taskforce_uuid"] for tf in taskforces}, (clusters, taskforces)
