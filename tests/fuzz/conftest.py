"""Fuzzing fixtures: a live WMS and a live skydriver (with its WMS) on free ports, seeded with one of each object
so generated requests also reach existing workflows, taskforces and scans; and the roles' tokens.

The servers come from the integration fixtures (`wms_factory`, `skydriver_factory`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ewms_wms.handlers import HANDLERS as WMS_HANDLERS
from skydriver.handlers import HANDLERS as SKYDRIVER_HANDLERS
from tests.fuzz.harness import Target
from tests.integration.conftest import WMSUnderTest, make_token, wms_factory
from tests.integration.skydriver.conftest import (
    EVENT,
    SkyDriverUnderTest,
    skydriver_factory,
    stand_in_launcher,
    token,
)
from tests.openapi_routes import route_roles

__all__ = ["skydriver_factory", "wms_factory"]  # the fixtures, shared with the integration tests

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
SkyDriverFactory = Callable[..., Awaitable[SkyDriverUnderTest]]


def valid_workflow(body: dict[str, Any]) -> dict[str, Any]:
    """A generated workflow request made to pass the WMS's cross-field rules."""
    used: list[str] = []
    for task in body.get("tasks", []):
        if isinstance(task, dict):
            inputs = set(task.get("input_queue_aliases", []))
            task["output_queue_aliases"] = [a for a in task.get("output_queue_aliases", []) if a not in inputs]
            if "environment" in task:
                task.pop("task_env", None)
            used += [*task.get("input_queue_aliases", []), *task["output_queue_aliases"]]
    body["public_queue_aliases"] = [a for a in body.get("public_queue_aliases", []) if a in used] or used[:1]
    return body


NSIDES_LADDERS = ({"8": 0}, {"8": 0, "64": 4}, {"1": 0, "2": 3})
ALIASES = {"cluster": "request_clusters", "worker_memory": "worker_memory_bytes", "worker_disk": "worker_disk_bytes",
           "scanner_server_memory": "scanner_server_memory_bytes"}  # fmt: skip


def valid_scan(body: dict[str, Any]) -> dict[str, Any]:
    """A generated scan request with a real event and refinement ladder, no alias beside its field, no options."""
    choice = len(str(body))  # varies with the generated body, and deterministic
    body["event_i3live_json"] = EVENT if choice % 2 else json.dumps(EVENT)
    body["nsides"] = NSIDES_LADDERS[choice % len(NSIDES_LADDERS)]
    body.pop("reco_options", None)
    for alias, field in ALIASES.items():
        if field in body:
            body.pop(alias, None)
    return body


async def seeded_wms_target(wms: WMSUnderTest) -> Target:
    """A target for `wms` with one provisioned workflow (owned by the user token's subject) and its ids."""
    created = await wms.create_workflow()
    assert await wms.wms.provisioner.attempt(created["workflow"]["workflow_id"])
    created["taskforces"] = (await wms.user.post("/v1/query/taskforces", {"query": {}})).json["taskforces"]
    taskforces = created["taskforces"]
    return Target(
        name="wms",
        base_url=wms.url,
        schema_path="/v1/schema/openapi",
        tokens={"user": make_token("user"), "tms": make_token("tms", sub="tms-sub-2"), "admin": make_token("admin")},
        roles=route_roles(WMS_HANDLERS),
        known_ids={
            "workflow_id": [created["workflow"]["workflow_id"]],
            "task_id": [created["task_directives"][0]["task_id"]],
            "taskforce_uuid": [taskforces[0]["taskforce_uuid"]],
            "mqid": [created["mqprofiles"][0]["mqid"]],
        },
        body_fixers={("post", "/v1/workflows"): valid_workflow},
    )


@pytest.fixture
async def wms_target(wms_factory: WMSFactory) -> Target:
    """The workflows the fuzzer creates are never provisioned (no inline attempt, no loops): the REST contract is
    under test, and thousands of quorum queues would only load the broker every test shares."""
    return await seeded_wms_target(await wms_factory(provision_inline_timeout_seconds=0))


async def seeded_skydriver_target(skydriver: SkyDriverUnderTest) -> Target:
    """A target for `skydriver` with a started scan (a workflow at the WMS, a stand-in scanner) and a backlog one."""
    started = (await skydriver.post_scan())["scan_id"]
    await skydriver.skydriver.starter.run_once()
    waiting = (await skydriver.post_scan())["scan_id"]
    return Target(
        name="skydriver",
        base_url=skydriver.url,
        schema_path="/schema/openapi",
        tokens={"user": token("user"), "system": token("system", sub="scanner")},
        roles=route_roles(SKYDRIVER_HANDLERS),
        known_ids={"scan_id": [started, waiting]},
        body_fixers={("post", "/scan"): valid_scan},
    )


@pytest.fixture
async def skydriver_target(wms_factory: WMSFactory, skydriver_factory: SkyDriverFactory, tmp_path: Path) -> Target:
    wms = await wms_factory(run_loops=True)
    skydriver = await skydriver_factory(wms=wms, launcher=stand_in_launcher(tmp_path / "scanners"))
    return await seeded_skydriver_target(skydriver)
