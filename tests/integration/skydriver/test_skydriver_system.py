"""Issue 7's proof, all real: a scan POSTed to skydriver runs through the WMS, a TMS's pilots and a scanner.

The WMS and skydriver run in this process (with their loops); the TMS (`local` backend) is a process of
its own that starts pilots as processes; skydriver's `local` launcher starts the scanner as a process.
Everything talks over the real broker and the MongoDB wire server (`tests/system.py`, fixture `system`;
`tests/faults/` breaks the same system on purpose). The scans use the `dummy` reconstruction, whose
minimum is known (the event's line-fit direction), run by the pilots in-process (`SKYDRIVER_RECO_RUNNER=callable`).
"""

from __future__ import annotations

import os
import signal

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest
import skyreader  # type: ignore[import-untyped]

from skydriver.event import Event
from skydriver.event.coords import angular_distance
from skydriver.recos.dummy import Dummy
from tests.integration.skydriver.conftest import EVENT
from tests.integration.test_tms_local import wait_for
from tests.system import PILOTS, SCAN_GUARD, System

pytestmark = pytest.mark.slow


def dummy_minimum() -> tuple[float, float]:
    return Dummy(Event.from_dict(EVENT)).minimum


async def test_a_scan_runs_to_a_skymap_whose_best_fit_is_the_known_minimum(system: System) -> None:
    manifest = await system.skydriver.post_scan(system.body({"8": 0, "64": 4}))
    scan_id = manifest["scan_id"]
    result = await system.complete(scan_id)
    assert result["is_final"] is True and result["scan_id"] == scan_id

    skymap = skyreader.SkyScanResult.deserialize(result["skyscan_result"])
    assert sorted(skymap.result) == ["nside-64", "nside-8"] and len(skymap.result["nside-8"]) == 768
    best_ra, best_dec = skymap.best_dir
    assert skymap.best_fit.dtype.metadata["nside"] == 64
    # the best pixel at the finest nside is the one the minimum lies in
    ra, dec = dummy_minimum()
    assert skymap.best_fit["index"] == healpy.ang2pix(64, np.pi / 2 - dec, ra)
    assert angular_distance(best_ra, best_dec, ra, dec) <= healpy.max_pixrad(64)

    await system.workflow_ended(scan_id, "FINISHED")
    status = await system.status(scan_id)
    assert status["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY" and status["ewms_deactivated"] == "FINISHED"

    async def scanner_exited() -> bool:  # by itself, once it told skydriver the workflow is finished
        return (await system.status(scan_id))["scanner"]["alive"] is False

    await wait_for(scanner_exited, f"the scanner of {scan_id} exited", guard=SCAN_GUARD)

    rescan = await system.skydriver.ok(system.skydriver.user.post(f"/scan/{scan_id}/actions/rescan", {}))
    assert rescan["rescan_of"] == scan_id and rescan["scan_id"] != scan_id
    request = await system.skydriver.ok(system.skydriver.user.get(f"/scan-request/{scan_id}"))
    assert request["rescan_ids"] == [rescan["scan_id"]]
    again = await system.complete(rescan["scan_id"])
    assert again["skyscan_result"] == result["skyscan_result"]  # the same event, the same deterministic skymap


async def test_deleting_a_running_scan_stops_its_pilots_its_workflow_and_its_scanner(system: System) -> None:
    scan_id = (await system.skydriver.post_scan(system.body({"32": 0})))["scan_id"]  # 12,288 pixels: a while

    async def pilots_working() -> bool:
        return len((await system.checkpoint(scan_id))["results"]) > 0

    await wait_for(pilots_working, f"first results of {scan_id}", guard=SCAN_GUARD)
    handle = (await system.skydriver.ok(system.skydriver.user.get(f"/scan/{scan_id}/manifest")))["scanner"]["handle"]
    deleted = await system.skydriver.ok(system.skydriver.user.request("DELETE", f"/scan/{scan_id}", {}))
    assert deleted["manifest"]["is_deleted"] is True and deleted["manifest"]["ewms_deactivated"] == "ABORTED"
    assert deleted["manifest"]["scan_state"] == "STOPPED__PARTIAL_RESULT_GENERATED"
    assert not await system.skydriver.skydriver.launcher.alive(handle)

    await system.workflow_ended(scan_id, "ABORTED")
    status = await system.status(scan_id)
    assert status["is_deleted"] is True and status["scan_complete"] is False
    assert (await system.skydriver.user.get(f"/scan/{scan_id}")).status == 404  # deleted: gone unless asked for


async def test_a_killed_scanner_is_restarted_and_resumes_without_redoing_pixels(system: System) -> None:
    scan_id = (await system.skydriver.post_scan(system.body({"16": 0, "64": 8})))["scan_id"]

    async def well_under_way() -> bool:
        checkpoint = await system.checkpoint(scan_id)
        return len(checkpoint["published"]) >= 12 * 16**2 and len(checkpoint["results"]) >= 500

    await wait_for(well_under_way, f"{scan_id}: every first-level task published, 500 results in", guard=SCAN_GUARD)
    manifest = await system.skydriver.ok(system.skydriver.user.get(f"/scan/{scan_id}/manifest"))
    first = manifest["scanner"]["handle"]
    identity = system.skydriver.skydriver.launcher.identity(first)  # type: ignore[attr-defined]
    os.kill(identity.pid, signal.SIGKILL)

    result = await system.complete(scan_id)
    manifest = await system.skydriver.ok(system.skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scanner"]["restarts"] == 1 and manifest["scanner"]["handle"] != first
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY"

    await system.workflow_ended(scan_id, "FINISHED")
    tasks = sum(len(nside["data"]) for nside in result["skyscan_result"].values())  # dummy: one seed per pixel
    reconstructed = sum(summary["events_done"] for summary in system.tms.pilot_summaries())
    assert len(system.tms.pilot_summaries()) == PILOTS
    # each task reconstructed once: the restarted scanner republished nothing the first had published
    assert reconstructed == tasks
