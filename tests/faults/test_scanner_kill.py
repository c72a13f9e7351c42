"""Fault 3: the scanner SIGKILLed in the middle of a scan.

skydriver's watchdog sees it gone and starts a successor, which restores the scan from the checkpoints
(tasks published, results recorded) and carries on: the scan completes with the skymap an undisturbed
scan makes. Nothing is reconstructed twice except, at most, the tasks that were in flight when the first
scanner died (published, their results not yet recorded); reconstructions are counted by the pilots.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.integration.test_tms_local import wait_for
from tests.system import PILOTS, SCAN_GUARD, System, expected_skymap_async, pixels_once
from tests.testsupport import wait_gone

pytestmark = pytest.mark.slow
NSIDES = {"16": 0, "64": 8}
FIRST_LEVEL = 12 * 16**2


def keys(checkpoint: dict[str, list]) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:  # type: ignore[type-arg]
    """The (nside, pixel) of the tasks published and of the results recorded (dummy: one seed per pixel)."""
    published = {(int(p[0]), int(p[1])) for p in checkpoint["published"]}
    results = {(int(r["nside"]), int(r["pixel"])) for r in checkpoint["results"]}
    return published, results


async def test_a_killed_scanner_is_restarted_and_redoes_at_most_what_was_in_flight(system: System) -> None:
    expected = asyncio.create_task(expected_skymap_async(NSIDES))
    scan_id = await system.post(NSIDES)

    async def first_level_out() -> bool:
        published, results = keys(await system.checkpoint(scan_id))
        return len(published) >= FIRST_LEVEL and len(results) >= 300

    await wait_for(first_level_out, f"{scan_id}: the first level published, 300 results in", guard=SCAN_GUARD)
    first = (await system.manifest(scan_id))["scanner"]["handle"]
    identity = system.skydriver.skydriver.launcher.identity(first)  # type: ignore[attr-defined]
    os.kill(identity.pid, signal.SIGKILL)
    assert await asyncio.to_thread(wait_gone, identity.pid)

    published, results = keys(await system.checkpoint(scan_id))  # all the dead scanner ever recorded
    # it died inside the first level: every task of it recorded as published, no second level requested yet,
    # so nothing it published went unrecorded
    assert len(published) == FIRST_LEVEL and len(results) < FIRST_LEVEL and results <= published
    in_flight = published - results

    result = await system.complete(scan_id)
    manifest = await system.manifest(scan_id)
    assert manifest["scanner"]["restarts"] == 1 and manifest["scanner"]["handle"] != first
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY"
    pixels_once(result["skyscan_result"])
    assert result["skyscan_result"] == await expected
    assert manifest["scan_metadata"]["restored_results"] >= len(results)  # the successor started from them

    await system.workflow_ended(scan_id, "FINISHED")
    summaries = system.tms.pilot_summaries()
    assert len(summaries) == PILOTS
    tasks = sum(len(level["data"]) for level in result["skyscan_result"].values())  # dummy: one task per pixel
    reconstructed = sum(summary["events_done"] for summary in summaries)
    assert 0 <= reconstructed - tasks <= len(in_flight), (reconstructed, tasks, len(in_flight))
