"""Bad input never gets a 500: each malformed request is a 400 naming the field and why; 404/405 for bad routes."""

from __future__ import annotations

import copy
from typing import Any

from tests.integration.conftest import SEED_BODY, WMSUnderTest


def seed(**changes: Any) -> dict[str, Any]:
    """The seed body with top-level `changes` (None deletes a key)."""
    body = copy.deepcopy(SEED_BODY)
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


def task(**changes: Any) -> dict[str, Any]:
    """The seed body with `changes` to its task (None deletes a key)."""
    body = copy.deepcopy(SEED_BODY)
    for key, value in changes.items():
        if value is None:
            body["tasks"][0].pop(key)
        else:
            body["tasks"][0][key] = value
    return body


def worker(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_BODY)
    body["tasks"][0]["worker_config"].update(changes)
    return body


HUGE = "x" * 100_000


def _names(answer: dict[str, Any], field: str, reason: str) -> bool:
    """The 400 answer lists `field` with a reason containing `reason`."""
    return answer["code"] == 400 and any(e["field"] == field and reason in e["reason"] for e in answer["errors"])


# (body or raw bytes, the field the error must name, words the reason must contain)
WORKFLOW_CASES: list[tuple[Any, str, str]] = [
    (seed(tasks=None), "tasks", "is required"),
    (seed(public_queue_aliases=None), "public_queue_aliases", "is required"),
    (seed(tasks="one task"), "tasks", "must be array, not string"),
    (seed(tasks=[]), "tasks", "at least 1 item"),
    (seed(extra=1), "extra", "is not an allowed field"),
    (seed(priority=1.5), "priority", "must be integer, not number"),
    (seed(priority=10**30), "priority", "at most"),
    (seed(public_queue_aliases=["input-queue", "input-queue"]), "public_queue_aliases", "must not repeat"),
    (seed(public_queue_aliases=["nowhere"]), "public_queue_aliases[0]", "not an input or output alias"),
    (task(task_image=None), "tasks[0].task_image", "is required"),
    (task(n_workers=None), "tasks[0].n_workers", "is required"),
    (task(n_workers=-3), "tasks[0].n_workers", "must be at least 1"),
    (task(n_workers=0), "tasks[0].n_workers", "must be at least 1"),
    (task(n_workers="4"), "tasks[0].n_workers", "must be integer, not string"),
    (task(n_workers=10**12), "tasks[0].n_workers", "must be at most"),
    (task(cluster_locations=[]), "tasks[0].cluster_locations", "at least 1 item"),
    (task(cluster_locations="sub-2"), "tasks[0].cluster_locations", "must be array"),
    (task(cluster_locations=["has space"]), "tasks[0].cluster_locations[0]", "must match the pattern"),
    (task(input_queue_aliases=[""]), "tasks[0].input_queue_aliases[0]", "at least 1 character"),
    (task(output_queue_aliases=["input-queue"]), "tasks[0].output_queue_aliases[0]", "also an input alias"),
    (task(task_image=HUGE), "tasks[0].task_image", "at most 1024 characters"),
    (task(task_args=HUGE), "tasks[0].task_args", "at most 16384 characters"),
    (task(task_image=""), "tasks[0].task_image", "at least 1 character"),
    (task(environment={"A": {"nested": 1}}), "tasks[0].environment.A", "must be string or number or boolean"),
    (task(environment={"1BAD": "x"}), "tasks[0].environment", "key '1BAD' must match"),
    (task(environment={"K": HUGE}), "tasks[0].environment.K", "at most 16384 characters"),
    (task(task_env={}), "tasks[0]", "either 'environment' or 'task_env'"),
    (task(walltime=5), "tasks[0].walltime", "is not an allowed field"),
    (task(worker_config=[]), "tasks[0].worker_config", "must be object, not array"),
    (worker(worker_memory="512 parsecs"), "tasks[0].worker_config.worker_memory", "must match the pattern"),
    (worker(worker_disk=-1), "tasks[0].worker_config.worker_disk", "must be at least 1"),
    (worker(n_cores=0), "tasks[0].worker_config.n_cores", "must be at least 1"),
    (worker(gpus=1), "tasks[0].worker_config.gpus", "is not an allowed field"),
    (worker(max_worker_runtime="10m"), "tasks[0].worker_config.max_worker_runtime", "must be integer"),
    (b"{not json", "(body)", "is not valid JSON"),
    (b"", "(body)", "a JSON object is required"),
    (b"[1, 2]", "(body)", "must be a JSON object, not array"),
    (b'{"public_queue_aliases": [], "tasks": [], "priority": NaN}', "(body)", "NaN is not a JSON number"),
    (b"\xff\xfe\x00garbage", "(body)", "is not"),
    (b"[" * 50_000 + b"]" * 50_000, "(body)", "nested too deeply"),
]


async def test_malformed_workflow_bodies_get_a_400_naming_the_field(wms: WMSUnderTest) -> None:
    client = wms.user
    for case, field, reason in WORKFLOW_CASES:
        raw = case if isinstance(case, bytes) else None
        response = await client.request("POST", "/v1/workflows", None if raw else case, raw=raw)
        assert response.status == 400, (field, response.status, response.json)
        assert _names(response.json, field, reason), (field, reason, response.json)
        assert response.json["error"].startswith(field) or f"; {field}" in response.json["error"]
        assert HUGE not in response.body.decode(errors="replace")  # never echo the offending value
    # nothing of it was stored
    assert (await wms.admin.post("/v1/query/workflows", {"query": {}})).json["workflows"] == []


async def test_bad_input_on_the_other_routes(wms: WMSUnderTest) -> None:
    user, tms = wms.user, wms.tms
    created = await wms.create_workflow()
    task_id = created["task_directives"][0]["task_id"]
    uuid = created["taskforces"][0]["taskforce_uuid"]
    cases: list[tuple[Any, str, str, Any, str, str]] = [
        (user, "POST", "/v1/query/workflows", {}, "query", "is required"),
        (user, "POST", "/v1/query/workflows", {"query": {"$where": "1"}}, "query.$where", "operator not allowed"),
        (user, "POST", "/v1/query/taskforces", {"query": {"a": {"$function": {}}}}, "query.a.$function", "not allowed"),
        (user, "POST", "/v1/query/workflows", {"query": {}, "projection": ["$x"]}, "projection[0]", "pattern"),
        (user, "POST", "/v1/query/workflows", {"query": {}, "projection": []}, "projection", "at least 1"),
        (user, "POST", "/v1/query/workflows", {"query": {}, "after": "zz"}, "after", "pattern"),
        (user, "POST", "/v1/query/task-directives", {"query": [1]}, "query", "must be object"),
        (user, "POST", f"/v1/task-directives/{task_id}/actions/add-workers", {"cluster_location": "x", "n_workers": -1},
         "n_workers", "at least 1"),
        (user, "POST", f"/v1/task-directives/{task_id}/actions/add-workers", {"n_workers": 1}, "cluster_location",
         "is required"),
        (user, "POST", f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {"now": True}, "now",
         "not an allowed field"),
        (user, "GET", "/v1/workflows/a%20b", None, "workflow_id", "pattern"),
        (tms, "GET", "/v1/tms/pending-starter/taskforces", None, "query argument 'cluster_location'", "is required"),
        (tms, "POST", f"/v1/tms/condor-submit/taskforces/{uuid}", {"cluster_idd": 1}, "cluster_id", "is required"),
        (tms, "POST", f"/v1/tms/condor-submit/taskforces/{uuid}", {"cluster_id": -1}, "cluster_id", "at least 0"),
        (tms, "POST", f"/v1/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": "now"},
         "condor_complete_ts", "must be number"),
        (tms, "POST", "/v1/tms/statuses/taskforces", {}, "(body)", "at least 1 field"),
        (tms, "POST", "/v1/tms/statuses/taskforces", {"compound_statuses_by_taskforce": {uuid: {"idle": -1}}},
         f"compound_statuses_by_taskforce.{uuid}.idle", "at least 0"),
        (tms, "POST", "/v1/tms/statuses/taskforces", {"top_task_errors_by_taskforce": {uuid: {"e": "many"}}},
         f"top_task_errors_by_taskforce.{uuid}.e", "must be integer"),
    ]  # fmt: skip
    for client, method, path, body, field, reason in cases:
        query = {"claimant": "x"} if "pending-starter" in path else None
        response = await client.request(method, path, body, query=query)
        assert response.status == 400, (path, body, response.status, response.json)
        assert _names(response.json, field, reason), (path, field, response.json)


async def test_unknown_routes_404_and_wrong_methods_405(wms: WMSUnderTest) -> None:
    user = wms.user
    for path in ("/", "/v1", "/v2/workflows", "/v1/workflows/x/actions/explode", "/v1/nothing"):
        response = await user.get(path)
        assert response.status == 404 and response.json == {"code": 404, "error": f"no such route: {path}"}
    for method, path, allow in [
        ("DELETE", "/v1/workflows/someid", "GET"),
        ("GET", "/v1/workflows", "POST"),
        ("PUT", "/v1/tms/statuses/taskforces", "POST"),
        ("PATCH", "/v1/", "GET"),
    ]:
        response = await user.request(method, path, {})
        assert response.status == 405, (method, path)
        assert response.headers["Allow"] == allow
        assert response.json == {"code": 405, "error": f"{method} is not allowed here; allowed: {allow}"}


async def test_a_body_over_the_size_limit_is_refused_without_a_500(wms_factory: Any) -> None:
    wms = await wms_factory(max_body_bytes=64 * 1024)
    response = await wms.user.request("POST", "/v1/workflows", raw=b"{" + b" " * 100_000 + b"}", validate=False)
    assert 400 <= response.status < 500, response.status
