"""Taskforces through their phases, as TMSs drive them: claims, confirmations, stops, failures, cleanup."""

from __future__ import annotations

import asyncio
import copy
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tests.integration.conftest import SEED_BODY, Client, FakeClock, WMSUnderTest

if TYPE_CHECKING:
    from tests.conftest import ManagementAPI

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
STARTER = "/v1/tms/pending-starter/taskforces"
STOPPER = "/v1/tms/pending-stopper/taskforces"


def body_at(location: str, n_tasks: int = 1, priority: int | None = None) -> dict[str, Any]:
    """The seed body with `n_tasks` tasks, all at `location`."""
    body = copy.deepcopy(SEED_BODY)
    task = body["tasks"][0]
    task["cluster_locations"] = [location]
    body["tasks"] = [copy.deepcopy(task) for _ in range(n_tasks)]
    if priority is not None:
        body["priority"] = priority
    return body


async def claim(tms: Client, location: str, claimant: str | None = None) -> dict[str, Any]:
    query = {"cluster_location": location, **({"claimant": claimant} if claimant else {})}
    response = await tms.get(STARTER, query=query)
    assert response.status == 200, response.json
    result: dict[str, Any] = response.json
    return result


async def tms_post(tms: Client, action: str, uuid: str, body: Any = None) -> int:
    return (await tms.post(f"/v1/tms/{action}/taskforces/{uuid}", body if body is not None else {})).status


async def phase(wms: WMSUnderTest, uuid: str) -> str:
    return str((await wms.admin.get(f"/v1/taskforces/{uuid}")).json["phase"])


def _queue_exists(management_api: ManagementAPI, name: str) -> bool:
    return management_api("GET", f"/api/queues/%2F/{urllib.parse.quote(name, safe='')}")[0] == 200


async def test_full_phase_walk_then_queues_go_and_dlqs_stay_for_the_retention_period(
    wms_factory: WMSFactory, management_api: ManagementAPI
) -> None:
    clock = FakeClock()
    wms = await wms_factory(clock=clock, dlq_retention_seconds=3600)
    tms = wms.tms
    created = await wms.create_workflow(body_at("loc-walk"))
    workflow_id = created["workflow"]["workflow_id"]
    queues = [p["mqid"] for p in created["mqprofiles"]]

    claimed = await claim(tms, "loc-walk", "tms-a")
    uuid = claimed["taskforce"]["taskforce_uuid"]
    assert claimed["taskforce"]["claimed_by"] == "tms-a"
    assert claimed["task_directive"]["task_id"] == claimed["taskforce"]["task_id"]
    assert {p["mqid"] for p in claimed["mqprofiles"]} == set(queues) and all(
        p["auth_token"] for p in claimed["mqprofiles"]
    )
    assert (await claim(tms, "loc-walk", "tms-a"))["taskforce"][
        "taskforce_uuid"
    ] == uuid  # a restarted TMS gets it back

    submission = {
        "cluster_id": 1234,
        "submit_dict": {"My.Attr": "x", "+EWMSTaskforce": uuid},
        "job_event_log_fpath": "/l",
    }
    assert await tms_post(tms, "condor-submit", uuid, submission) == 200
    assert await tms_post(tms, "condor-submit", uuid, submission) == 200  # a repeat (lost answer) is harmless
    assert await claim(tms, "loc-walk", "tms-a") == {}
    statuses = {"compound_statuses_by_taskforce": {uuid: {"running": {"tasking": 3}, "idle": 1}},
                "top_task_errors_by_taskforce": {uuid: {"exit code 1. see stderr": 2}}}  # fmt: skip
    assert (await tms.post("/v1/tms/statuses/taskforces", statuses)).status == 200

    assert (await wms.user.post(f"/v1/workflows/{workflow_id}/actions/finished", {})).json["n_taskforces"] == 1
    assert (await tms.get(STOPPER, query={"schedd": "loc-walk"})).json["taskforce_uuid"] == uuid
    assert await tms_post(tms, "condor-rm", uuid) == 200
    assert (await tms.get(STOPPER, query={"cluster_location": "loc-walk"})).json == {}
    assert await tms_post(tms, "condor-complete", uuid, {"condor_complete_ts": 17}) == 200

    taskforce = (await wms.user.get(f"/v1/taskforces/{uuid}")).json
    assert taskforce["phase"] == "condor-complete" and taskforce["condor_complete_ts"] == 17
    assert taskforce["cluster_id"] == 1234 and taskforce["submit_dict"]["My.Attr"] == "x"
    assert taskforce["compound_statuses"] == {"running": {"tasking": 3}, "idle": 1}
    assert taskforce["top_task_errors"] == {"exit code 1. see stderr": 2}
    walked = [c["target_phase"] for c in taskforce["phase_change_log"] if c["was_successful"]]
    assert walked == ["pending-starter", "condor-submit", "pending-stopper", "condor-rm", "condor-complete"]

    await wms.wms.janitor.run_once()
    assert not any(_queue_exists(management_api, q) for q in queues)
    assert all(_queue_exists(management_api, q + ".dlq") for q in queues)  # kept for inspection
    workflow = (await wms.user.get(f"/v1/workflows/{workflow_id}")).json
    assert workflow["mq_state"] == "deleted" and workflow["dlqs_delete_after_ts"] == clock.now + 3600

    clock.advance(3599)
    await wms.wms.janitor.run_once()
    assert all(_queue_exists(management_api, q + ".dlq") for q in queues)
    clock.advance(2)
    await wms.wms.janitor.run_once()
    assert not any(_queue_exists(management_api, q + ".dlq") for q in queues)
    assert (await wms.user.get(f"/v1/workflows/{workflow_id}")).json["mq_state"] == "dlqs-deleted"
    assert management_api("GET", f"/api/users/{created['workflow']['broker_user']}")[0] == 404


async def test_concurrent_claims_never_hand_out_one_taskforce_twice(wms: WMSUnderTest) -> None:
    await wms.create_workflow(body_at("loc-race", n_tasks=8))
    first, second = wms.client("tms", sub="tms-1"), wms.client("tms", sub="tms-2")
    # 2 x 10 claims at once for 8 taskforces: each answer is a different taskforce or {}
    answers = await asyncio.gather(*(claim(c, "loc-race") for c in [first, second] * 10))
    claimed = [a["taskforce"]["taskforce_uuid"] for a in answers if a]
    assert len(claimed) == 8 and len(set(claimed)) == 8

    # named claimants, each confirming what it got, racing until nothing is left
    await wms.create_workflow(body_at("loc-race-2", n_tasks=8))
    submitted: dict[str, list[str]] = {"tms-1": [], "tms-2": []}

    async def starter(tms: Client, name: str) -> None:
        while got := await claim(tms, "loc-race-2", name):
            uuid = got["taskforce"]["taskforce_uuid"]
            assert await tms_post(tms, "condor-submit", uuid, {"cluster_id": f"{name}-{uuid}"}) == 200
            submitted[name].append(uuid)

    await asyncio.gather(starter(first, "tms-1"), starter(second, "tms-2"))
    everything = submitted["tms-1"] + submitted["tms-2"]
    assert len(everything) == 8 and len(set(everything)) == 8


async def test_an_expired_claim_goes_to_another_tms_and_only_one_submission_counts(wms_factory: WMSFactory) -> None:
    clock = FakeClock()
    wms = await wms_factory(clock=clock, claim_lease_seconds=60)
    await wms.create_workflow(body_at("loc-lease"))
    uuid = (await claim(wms.tms, "loc-lease", "tms-a"))["taskforce"]["taskforce_uuid"]
    assert await claim(wms.tms, "loc-lease", "tms-b") == {}
    clock.advance(61)  # tms-a went quiet past its lease
    assert (await claim(wms.tms, "loc-lease", "tms-b"))["taskforce"]["taskforce_uuid"] == uuid
    assert await tms_post(wms.tms, "condor-submit", uuid, {"cluster_id": 2}) == 200
    late = await wms.tms.post(f"/v1/tms/condor-submit/taskforces/{uuid}", {"cluster_id": 1})
    assert late.status == 409 and "remove the cluster" in late.json["error"]


async def test_priority_orders_launches_as_given(wms: WMSUnderTest) -> None:
    order = {}
    for priority in (-5, 10**12, 3, 0):
        created = await wms.create_workflow(body_at("loc-prio", priority=priority))
        assert created["workflow"]["priority"] == priority and created["taskforces"][0]["priority"] == priority
        order[created["taskforces"][0]["taskforce_uuid"]] = priority
    claimed = [(await claim(wms.tms, "loc-prio"))["taskforce"]["taskforce_uuid"] for _ in order]
    assert [order[u] for u in claimed] == [10**12, 3, 0, -5]


async def _taskforce_in(wms: WMSUnderTest, target: str, location: str) -> tuple[str, str]:
    """A fresh workflow whose only taskforce was driven to `target`; (workflow_id, taskforce_uuid)."""
    tms = wms.tms
    created = await wms.create_workflow(body_at(location))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    steps = ["pending-starter", "condor-submit", "pending-stopper", "condor-rm", "condor-complete"]
    if target in steps[1:] or target == "failed":
        await claim(tms, location)
        if target == "failed":
            assert await tms_post(tms, "condor-submit", uuid + "/failed", {"error": "schedd down"}) == 200
        else:
            assert await tms_post(tms, "condor-submit", uuid, {"cluster_id": 9}) == 200
    if target in steps[2:]:
        await wms.admin.post(f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {})
    if target in steps[3:]:
        assert await tms_post(tms, "condor-rm", uuid) == 200
    if target == steps[4]:
        assert await tms_post(tms, "condor-complete", uuid) == 200
    assert await phase(wms, uuid) == target
    return created["workflow"]["workflow_id"], uuid


async def test_abort_from_any_phase(wms_factory: WMSFactory) -> None:
    wms = await wms_factory(submit_max_attempts=1)
    after_abort = {
        "pending-starter": "condor-complete",  # no jobs yet: nothing to remove
        "condor-submit": "pending-stopper",
        "pending-stopper": "pending-stopper",
        "condor-rm": "condor-rm",
        "condor-complete": "condor-complete",
        "failed": "failed",
    }
    for i, (start, end) in enumerate(after_abort.items()):
        workflow_id, uuid = await _taskforce_in(wms, start, f"loc-abort-{i}")
        first = await wms.user.post(f"/v1/workflows/{workflow_id}/actions/abort", {})
        assert first.status == 200 and await phase(wms, uuid) == end, start
        again = await wms.user.post(f"/v1/workflows/{workflow_id}/actions/abort")
        assert again.json == {"workflow_id": workflow_id, "n_taskforces": 0}
        finished = await wms.user.post(f"/v1/workflows/{workflow_id}/actions/finished", {})
        assert finished.status == 200
        assert (await wms.user.get(f"/v1/workflows/{workflow_id}")).json["deactivated"] == "ABORTED"


async def test_abort_before_the_queues_exist_completes_at_once_and_leaves_nothing(
    wms_factory: WMSFactory, management_api: ManagementAPI
) -> None:
    wms = await wms_factory(provision_inline_timeout_seconds=0)
    created = await wms.create_workflow(body_at("loc-early"))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    assert created["taskforces"][0]["phase"] == "pre-mq-activation"
    assert not any(p["is_activated"] for p in created["mqprofiles"])
    workflow_id = created["workflow"]["workflow_id"]
    assert (await wms.user.post(f"/v1/workflows/{workflow_id}/actions/abort", {})).json["n_taskforces"] == 1
    assert await phase(wms, uuid) == "condor-complete"
    await wms.wms.provisioner.run_once()  # a deactivated workflow is never provisioned
    await wms.wms.janitor.run_once()
    assert (await wms.user.get(f"/v1/workflows/{workflow_id}")).json["mq_state"] == "dlqs-deleted"
    assert not any(_queue_exists(management_api, p["mqid"]) for p in created["mqprofiles"])


async def test_a_stop_between_claim_and_submission_is_refused_so_the_tms_removes_its_cluster(
    wms: WMSUnderTest,
) -> None:
    created = await wms.create_workflow(body_at("loc-orphan"))
    uuid = (await claim(wms.tms, "loc-orphan", "tms-a"))["taskforce"]["taskforce_uuid"]
    await wms.user.post(f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {})
    refused = await wms.tms.post(f"/v1/tms/condor-submit/taskforces/{uuid}", {"cluster_id": 5})
    assert refused.status == 409 and "condor-complete" in refused.json["error"]
    assert await phase(wms, uuid) == "condor-complete"


async def test_submission_failing_past_the_retry_limit_is_failed_with_the_reason(wms_factory: WMSFactory) -> None:
    wms = await wms_factory(submit_max_attempts=2)
    await wms.create_workflow(body_at("loc-fail"))
    for attempt in (1, 2):
        uuid = (await claim(wms.tms, "loc-fail", f"tms-{attempt}"))["taskforce"]["taskforce_uuid"]
        assert await tms_post(wms.tms, "condor-submit", f"{uuid}/failed", {"error": f"no schedd ({attempt})"}) == 200
    taskforce = (await wms.user.get(f"/v1/taskforces/{uuid}")).json
    assert taskforce["phase"] == "failed" and taskforce["submit_failures"] == 2
    assert taskforce["failed_reason"] == "submission failed 2 times; last error: no schedd (2)"
    assert await claim(wms.tms, "loc-fail") == {}
    found = await wms.user.post("/v1/query/taskforces", {"query": {"phase": "failed"}, "projection": ["failed_reason"]})
    assert found.json["taskforces"] == [{"failed_reason": taskforce["failed_reason"]}]
    assert await tms_post(wms.tms, "condor-submit", uuid + "/failed", {"error": "late"}) == 200  # harmless now
    late = await wms.wms.db.taskforces.log.find_one({"taskforce_uuid": uuid, "context": {"$regex": "ignored"}})
    assert late is not None and late["context"] == "failure report ignored in failed: late"  # the TMS's words kept


async def test_out_of_order_confirmations_are_conflicts(wms: WMSUnderTest) -> None:
    created = await wms.create_workflow(body_at("loc-order"))
    uuid = created["taskforces"][0]["taskforce_uuid"]
    for action in ("condor-rm", "condor-complete"):
        response = await wms.tms.post(f"/v1/tms/{action}/taskforces/{uuid}", {})
        assert response.status == 409 and "pending-starter" in response.json["error"]
    missing = await wms.tms.post("/v1/tms/condor-complete/taskforces/nosuchtaskforce", {})
    assert missing.status == 404


async def test_add_workers_creates_a_taskforce_until_the_workflow_is_deactivated(wms: WMSUnderTest) -> None:
    created = await wms.create_workflow(body_at("loc-add"))
    task_id = created["task_directives"][0]["task_id"]
    added = await wms.user.post(
        f"/v1/task-directives/{task_id}/actions/add-workers", {"cluster_location": "loc-new", "n_workers": 7}
    )
    assert added.status == 200
    taskforce = added.json
    assert taskforce["phase"] == "pending-starter" and taskforce["n_workers"] == 7
    assert taskforce["worker_config"]["max_worker_runtime"] == 600  # the task's own config
    directive = (await wms.user.get(f"/v1/task-directives/{task_id}")).json
    assert directive["cluster_locations"] == ["loc-add", "loc-new"]
    assert (await claim(wms.tms, "loc-new"))["taskforce"]["taskforce_uuid"] == taskforce["taskforce_uuid"]
    await wms.user.post(f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {})
    refused = await wms.user.post(
        f"/v1/task-directives/{task_id}/actions/add-workers", {"cluster_location": "loc-new", "n_workers": 1}
    )
    assert refused.status == 422 and "deactivated" in refused.json["error"]


async def test_status_reports_for_unknown_taskforces_get_207(wms: WMSUnderTest) -> None:
    uuid = (await wms.create_workflow(body_at("loc-stat")))["taskforces"][0]["taskforce_uuid"]
    report = {"compound_statuses_by_taskforce": {uuid: {"idle": 4}, "ghost": {"idle": 1}}}
    response = await wms.tms.post("/v1/tms/statuses/taskforces", report)
    assert response.status == 207
    assert response.json["results"] == [
        {"uuid": uuid, "status": "updated"},
        {"uuid": "ghost", "status": "failed", "error": "no such taskforce"},
    ]


async def test_broker_credentials_in_a_submit_description_are_redacted(wms: WMSUnderTest) -> None:
    created = await wms.create_workflow(body_at("loc-secret"))
    token = created["mqprofiles"][0]["auth_token"]
    uuid = (await claim(wms.tms, "loc-secret"))["taskforce"]["taskforce_uuid"]
    submission = {"cluster_id": 3, "submit_dict": {"environment": f"EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN={token}"}}
    assert await tms_post(wms.tms, "condor-submit", uuid, submission) == 200
    stored = (await wms.admin.get(f"/v1/taskforces/{uuid}")).json
    assert stored["submit_dict"] == {"environment": "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN=***"}
