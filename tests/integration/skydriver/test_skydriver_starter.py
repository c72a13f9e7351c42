"""The starter: backlog order, a workflow at the real WMS, a scanner from the real local launcher with the
contract's environment, nothing submitted twice, refusals and outages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.integration.conftest import FakeClock, WMSUnderTest, make_token
from tests.integration.skydriver.conftest import SkyDriverUnderTest, scan_body, scanner_env, stand_in_launcher

Factory = Callable[..., Awaitable[SkyDriverUnderTest]]
WMSFactory = Callable[..., Awaitable[WMSUnderTest]]


async def internal(skydriver: SkyDriverUnderTest, scan_id: str) -> dict[str, Any]:
    doc = await skydriver.db.manifests.get_internal(scan_id)
    assert doc is not None
    return doc


async def wms_workflows(wms: WMSUnderTest) -> list[dict[str, Any]]:
    answer = await wms.admin.post("/v1/query/workflows", {"query": {}})
    workflows: list[dict[str, Any]] = answer.json["workflows"]
    return workflows


async def test_a_wms_outage_puts_the_scan_back_with_a_growing_delay(skydriver_factory: Factory) -> None:
    clock = FakeClock()
    skydriver = await skydriver_factory(clock=clock)  # its WMS URL finds nothing
    scan_id = (await skydriver.post_scan())["scan_id"]
    starter = skydriver.skydriver.starter
    await starter.run_once()
    doc = await internal(skydriver, scan_id)
    assert doc["scan_state"] == "PENDING__PRESTARTUP" and doc["scanner"] is None
    assert doc["starter"]["attempts"] == 1 and doc["starter"]["next_attempt"] == clock() + 2
    assert doc["starter"]["claimed_by"] is None and "cannot reach" in doc["error"]
    await starter.run_once()  # not due yet: nothing happens
    assert (await internal(skydriver, scan_id))["starter"]["attempts"] == 1
    clock.advance(2)
    await starter.run_once()
    doc = await internal(skydriver, scan_id)
    assert doc["starter"]["attempts"] == 2 and doc["starter"]["next_attempt"] == clock() + 4
    backlog = await skydriver.ok(skydriver.user.get("/scans/backlog"))
    assert [e["scan_id"] for e in backlog["entries"]] == [scan_id]  # still waiting, in its place


async def test_scans_start_by_priority_with_a_workflow_and_a_scanner(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    launcher = stand_in_launcher(tmp_path / "scanners")
    skydriver = await skydriver_factory(wms=wms, launcher=launcher, max_active_scans=2)
    low = await skydriver.post_scan(scan_body(priority=0))
    high = await skydriver.post_scan(scan_body(priority=5, request_clusters={"sub-2": 3}))
    mid = await skydriver.post_scan(scan_body(priority=1))
    await skydriver.skydriver.starter.run_once()

    backlog = await skydriver.ok(skydriver.user.get("/scans/backlog"))
    assert [e["scan_id"] for e in backlog["entries"]] == [low["scan_id"]]  # two may run at once
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{high['scan_id']}/manifest"))
    assert manifest["scan_state"] == "PENDING__WAITING_ON_SCANNER_SERVER_STARTUP" and manifest["error"] is None
    assert manifest["scanner"]["launcher"] == "local" and manifest["scanner"]["restarts"] == 0
    workflow_id = manifest["ewms_workflow_id"]
    workflow = await wms.admin.get(f"/v1/workflows/{workflow_id}")
    assert workflow.status == 200 and workflow.json["mq_state"] == "activated"
    assert len(await wms_workflows(wms)) == 2

    env = scanner_env(launcher, manifest["scanner"]["handle"])
    assert env["SKYSCAN_SCAN_ID"] == high["scan_id"] and env["SKYSCAN_SKYDRIVER_URL"] == skydriver.url
    assert env["SKYSCAN_PROGRESS_INTERVAL"] == "5" and env["SKYSCAN_RESULT_INTERVAL"] == "30"
    profiles = json.loads(env["SKYSCAN_MQ_PROFILES"])
    assert set(profiles) == {"to-clients", "from-clients"} and all(p["auth_token"] for p in profiles.values())
    assert not any(k.startswith("SKYDRIVER_") for k in env)
    own = skydriver.with_token(env["SKYSCAN_SKYDRIVER_TOKEN"])  # the scanner's token reaches its scan only
    assert (await own.get(f"/scan-request/{high['scan_id']}")).status == 200
    assert (await own.get(f"/scan-request/{mid['scan_id']}")).status == 403

    for answer in (await skydriver.user.get(f"/scan/{high['scan_id']}"), await own.get(f"/scan/{high['scan_id']}")):
        assert profiles["to-clients"]["auth_token"] not in answer.body.decode()  # credentials never in answers
    status = await skydriver.ok(skydriver.user.get(f"/scan/{high['scan_id']}/status"))
    assert status["scanner"]["alive"] is True and status["ewms"]["workflow_id"] == workflow_id
    assert status["ewms"]["alive"] is True and "error" not in status["ewms"]

    added = await skydriver.ok(
        skydriver.user.post(
            f"/scan/{high['scan_id']}/actions/add-workers", {"n_workers": 4, "cluster_location": "sub-3"}
        )
    )
    taskforce = await wms.admin.get(f"/v1/taskforces/{added['taskforce_uuid']}")
    assert added["n_workers"] == 4 and taskforce.json["cluster_location"] == "sub-3"

    deleted = await skydriver.ok(skydriver.user.request("DELETE", f"/scan/{high['scan_id']}", {}))
    assert deleted["manifest"]["ewms_deactivated"] == "ABORTED"
    assert deleted["manifest"]["scan_state"] == "STOPPED__PARTIAL_RESULT_GENERATED"
    assert (await wms.admin.get(f"/v1/workflows/{workflow_id}")).json["deactivated"] == "ABORTED"
    assert not await launcher.alive(manifest["scanner"]["handle"])
    await skydriver.skydriver.starter.run_once()  # room again: the last one starts
    assert (await skydriver.ok(skydriver.user.get("/scans/backlog"))) == {"entries": []}


async def test_a_start_cut_short_finds_its_workflow_instead_of_requesting_another(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    skydriver = await skydriver_factory(wms=wms, launcher=stand_in_launcher(tmp_path / "scanners"))
    scan_id = (await skydriver.post_scan())["scan_id"]
    starter = skydriver.skydriver.starter
    # a replica requested the workflow and died before it could record it
    requested = await skydriver.skydriver.ewms.request_workflow(await starter.workflow_spec(scan_id))
    await starter.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["ewms_workflow_id"] == requested.workflow_id
    assert [w["workflow_id"] for w in await wms_workflows(wms)] == [requested.workflow_id]


async def test_two_replicas_never_start_one_scan_twice(
    skydriver_factory: Factory, wms_factory: WMSFactory, tmp_path: Path
) -> None:
    wms = await wms_factory(run_loops=True)
    one = await skydriver_factory(wms=wms, launcher=stand_in_launcher(tmp_path / "one"))
    other = await skydriver_factory(
        wms=wms, launcher=stand_in_launcher(tmp_path / "other"), mongodb_database=one.skydriver.config.mongodb_database
    )
    scan_id = (await one.post_scan())["scan_id"]
    await asyncio.gather(one.skydriver.starter.run_once(), other.skydriver.starter.run_once())
    manifest = await one.ok(one.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scan_state"] == "PENDING__WAITING_ON_SCANNER_SERVER_STARTUP"
    assert len(await wms_workflows(wms)) == 1
    started_dirs = [d for base in ("one", "other") for d in (tmp_path / base).glob("*") if d.is_dir()]
    assert [d.name for d in started_dirs] == [manifest["scanner"]["handle"]]


async def test_a_refused_workflow_fails_the_scan(skydriver_factory: Factory, wms_factory: WMSFactory) -> None:
    wms = await wms_factory()
    skydriver = await skydriver_factory(wms=wms, wms_token=make_token("tms", sub="not-a-user"))
    scan_id = (await skydriver.post_scan())["scan_id"]
    await skydriver.skydriver.starter.run_once()
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scan_state"] == "FAILED__WORKFLOW" and manifest["scanner"] is None
    assert manifest["error"].startswith("the workflow management service refused the workflow: this route needs")
    status = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/status"))
    assert status["message"].startswith("failed: the workflow management service refused")
