"""The MQS routes EWMS's own clients call, answered by the WMS; used exactly as upstream client code uses them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mqclient
from rest_tools.client import RestClient

from tests.integration.conftest import SEED_BODY, WMSUnderTest, make_token

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
PROFILE_FIELDS = {"mqid", "workflow_id", "timestamp", "alias", "is_public", "is_activated", "auth_token",
                  "broker_type", "broker_address"}  # fmt: skip


async def test_clients_poll_public_profiles_until_activated_then_use_them_with_oms_mqclient(
    wms_factory: WMSFactory,
) -> None:
    wms = await wms_factory(provision_inline_timeout_seconds=0)  # queues come later, from the provisioner
    workflow_id = (await wms.create_workflow())["workflow"]["workflow_id"]
    route = f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public"

    before = (await wms.user.get(route)).json["mqprofiles"]
    assert [p["is_activated"] for p in before] == [False, False]
    await wms.wms.provisioner.run_once()
    profiles = (await wms.user.get(route)).json["mqprofiles"]
    assert all(p["is_activated"] for p in profiles) and all(set(p) == PROFILE_FIELDS for p in profiles)

    # what upstream's example clients do with the profiles, verbatim in spirit
    queues = {
        p["alias"]: mqclient.Queue(
            p["broker_type"], address=p["broker_address"], name=p["mqid"], auth_token=p["auth_token"], timeout=5
        )
        for p in profiles
    }
    async with queues["input-queue"].open_pub() as pub:
        await pub.send({"event": 1})
    async with queues["input-queue"].open_sub_one() as message:
        assert message == {"event": 1}


async def test_the_tms_reads_single_profiles_by_queue_name(wms: WMSUnderTest) -> None:
    created = await wms.create_workflow()
    profile = created["mqprofiles"][0]
    route = f"/v1/mqs/mq-profiles/{profile['mqid']}"
    assert (await wms.tms.get(route)).json == profile
    assert (await wms.admin.get(route)).json == profile
    assert (await wms.user.get(route)).status == 403  # users read their profiles per workflow
    assert (await wms.tms.get("/v1/mqs/mq-profiles/no-such-queue")).status == 404
    assert (await wms.user.get("/v1/mqs/workflows/nosuchworkflow/mq-profiles/public")).status == 404


async def test_an_upstream_style_client_script_works_unchanged(wms: WMSUnderTest) -> None:
    """What upstream's example scripts do with IceCube's own RestClient: post the talk's body, read the queue
    names from the task directive, poll the MQS route until every queue is activated."""
    rc = RestClient(wms.url, token=make_token("user"), retries=0)
    try:
        resp = await rc.request("POST", "/v1/workflows", SEED_BODY)
        workflow_id = resp["workflow"]["workflow_id"]
        in_mqid, out_mqid = (
            resp["task_directives"][0]["input_queues"][0],
            resp["task_directives"][0]["output_queues"][0],
        )
        # upstream polls until every profile is activated; provisioned inline, the first answer already is
        answer = await rc.request("GET", f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public")
        mqprofiles: list[dict[str, Any]] = answer["mqprofiles"]
        assert mqprofiles and all(m["is_activated"] for m in mqprofiles)
        assert {p["mqid"] for p in mqprofiles} == {in_mqid, out_mqid}
        assert (await rc.request("POST", f"/v1/workflows/{workflow_id}/actions/abort"))["n_taskforces"] == 1
    finally:
        rc.close()
