"""Creating workflows on the real broker and MongoDB wire server: queues, policies, users, reads, searches."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mqclient
import pytest

import ewms_mq
from tests.integration.conftest import SECRET, SEED_BODY, WMSUnderTest

if TYPE_CHECKING:
    from tests.conftest import ManagementAPI

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]


def _queue(management_api: ManagementAPI, name: str) -> dict[str, Any] | None:
    status, body = management_api("GET", f"/api/queues/%2F/{urllib.parse.quote(name, safe='')}")
    assert status in (200, 404), body
    return body if status == 200 and isinstance(body, dict) else None


async def _connect(profile: dict[str, Any]) -> ewms_mq.RabbitMQBroker:
    """Connect exactly as a client reads an mq profile: broker address + auth token."""
    return await ewms_mq.connect(profile["broker_address"], auth_token=profile["auth_token"])


async def test_seed_body_creates_a_workflow_whose_queues_exist_with_the_right_arguments(
    wms: WMSUnderTest, management_api: ManagementAPI
) -> None:
    created = await wms.create_workflow(SEED_BODY)
    workflow, [directive], [taskforce] = created["workflow"], created["task_directives"], created["taskforces"]
    assert workflow["mq_state"] == "activated" and workflow["deactivated"] is None
    assert directive["task_image"] == "icecube/skymap_scanner:3.20.3"
    assert directive["task_args"] == "client --in {{INFILE}} --out {{OUTFILE}}"
    assert taskforce["phase"] == "pending-starter" and taskforce["cluster_location"] == "sub-2"
    assert taskforce["n_workers"] == 4
    assert taskforce["worker_config"]["worker_memory_bytes"] == 512 * 1024**2
    assert taskforce["worker_config"]["max_worker_runtime"] == 600
    profiles = {p["alias"]: p for p in created["mqprofiles"]}
    assert set(profiles) == {"input-queue", "output-queue"}
    assert directive["input_queues"] == [profiles["input-queue"]["mqid"]]
    assert directive["output_queues"] == [profiles["output-queue"]["mqid"]]
    for profile in profiles.values():
        assert profile["is_activated"] and profile["is_public"] and profile["broker_type"] == "rabbitmq"
        assert profile["broker_address"] == f"{workflow['broker_user']}@127.0.0.1:5672"
        queue, dlq = _queue(management_api, profile["mqid"]), _queue(management_api, profile["mqid"] + ".dlq")
        assert queue is not None and dlq is not None
        # declared exactly as oms-mqclient declares: quorum and nothing else; the rest is policy
        assert queue["arguments"] == {"x-queue-type": "quorum"} and queue["durable"] is True
        assert dlq["arguments"] == {"x-queue-type": "quorum"} and dlq["type"] == "quorum"
        # (the queue listing shows the policy only after the next stats refresh: read the policy itself;
        # that it works is shown by test_poison_event_lands_in_the_dlq_through_the_workflow_policy)
        status, policy = management_api("GET", f"/api/policies/%2F/ewms-dlq-{profile['mqid']}")
        assert status == 200 and isinstance(policy, dict)
        assert policy["pattern"] == f"^{profile['mqid']}$".replace("-", "\\-") and policy["apply-to"] == "queues"
        assert policy["definition"] == {
            "delivery-limit": 2,  # RabbitMQ counts redeliveries: 3 deliveries in all
            "dead-letter-exchange": "",
            "dead-letter-routing-key": profile["mqid"] + ".dlq",
        }


async def test_workflow_credentials_reach_only_that_workflows_queues_and_upstream_clients_can_redeclare(
    wms: WMSUnderTest,
) -> None:
    mine = {p["alias"]: p for p in (await wms.create_workflow())["mqprofiles"]}
    other = {p["alias"]: p for p in (await wms.create_workflow())["mqprofiles"]}
    source = mine["input-queue"]
    # an oms-mqclient publisher, configured from the profile as upstream clients do it, redeclares our queue
    queue = mqclient.Queue(
        source["broker_type"], address=source["broker_address"], name=source["mqid"], auth_token=source["auth_token"]
    )
    async with queue.open_pub() as pub:
        await pub.send({"pixel": 7})
    broker = await _connect(source)
    try:
        async with broker.consume(source["mqid"], idle_timeout=5) as messages:
            message = await anext(messages)
            assert message.data == {"pixel": 7}
            await message.ack()
        with pytest.raises(ewms_mq.MQError, match=r"ACCESS_REFUSED|refused"):
            async with broker.consume(other["input-queue"]["mqid"], idle_timeout=1) as messages:
                await anext(messages)
    finally:
        await broker.close()


async def test_poison_event_lands_in_the_dlq_through_the_workflow_policy(wms: WMSUnderTest) -> None:
    profile = {p["alias"]: p for p in (await wms.create_workflow())["mqprofiles"]}["input-queue"]
    broker = await _connect(profile)
    try:
        await broker.publish(profile["mqid"], "poison")
        async with broker.consume(profile["mqid"], idle_timeout=5) as messages:
            for attempt in range(3):  # every delivery fails
                message = await anext(messages)
                assert message.delivery_count == attempt
                await message.nack(requeue=True)
        async with broker.consume(profile["mqid"] + ".dlq", idle_timeout=5) as dead:
            message = await anext(dead)
            assert message.data == "poison"
            assert message.properties.headers["x-death"][0]["reason"] == "delivery_limit"
            await message.ack()
    finally:
        await broker.close()


async def test_shared_credentials_when_per_workflow_users_are_off(
    wms_factory: WMSFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    wms = await wms_factory(per_workflow_broker_users=False)
    assert "per-workflow broker users are off" in caplog.text
    created = await wms.create_workflow()
    assert created["workflow"]["broker_user"] is None
    for profile in created["mqprofiles"]:
        assert profile["broker_address"] == "guest@127.0.0.1:5672" and profile["auth_token"] == "guest"
    broker = await _connect(created["mqprofiles"][0])
    await broker.publish(created["mqprofiles"][0]["mqid"], 1)
    await broker.close()


async def test_reads_and_searches_are_scoped_to_the_owner(wms_factory: WMSFactory) -> None:
    wms = await wms_factory(query_page_size=2)
    alice, bob = wms.client("user", sub="alice"), wms.client("user", sub="bob")
    ids = [(await wms.create_workflow(client=alice))["workflow"]["workflow_id"] for _ in range(3)]
    bobs = (await wms.create_workflow(client=bob))["workflow"]["workflow_id"]

    assert (await alice.get(f"/v1/workflows/{ids[0]}")).json["owner"] == "alice"
    assert (await bob.get(f"/v1/workflows/{ids[0]}")).status == 404
    assert (await bob.post(f"/v1/workflows/{ids[0]}/actions/abort", {})).status == 404
    assert (await bob.get(f"/v1/mqs/workflows/{ids[0]}/mq-profiles/public")).status == 404

    seen, after = [], None
    while True:  # pages of 2: alice's three, never bob's
        body: dict[str, Any] = {"query": {}, "projection": ["workflow_id", "mq_state"]}
        if after:
            body["after"] = after
        page = (await alice.post("/v1/query/workflows", body)).json
        seen += page["workflows"]
        after = page["next_after"]
        if after is None:
            break
    assert [w["workflow_id"] for w in seen] == ids
    assert all(set(w) == {"workflow_id", "mq_state"} for w in seen)

    everything = (await wms.admin.post("/v1/query/workflows", {"query": {"workflow_id": {"$in": [*ids, bobs]}}})).json
    assert len(everything["workflows"]) == 2 and everything["next_after"] is not None

    found = await alice.post(
        "/v1/query/taskforces",
        {"query": {"worker_config.worker_memory_bytes": {"$gte": 512 * 1024**2}, "workflow_id": ids[1]},
         "projection": ["taskforce_uuid", "worker_config.n_cores"]},
    )  # fmt: skip
    [taskforce] = found.json["taskforces"]
    assert taskforce["worker_config"] == {"n_cores": 1}
    directives = await bob.post("/v1/query/task-directives", {"query": {"workflow_id": ids[2]}})
    assert directives.json == {"task_directives": [], "next_after": None}


async def test_secrets_never_reach_the_logs(wms: WMSUnderTest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user = wms.user
    created = await wms.create_workflow(client=user)
    workflow_id = created["workflow"]["workflow_id"]
    await user.get(f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public")
    claimed = (await wms.tms.get("/v1/tms/pending-starter/taskforces", query={"cluster_location": "sub-2"})).json
    assert claimed["mqprofiles"][0]["auth_token"]
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    secrets = {p["auth_token"] for p in created["mqprofiles"]} | {user.token or "", SECRET}
    assert workflow_id in logged  # the log is there, and says what happened...
    assert not [s for s in secrets if s in logged]  # ...without a single secret
