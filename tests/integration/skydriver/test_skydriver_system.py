"""Issue 7's proof, all real: a scan POSTed to skydriver runs through the WMS, a TMS's pilots and a scanner.

The WMS and skydriver run in this process (with their loops); the TMS (`local` backend) is a process of
its own that starts pilots as processes; skydriver's `local` launcher starts the scanner as a process.
Everything talks over the real broker and the MongoDB wire server. The scans use the `dummy`
reconstruction, whose minimum is known (the event's line-fit direction), run by the pilots in-process
(`SKYDRIVER_RECO_RUNNER=callable`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest
import skyreader  # type: ignore[import-untyped]

from ewms_tms.schedulers.local import LocalScheduler
from skydriver.event import Event
from skydriver.event.coords import angular_distance
from skydriver.recos.dummy import Dummy
from tests.integration.conftest import WMSUnderTest, make_token
from tests.integration.skydriver.conftest import EVENT, SkyDriverUnderTest, scan_body
from tests.integration.test_tms_local import final_jobs, wait_for

pytestmark = pytest.mark.slow
Factory = Callable[..., Awaitable[SkyDriverUnderTest]]
WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
SCAN_GUARD = 240.0  # a safety net against a hung scan, not a timing assertion
PILOTS = 2


class TMS:
    """One TMS process with the local backend, for one cluster location; its pilots are processes too."""

    def __init__(self, wms: WMSUnderTest, state_dir: Path) -> None:
        self.location = f"system-{uuid.uuid4().hex[:12]}"
        self.state_dir = state_dir
        self.log = state_dir.parent / "tms.log"
        env = {
            **os.environ,
            "TMS_WMS_URL": wms.url,
            "TMS_WMS_TOKEN": make_token("tms", sub=f"tms-{self.location}"),
            "TMS_CLUSTER_LOCATION": self.location,
            "TMS_SCHEDULER": "local",
            "TMS_STATE_DIR": str(state_dir),
            "TMS_STARTER_INTERVAL": "0.2",
            "TMS_WATCHER_INTERVAL": "0.3",
            "TMS_STOPPER_INTERVAL": "0.2",
            "TMS_MAX_BACKOFF": "1",
            "TMS_LOCAL_KILL_GRACE": "5",
            "TMS_LOCAL_STOP_PILOTS_ON_EXIT": "true",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ewms_tms"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    @property
    def jobs(self) -> LocalScheduler:
        return LocalScheduler(self.state_dir / "local-jobs")

    def clusters(self) -> list[int]:
        return sorted(int(p.name) for p in self.jobs.state_dir.glob("[0-9]*"))

    async def all_pilots_ended(self) -> None:
        for cluster in self.clusters():
            await final_jobs(self.jobs, cluster)

    def pilot_summaries(self) -> list[dict[str, Any]]:
        """Every pilot's JSON summary (written when it stops)."""
        return [json.loads(p.read_text()) for p in sorted(self.jobs.state_dir.glob("*/*/summary.json"))]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def tms_factory(tmp_path: Path) -> Iterator[Callable[[WMSUnderTest], TMS]]:
    started: list[TMS] = []

    def make(wms: WMSUnderTest) -> TMS:
        tms = TMS(wms, tmp_path / "tms-state")
        started.append(tms)
        return tms

    yield make
    for tms in started:
        tms.stop()
        assert tms.process.returncode == 0, tms.log.read_text()[-3000:]


class System:
    """The WMS, skydriver and a TMS, and what a user does with them."""

    def __init__(self, wms: WMSUnderTest, skydriver: SkyDriverUnderTest, tms: TMS) -> None:
        self.wms = wms
        self.skydriver = skydriver
        self.tms = tms

    def body(self, nsides: dict[str, int], **changes: Any) -> dict[str, Any]:
        env = {"SKYSCAN_PROGRESS_INTERVAL": 1}  # progress (and the heartbeat) every second
        return scan_body(nsides=nsides, request_clusters={self.tms.location: PILOTS}, scanner_server_env=env, **changes)

    async def status(self, scan_id: str) -> dict[str, Any]:
        status: dict[str, Any] = await self.skydriver.ok(self.skydriver.user.get(f"/scan/{scan_id}/status"))
        return status

    async def complete(self, scan_id: str) -> dict[str, Any]:
        """What a user's script does: poll the status until the scan is complete, then GET the result."""

        async def done() -> dict[str, Any] | None:
            status = await self.status(scan_id)
            assert not status["scan_state"].startswith(("FAILED", "STOPPED")), status
            return status if status["scan_complete"] else None

        await wait_for(done, f"scan {scan_id} complete", guard=SCAN_GUARD, interval=0.5)
        result: dict[str, Any] = await self.skydriver.ok(self.skydriver.user.get(f"/scan/{scan_id}/result"))
        return result

    async def checkpoint(self, scan_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.skydriver.ok(
            self.skydriver.system(scan_id).get(f"/scan/{scan_id}/checkpoint")
        )
        return answer

    async def workflow(self, scan_id: str) -> dict[str, Any]:
        manifest = await self.skydriver.ok(
            self.skydriver.user.get(f"/scan/{scan_id}/manifest", query={"include_deleted": "True"})
        )
        answer = await self.wms.admin.get(f"/v1/workflows/{manifest['ewms_workflow_id']}")
        assert answer.status == 200, answer.json
        workflow: dict[str, Any] = answer.json
        return workflow

    async def workflow_ended(self, scan_id: str, how: str) -> None:
        """The workflow is deactivated `how`, every taskforce complete, and every pilot process gone."""

        async def ended() -> bool:
            workflow = await self.workflow(scan_id)
            found = await self.wms.admin.post(
                "/v1/query/taskforces", {"query": {"workflow_id": workflow["workflow_id"]}, "projection": ["phase"]}
            )
            phases = {tf["phase"] for tf in found.json["taskforces"]}
            return workflow["deactivated"] == how and phases == {"condor-complete"}

        await wait_for(ended, f"the workflow of {scan_id} {how} with every taskforce complete", guard=SCAN_GUARD)
        await self.tms.all_pilots_ended()


@pytest.fixture
async def system(
    wms_factory: WMSFactory, skydriver_factory: Factory, tms_factory: Callable[[WMSUnderTest], TMS]
) -> AsyncIterator[System]:
    wms = await wms_factory(run_loops=True, provision_poll_seconds=0.2, janitor_poll_seconds=0.5)
    skydriver = await skydriver_factory(
        wms=wms, run_loops=True, reco_runner="callable", starter_interval=0.2, watchdog_interval=0.5
    )
    yield System(wms, skydriver, tms_factory(wms))


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
    assert status["scanner"]["alive"] is False

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
