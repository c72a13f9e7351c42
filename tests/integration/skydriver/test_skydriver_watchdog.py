"""The watchdog: a dead or silent scanner is restarted once, then the scan fails and its workflow is aborted;
ended scans are cleaned up at the WMS, again and again until the WMS answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skydriver.launchers.local import LocalLauncher
from tests.integration.conftest import FakeClock, WMSUnderTest
from tests.integration.skydriver.conftest import SkyDriverUnderTest, scanner_env, stand_in_launcher
from tests.testsupport import wait_gone

Factory = Callable[..., Awaitable[SkyDriverUnderTest]]
WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
TIMEOUT = 120.0


async def running_scan(skydriver: SkyDriverUnderTest) -> dict[str, Any]:
    """A scan the starter started; its manifest."""
    scan_id = (await skydriver.post_scan())["scan_id"]
    await skydriver.skydriver.starter.run_once()
    manifest: dict[str, Any] = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scanner"] is not None, manifest
    return manifest


async def workflow_deactivated(wms: WMSUnderTest, workflow_id: str) -> str | None:
    deactivated: str | None = (await wms.admin.get(f"/v1/workflows/{workflow_id}")).json["deactivated"]
    return deactivated


def wait_exited(launcher: LocalLauncher, handle: str) -> None:
    identity = launcher.identity(handle)
    assert identity is not None and wait_gone(identity.pid)


async def test_a_silent_scanner_is_restarted_once_then_the_scan_fails(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    clock = FakeClock()
    launcher = stand_in_launcher(tmp_path / "scanners")
    skydriver = await skydriver_factory(wms=wms, launcher=launcher, clock=clock, watchdog_timeout=TIMEOUT)
    manifest = await running_scan(skydriver)
    scan_id, first = manifest["scan_id"], manifest["scanner"]["handle"]
    first_env = scanner_env(launcher, first)
    watchdog = skydriver.skydriver.watchdog

    clock.advance(TIMEOUT - 1)  # a report just in time keeps it going
    await skydriver.ok(skydriver.system(scan_id).request("PATCH", f"/scan/{scan_id}/manifest", {}))
    clock.advance(TIMEOUT - 1)
    await watchdog.run_once()
    assert (await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest")))["scanner"]["handle"] == first

    clock.advance(2)
    await watchdog.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    second = manifest["scanner"]["handle"]
    assert second != first and manifest["scanner"]["restarts"] == 1 and not await launcher.alive(first)
    assert manifest["scanner"]["last_heartbeat"] == clock()
    assert manifest["scan_state"] == "PENDING__WAITING_ON_FIRST_PIXEL_RECO"  # the state it had
    second_env = scanner_env(launcher, second)
    assert json.loads(second_env["SKYSCAN_MQ_PROFILES"]) == json.loads(first_env["SKYSCAN_MQ_PROFILES"])
    assert second_env["SKYSCAN_SCAN_ID"] == scan_id

    clock.advance(TIMEOUT + 1)
    await watchdog.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scan_state"] == "FAILED__SCANNER" and manifest["ewms_deactivated"] == "ABORTED"
    assert manifest["error"] == f"the scanner sent no report for {TIMEOUT + 1:.0f} s after 1 restart(s)"
    assert await workflow_deactivated(wms, manifest["ewms_workflow_id"]) == "ABORTED"
    assert not await launcher.alive(second) and manifest["scanner"]["stopped_at"] == clock()
    status = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/status"))
    assert status["scanner"] == {"alive": False, "restarts": 1, "last_heartbeat": clock() - TIMEOUT - 1}


async def test_a_scanner_that_exits_is_restarted_once_then_the_scan_fails(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    launcher = stand_in_launcher(tmp_path / "scanners", exits=True)
    skydriver = await skydriver_factory(wms=wms, launcher=launcher)
    manifest = await running_scan(skydriver)
    scan_id = manifest["scan_id"]
    wait_exited(launcher, manifest["scanner"]["handle"])
    await skydriver.skydriver.watchdog.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scanner"]["restarts"] == 1
    wait_exited(launcher, manifest["scanner"]["handle"])
    await skydriver.skydriver.watchdog.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scan_state"] == "FAILED__SCANNER" and manifest["error"] == "the scanner exited after 1 restart(s)"
    assert await workflow_deactivated(wms, manifest["ewms_workflow_id"]) == "ABORTED"


async def test_a_finished_scan_finishes_its_workflow_and_keeps_its_scanner(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    launcher = stand_in_launcher(tmp_path / "scanners")
    skydriver = await skydriver_factory(wms=wms, launcher=launcher)
    manifest = await running_scan(skydriver)
    scan_id = manifest["scan_id"]
    skymap = {"nside-8": {"columns": ["index", "llh"], "data": [[0, 1.0]], "metadata": {"nside": 8}}}
    body = {"skyscan_result": skymap, "is_final": True}
    await skydriver.ok(skydriver.system(scan_id).request("PUT", f"/scan/{scan_id}/result", body))
    await skydriver.skydriver.watchdog.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["ewms_deactivated"] == "FINISHED" and manifest["scanner"]["stopped_at"] is None
    assert await workflow_deactivated(wms, manifest["ewms_workflow_id"]) == "FINISHED"
    assert await launcher.alive(manifest["scanner"]["handle"])  # a finishing scanner exits by itself
    again = await skydriver.ok(skydriver.system(scan_id).post(f"/scan/{scan_id}/ewms/actions/finished", {}))
    assert again == {"workflow_id": manifest["ewms_workflow_id"], "ewms_deactivated": "FINISHED"}


async def test_a_cleanup_the_wms_missed_is_done_at_a_later_pass(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    launcher = stand_in_launcher(tmp_path / "scanners")
    reaching = await skydriver_factory(wms=wms, launcher=launcher)
    # a second replica over the same database that cannot reach the WMS
    cut_off = await skydriver_factory(launcher=launcher, mongodb_database=reaching.skydriver.config.mongodb_database)
    manifest = await running_scan(reaching)
    scan_id, workflow_id = manifest["scan_id"], manifest["ewms_workflow_id"]

    deleted = await cut_off.ok(cut_off.user.request("DELETE", f"/scan/{scan_id}", {}))
    assert deleted["manifest"]["is_deleted"] is True and deleted["manifest"]["ewms_deactivated"] is None
    assert not await launcher.alive(manifest["scanner"]["handle"])  # what could be done was done
    status = await cut_off.ok(cut_off.user.get(f"/scan/{scan_id}/status"))
    assert "did not answer" in status["ewms"]["error"]
    await cut_off.skydriver.watchdog.run_once()  # still out of reach: kept for later, no harm
    assert await workflow_deactivated(wms, workflow_id) is None

    await reaching.skydriver.watchdog.run_once()
    assert await workflow_deactivated(wms, workflow_id) == "ABORTED"
    manifest = await reaching.ok(reaching.user.get(f"/scan/{scan_id}/manifest", query={"include_deleted": "true"}))
    assert manifest["ewms_deactivated"] == "ABORTED"
    assert await reaching.db.manifests.cleanup_pending() == []


async def end_every_taskforce(wms: WMSUnderTest, workflow_id: str) -> list[str]:
    """What the TMS reports when every pilot of the workflow has ended: submitted, then complete.

    Returns the taskforces' cluster locations."""
    answer = await wms.admin.post("/v1/query/taskforces", {"query": {"workflow_id": workflow_id}})
    for taskforce in answer.json["taskforces"]:
        uuid = taskforce["taskforce_uuid"]
        if taskforce["phase"] == "pending-starter":
            assert (await wms.tms.post(f"/v1/tms/condor-submit/taskforces/{uuid}", {"cluster_id": 1})).status == 200
        if taskforce["phase"] != "condor-complete":
            assert (await wms.tms.post(f"/v1/tms/condor-complete/taskforces/{uuid}", {})).status == 200
    return [taskforce["cluster_location"] for taskforce in answer.json["taskforces"]]


async def test_a_scan_whose_pilots_all_ended_fails_after_the_grace_time_unless_workers_are_added(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=False)
    clock = FakeClock()
    grace = 60.0
    skydriver = await skydriver_factory(
        wms=wms, launcher=stand_in_launcher(tmp_path / "scanners"), clock=clock, no_pilots_timeout=grace
    )
    watchdog = skydriver.skydriver.watchdog
    manifest = await running_scan(skydriver)
    scan_id, workflow_id = manifest["scan_id"], manifest["ewms_workflow_id"]

    async def state_after(seconds: float) -> str:
        clock.advance(seconds)
        await skydriver.ok(skydriver.system(scan_id).request("PATCH", f"/scan/{scan_id}/manifest", {}))  # alive
        await watchdog.run_once()
        manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
        assert "pilots_gone_since" not in manifest  # internal
        return str(manifest["scan_state"])

    assert await state_after(grace * 2) == "PENDING__WAITING_ON_FIRST_PIXEL_RECO"  # pilots to come: waits
    locations = await end_every_taskforce(wms, workflow_id)
    assert await state_after(1) == "PENDING__WAITING_ON_FIRST_PIXEL_RECO"  # the grace time starts
    assert await state_after(grace - 2) == "PENDING__WAITING_ON_FIRST_PIXEL_RECO"
    added = await skydriver.user.post(
        f"/scan/{scan_id}/actions/add-workers", {"cluster_location": locations[0], "n_workers": 1}
    )
    assert added.status == 200, added.json
    assert await state_after(grace * 2) == "PENDING__WAITING_ON_FIRST_PIXEL_RECO"  # new pilots to come: waits

    assert len(await end_every_taskforce(wms, workflow_id)) == len(locations) + 1
    assert await state_after(1) == "PENDING__WAITING_ON_FIRST_PIXEL_RECO"
    assert await state_after(grace) == "FAILED__WORKFLOW"
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["error"].startswith(f"workflow {workflow_id} had no pilots left or to come for 60 s")
    assert f"{len(locations) + 1} condor-complete" in manifest["error"] and "add-workers" in manifest["error"]
    await watchdog.run_once()  # the cleanup pass
    assert await workflow_deactivated(wms, workflow_id) == "ABORTED"
