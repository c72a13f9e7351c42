"""skydriver's WMS client (`skydriver.ewms`) against a real WMS (in-process, real broker, MongoDB wire server).

What the WMS stores is read back through its own routes, so these tests check the workflow as the
TMS and the pilots will see it, not just the body that was sent.
"""

from __future__ import annotations

import shlex
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ewms_pilot.config import PilotConfig
from ewms_rest.client import ServiceRefused, ServiceUnavailable
from ewms_tms.spec import Claim, pilot_spec
from skydriver.event import Event
from skydriver.ewms import FROM_CLIENTS, RECO_CALLABLE, TO_CLIENTS, EWMSClient, WorkflowSpec
from skydriver.examples import example_event_path
from skydriver.recos.transport import event_from_env
from tests.integration.conftest import WMSUnderTest, make_token

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
SUBJECT = "skydriver"
EVENT = Event.from_json(example_event_path().read_text())


def spec(clusters: dict[str, int] | None = None, **overrides: Any) -> WorkflowSpec:
    settings: dict[str, Any] = {
        "scan_id": uuid.uuid4().hex,
        "reco_algo": "dummy",
        "docker_tag": "1.4.2",
        "event": EVENT,
        "request_clusters": clusters or {"sub-2": 3},
        "worker_memory_bytes": 2 * 1024**3,
        "worker_disk_bytes": 1024**3,
        "max_pixel_reco_time": 900,
        "max_worker_runtime": 4 * 3600,
        "priority": 5,
    }
    return WorkflowSpec(**{**settings, **overrides})


@pytest.fixture
async def wms(wms_factory: WMSFactory) -> WMSUnderTest:
    return await wms_factory()


@pytest.fixture
async def clients(wms: WMSUnderTest) -> AsyncIterator[Callable[..., EWMSClient]]:
    """EWMS clients on `wms` with skydriver's `user` token (`**settings` as in `EWMSClient`)."""
    made: list[EWMSClient] = []

    def make(**settings: Any) -> EWMSClient:
        made.append(EWMSClient(wms.url, make_token("user", SUBJECT), timeout=30, **settings))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


async def stored(wms: WMSUnderTest, workflow_id: str, kind: str) -> list[dict[str, Any]]:
    """The workflow's task directives or taskforces, as the WMS keeps them."""
    answer = await wms.client("user", sub=SUBJECT).post(f"/v1/query/{kind}", {"query": {"workflow_id": workflow_id}})
    assert answer.status == 200, answer.json
    docs: list[dict[str, Any]] = answer.json[kind.replace("-", "_")]
    return docs


async def test_a_scan_becomes_one_workflow_with_activated_public_queues(
    wms: WMSUnderTest, clients: Callable[..., EWMSClient]
) -> None:
    ewms, scan = clients(), spec()
    workflow = await ewms.request_workflow(scan)
    assert set(workflow.mqprofiles) == {TO_CLIENTS, FROM_CLIENTS}
    assert all(p["is_activated"] and p["auth_token"] for p in workflow.mqprofiles.values())  # provisioned inline
    (directive,) = await stored(wms, workflow.workflow_id, "task-directives")
    assert directive["input_queue_aliases"] == [TO_CLIENTS] and directive["output_queue_aliases"] == [FROM_CLIENTS]
    assert directive["task_image"] == "host"
    reco = "-m skydriver.recos.client --in {{INFILE}} --out {{OUTFILE}}"
    assert directive["task_args"] == f"{shlex.quote(sys.executable)} {reco}"
    env = directive["task_env"]
    assert env["SKYDRIVER_SCAN_ID"] == scan.scan_id and env["SKYDRIVER_RECO_ALGO"] == "dummy"
    assert event_from_env(env).ref == EVENT.ref  # the pilots get the very event
    (taskforce,) = await stored(wms, workflow.workflow_id, "taskforces")
    assert taskforce["cluster_location"] == "sub-2" and taskforce["n_workers"] == 3
    worker = taskforce["worker_config"]
    assert worker["worker_memory_bytes"] == 2 * 1024**3 and worker["worker_disk_bytes"] == 1024**3
    assert worker["max_worker_runtime"] == 4 * 3600 and worker["n_cores"] == 1 and worker["priority"] == 5
    pilot_env = taskforce["pilot_config"]["environment"]
    assert pilot_env["EWMS_PILOT_TASK_TIMEOUT"] == 900
    assert pilot_env["EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"] >= 900
    assert pilot_env["EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR"] is False
    assert pilot_env["EWMS_PILOT_MAX_CONSECUTIVE_FAILURES"] == 10  # a broken host, not a few unlucky pixels


async def test_locations_asking_for_different_counts_get_their_own_taskforces(
    wms: WMSUnderTest, clients: Callable[..., EWMSClient]
) -> None:
    workflow = await clients().request_workflow(spec({"sub-2": 2, "osg": 5, "npx": 2}))
    taskforces = await stored(wms, workflow.workflow_id, "taskforces")
    assert {tf["cluster_location"]: tf["n_workers"] for tf in taskforces} == {"sub-2": 2, "osg": 5, "npx": 2}
    directives = await stored(wms, workflow.workflow_id, "task-directives")
    assert sorted(sorted(d["cluster_locations"]) for d in directives) == [["npx", "sub-2"], ["osg"]]
    assert len({tuple(d["input_queues"] + d["output_queues"]) for d in directives}) == 1  # one pair of queues


async def test_a_scans_workflow_is_found_and_never_requested_twice(
    wms: WMSUnderTest, clients: Callable[..., EWMSClient]
) -> None:
    ewms, scan = clients(), spec({"sub-2": 1, "osg": 2})
    assert await ewms.find_workflow(scan.scan_id) is None
    first = await ewms.request_workflow(scan)
    found = await ewms.find_workflow(scan.scan_id)
    assert found is not None and found.workflow_id == first.workflow_id
    assert found.mqprofiles == first.mqprofiles
    again = await clients().request_workflow(scan)  # e.g. a skydriver that crashed before recording the id
    assert again.workflow_id == first.workflow_id
    answer = await wms.client("user", sub=SUBJECT).post("/v1/query/workflows", {"query": {}})
    assert [w["workflow_id"] for w in answer.json["workflows"]] == [first.workflow_id]


async def test_wait_activated_polls_until_the_provisioner_has_made_the_queues(
    wms_factory: WMSFactory, clients: Callable[..., EWMSClient]
) -> None:
    later = await wms_factory(run_loops=True, provision_inline_timeout_seconds=0, provision_poll_seconds=0.2)
    ewms = EWMSClient(later.url, make_token("user", SUBJECT), poll_interval=0.05)
    try:
        workflow = await ewms.request_workflow(spec())
        profiles = await ewms.wait_activated(workflow.workflow_id, 60)
        assert all(profiles[alias]["is_activated"] for alias in (TO_CLIENTS, FROM_CLIENTS))
    finally:
        await ewms.aclose()


async def test_wait_activated_gives_up_as_unavailable(wms_factory: WMSFactory) -> None:
    idle = await wms_factory(provision_inline_timeout_seconds=0)  # loops off: nobody provisions
    ewms = EWMSClient(idle.url, make_token("user", SUBJECT), poll_interval=0.05)
    try:
        workflow = await ewms.request_workflow(spec())
        assert not any(p["is_activated"] for p in workflow.mqprofiles.values())
        with pytest.raises(ServiceUnavailable, match="not activated"):
            await ewms.wait_activated(workflow.workflow_id, 0.1)
    finally:
        await ewms.aclose()


async def test_status_sums_each_locations_compound_statuses(
    wms: WMSUnderTest, clients: Callable[..., EWMSClient]
) -> None:
    ewms = clients()
    workflow = await ewms.request_workflow(spec({"sub-2": 4, "osg": 2}))
    extra = await ewms.add_workers(workflow.workflow_id, "sub-2", 3)
    taskforces = await stored(wms, workflow.workflow_id, "taskforces")
    uuids = {tf["cluster_location"]: tf["taskforce_uuid"] for tf in taskforces if tf["taskforce_uuid"] != extra}
    report = {
        uuids["sub-2"]: {"running": 3, "idle": 1},
        extra: {"running": {"Started": 2, "Downloading": 1}, "held": 1},  # upstream's nested form
        uuids["osg"]: {"idle": 2},
    }
    answer = await wms.tms.post("/v1/tms/statuses/taskforces", {"compound_statuses_by_taskforce": report})
    assert answer.status == 200, answer.json
    status = await ewms.status(workflow.workflow_id)
    assert status.pilots == {"sub-2": {"running": 6, "idle": 1, "held": 1}, "osg": {"idle": 2}}
    assert status.alive and status.deactivated is None
    assert status.phases == {"pending-starter": 3}


async def test_abort_and_finished_are_idempotent_and_end_the_workflow(
    wms: WMSUnderTest, clients: Callable[..., EWMSClient]
) -> None:
    ewms = clients()
    workflow = await ewms.request_workflow(spec())
    await ewms.abort(workflow.workflow_id)
    await ewms.abort(workflow.workflow_id)
    await ewms.finished(workflow.workflow_id)  # after an abort: the first reason stays
    status = await ewms.status(workflow.workflow_id)
    assert status.deactivated == "ABORTED" and not status.alive
    with pytest.raises(ServiceRefused) as refused:
        await ewms.add_workers(workflow.workflow_id, "sub-2", 1)
    assert refused.value.status == 422


async def test_add_workers_uses_the_task_already_at_that_location(
    wms: WMSUnderTest, clients: Callable[..., EWMSClient]
) -> None:
    ewms = clients()
    workflow = await ewms.request_workflow(spec({"sub-2": 1, "osg": 2}))
    stored_directives = await stored(wms, workflow.workflow_id, "task-directives")
    directives = {d["cluster_locations"][0]: d["task_id"] for d in stored_directives}
    uuid_osg = await ewms.add_workers(workflow.workflow_id, "osg", 4)
    uuid_new = await ewms.add_workers(workflow.workflow_id, "anvil", 1)
    taskforces = {tf["taskforce_uuid"]: tf for tf in await stored(wms, workflow.workflow_id, "taskforces")}
    assert taskforces[uuid_osg]["task_id"] == directives["osg"] and taskforces[uuid_osg]["n_workers"] == 4
    assert taskforces[uuid_new]["cluster_location"] == "anvil"
    with pytest.raises(ServiceRefused) as refused:
        await ewms.add_workers(uuid.uuid4().hex, "sub-2", 1)
    assert refused.value.status == 404


async def test_refusals_and_outages_are_told_apart(wms: WMSUnderTest, clients: Callable[..., EWMSClient]) -> None:
    with pytest.raises(ServiceRefused) as refused:
        await clients().request_workflow(spec({"not a location!": 1}))
    assert refused.value.status == 400 and "cluster_locations" in refused.value.message
    nowhere = EWMSClient("http://127.0.0.1:9", make_token("user", SUBJECT), timeout=5)
    try:
        with pytest.raises(ServiceUnavailable):
            await nowhere.find_workflow("any")
    finally:
        await nowhere.aclose()


@pytest.mark.parametrize(
    ("settings", "image", "args", "callable_"),
    [
        ({"reco_runner": "callable"}, "host", None, RECO_CALLABLE),
        ({"reco_image": "ghcr.io/x/reco"}, "ghcr.io/x/reco:1.4.2", "python -m skydriver.recos.client", None),
    ],
)
async def test_the_pilots_can_run_what_the_workflow_asks(
    wms: WMSUnderTest,
    clients: Callable[..., EWMSClient],
    settings: dict[str, str],
    image: str,
    args: str | None,
    callable_: str | None,
) -> None:
    """The TMS turns the claimed taskforce into a pilot environment the pilot accepts."""
    workflow = await clients(**settings).request_workflow(spec())
    answer = await wms.tms.get("/v1/tms/pending-starter/taskforces", query={"cluster_location": "sub-2"})
    claim = Claim.from_answer(answer.json)
    assert claim.taskforce["workflow_id"] == workflow.workflow_id
    assert claim.task_directive["task_image"] == image
    assert claim.task_directive["task_args"].startswith(args) if args else not claim.task_directive["task_args"]
    env = pilot_spec(claim, host_command_image="host", operator_env={}).environment
    config = PilotConfig.from_env(env)
    assert config.task_callable == (callable_ or "")
    assert config.task_timeout == 900
