"""Fault 4: a reconstruction that fails 20% of the time, plus a known set of tasks that fail every time.

The broker redelivers a failed task up to the workflow's delivery limit (`WMS_MAX_DELIVERIES`): the
random failures are retried and succeed; the tasks that fail every delivery are dead-lettered, the scanner
takes them from the DLQ, reports them in the manifest (`dead_tasks`) and leaves their pixels out; the
scan ends `SCAN_FINISHED__PARTIAL`, its skymap otherwise the one `dummy` makes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest

from tests.system import expected_skymap_async, pixels_once

pytestmark = pytest.mark.slow
NSIDES = {"8": 0, "32": 4}
MAX_DELIVERIES = 3
ALWAYS_FAIL_EVERY = 97  # nside-8 pixels 0, 97, ..., 679 (and whatever lies inside them) fail every time
OPTIONS = {"failure_rate": 0.2, "always_fail_every": ALWAYS_FAIL_EVERY}


def always_fails(nside: int, pixel: int) -> bool:
    theta, phi = healpy.pix2ang(nside, pixel)
    return int(healpy.ang2pix(8, theta, phi)) % ALWAYS_FAIL_EVERY == 0


async def test_failing_tasks_are_retried_and_those_that_always_fail_are_dead_lettered_and_reported(
    system_factory: Any,
) -> None:
    system = await system_factory(wms={"max_deliveries": MAX_DELIVERIES})
    undisturbed = asyncio.create_task(expected_skymap_async({"8": 0}))
    scan_id = await system.post(NSIDES, reco_algo="crash_dummy", reco_options=OPTIONS)

    result = await system.complete(scan_id)
    manifest = await system.manifest(scan_id)
    assert manifest["scan_state"] == "SCAN_FINISHED__PARTIAL" and result["is_final"]
    dead = {(t["nside"], t["pixel"]) for t in manifest["dead_tasks"]}
    assert all(t["seed"] == 0 for t in manifest["dead_tasks"])  # crash_dummy: one seed per pixel
    assert dead == {(t["nside"], t["pixel"]) for t in result["summary"]["dead_tasks"]}
    assert dead == {(p["nside"], p["pixel"]) for p in result["summary"]["missing_pixels"]}

    # every pixel once, the dead ones left out; what was requested is the rows plus the dead
    rows = {int(key.split("-")[1]): set(pixels) for key, pixels in pixels_once(result["skyscan_result"]).items()}
    for nside, pixels in rows.items():
        requested = pixels | {pixel for n, pixel in dead if n == nside}
        assert not pixels & {pixel for n, pixel in dead if n == nside}
        # each task that always fails was dead-lettered; the random failures mostly were not
        assert {p for p in requested if always_fails(nside, p)} <= {p for n, p in dead if n == nside}
    assert rows[8] | {pixel for n, pixel in dead if n == 8} == set(range(768))
    assert {p for p in range(768) if p % ALWAYS_FAIL_EVERY == 0} <= {p for n, p in dead if n == 8}

    # the values that came back are dummy's, undisturbed by the failures and retries
    level = (await undisturbed)["nside-8"]
    wanted = [row for row in level["data"] if row[0] in rows[8]]
    assert result["skyscan_result"]["nside-8"]["data"] == wanted

    await system.workflow_ended(scan_id, "FINISHED")
    summaries = system.tms.pilot_summaries()
    failures = sum(s["events_failed"] for s in summaries)
    # a dead task failed MAX_DELIVERIES times; more failures than that means failed tasks succeeded on a retry
    assert failures > MAX_DELIVERIES * len(dead), (failures, len(dead))
    assert sum(s["events_retried"] for s in summaries) > 0
    progress = manifest["progress"]
    assert progress["dead_tasks"] == len(dead) and progress["tasks_done"] == progress["tasks_expected"]
    assert np.isfinite(result["summary"]["best_fit"]["llh"])
