"""Provisioning retries: exponential backoff per workflow, and one failing workflow never holds up the others."""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tests.integration.conftest import FakeClock, WMSUnderTest
from tests.integration.test_wms_taskforces import body_at

if TYPE_CHECKING:
    from tests.conftest import ManagementAPI

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]


async def test_a_failing_workflow_backs_off_exponentially_and_never_blocks_others(
    wms_factory: WMSFactory, management_api: ManagementAPI
) -> None:
    clock = FakeClock()
    wms = await wms_factory(
        clock=clock,
        provision_inline_timeout_seconds=0,
        provision_backoff_initial_seconds=10,
        provision_backoff_max_seconds=25,
    )
    bad = await wms.create_workflow(body_at("loc-bad"))
    good = await wms.create_workflow(body_at("loc-good"))
    bad_id, good_id = bad["workflow"]["workflow_id"], good["workflow"]["workflow_id"]
    # sabotage: the bad workflow's queue already exists as a classic queue, so the broker refuses (406) it
    blocker = urllib.parse.quote(bad["mqprofiles"][0]["mqid"], safe="")
    assert management_api("PUT", f"/api/queues/%2F/{blocker}", {"durable": True, "arguments": {}})[0] in (201, 204)

    async def state(workflow_id: str) -> dict[str, object]:
        return dict((await wms.admin.get(f"/v1/workflows/{workflow_id}")).json)

    await wms.wms.provisioner.run_once()
    assert (await state(good_id))["mq_state"] == "activated"  # not held up by the bad one
    assert (await wms.admin.get(f"/v1/taskforces/{good['taskforces'][0]['taskforce_uuid']}")).json["phase"] == (
        "pending-starter"
    )
    first = await state(bad_id)
    assert first["mq_state"] == "pending" and first["provision_attempts"] == 1
    assert "PRECONDITION_FAILED" in str(first["provision_error"])
    assert first["provision_next_attempt_ts"] == clock.now + 10

    await wms.wms.provisioner.run_once()  # not due yet: no attempt
    assert (await state(bad_id))["provision_attempts"] == 1
    for attempts, delay in ((2, 20), (3, 25), (4, 25)):  # 10, 20, then capped at 25
        clock.now = float(str((await state(bad_id))["provision_next_attempt_ts"]))
        await wms.wms.provisioner.run_once()
        now = await state(bad_id)
        assert now["provision_attempts"] == attempts and now["provision_next_attempt_ts"] == clock.now + delay

    management_api("DELETE", f"/api/queues/%2F/{blocker}")  # the operator fixes the broker
    clock.now = float(str((await state(bad_id))["provision_next_attempt_ts"]))
    await wms.wms.provisioner.run_once()
    fixed = await state(bad_id)
    assert fixed["mq_state"] == "activated" and fixed["provision_error"] is None
    taskforce = (await wms.admin.get(f"/v1/taskforces/{bad['taskforces'][0]['taskforce_uuid']}")).json
    assert taskforce["phase"] == "pending-starter"


async def test_creating_a_workflow_while_the_broker_is_down_still_succeeds_and_says_why(
    wms_factory: WMSFactory,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wms = await wms_factory(
        broker_url=f"amqp://guest:guest@127.0.0.1:{port}/", rabbitmq_management_url=f"http://127.0.0.1:{port}"
    )
    created = await wms.create_workflow()
    workflow = created["workflow"]
    assert workflow["mq_state"] == "pending" and workflow["provision_attempts"] == 1
    assert str(port) in workflow["provision_error"] and "guest:guest" not in workflow["provision_error"]
    assert created["taskforces"][0]["phase"] == "pre-mq-activation"
    assert not any(p["is_activated"] for p in created["mqprofiles"])
