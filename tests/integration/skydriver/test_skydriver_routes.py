"""Every route's happy path and its refusals, as users and scanners call them (the WMS is down here: nothing
needs it, and what asks it must say so rather than fail)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rest_tools.client import RestClient

from skydriver.states import ScanState
from tests.integration.conftest import FakeClock
from tests.integration.skydriver.conftest import SkyDriverUnderTest, scan_body, token

Factory = Callable[..., Awaitable[SkyDriverUnderTest]]
SKYMAP = {
    "nside-8": {
        "columns": ["index", "llh", "E_in", "E_tot", "X", "Y", "Z", "T"],
        "data": [[0, 10.5, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0], [1, 11.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0]],
        "metadata": {"nside": 8, "run_id": 123456, "event_id": 42},
    }
}


def pixel_result(pixel: int, seed: int = 0, llh: float = 1.0) -> dict[str, Any]:
    return {"event_ref": "run123456.evt42.x", "nside": 8, "pixel": pixel, "seed": seed, "llh": llh, "E_in": 1.0,
            "E_tot": 2.0, "X": 0.0, "Y": 0.0, "Z": 0.0, "T": 0.0, "reco_seconds": 0.1}  # fmt: skip


async def started(skydriver: SkyDriverUnderTest, now: float) -> str:
    """A scan as the starter leaves it (scanner launched, no report yet), without a WMS."""
    scan_id: str = (await skydriver.post_scan())["scan_id"]
    scanner = {"launcher": "local", "handle": "nowhere", "started_at": now, "last_heartbeat": now, "restarts": 0,
               "stopped_at": None}  # fmt: skip
    state = str(ScanState.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP)
    await skydriver.db.manifests.update(scan_id, {"scanner": scanner, "scan_state": state}, now)
    return scan_id


async def test_health_and_the_openapi_document_need_no_token(skydriver: SkyDriverUnderTest) -> None:
    anonymous = skydriver.with_token(None)
    health = await skydriver.ok(anonymous.get("/"))
    assert health["service"] == "skydriver" and health["database"] == "ok" and health["versions"]["python"]
    assert (await skydriver.ok(anonymous.get("/schema/openapi"))) == skydriver.doc
    missing = await skydriver.user.get("/no/such/route")
    assert missing.status == 404 and missing.json == {"code": 404, "error": "no such route: /no/such/route"}
    wrong = await skydriver.user.request("PUT", "/scan", {}, validate=False)
    assert wrong.status == 405 and wrong.json["error"] == "PUT is not allowed here; allowed: POST"


async def test_unknown_and_malformed_scan_ids(skydriver: SkyDriverUnderTest) -> None:
    unknown = await skydriver.user.get(f"/scan/{'a' * 32}")
    assert unknown.status == 404 and unknown.json["error"].startswith(f"no scan {'a' * 32}")
    bad = await skydriver.user.get("/scan/not-a-scan-id/manifest")
    assert bad.status == 400 and bad.json["errors"][0]["field"] == "scan_id"


async def test_a_scanner_reports_its_way_to_a_final_result(skydriver_factory: Factory) -> None:
    clock = FakeClock()
    skydriver = await skydriver_factory(clock=clock)
    scan_id = await started(skydriver, clock())
    scanner, user = skydriver.system(scan_id), skydriver.user
    path = f"/scan/{scan_id}"
    assert await skydriver.ok(user.get(f"{path}/result")) == {}

    clock.advance(7)
    progress = {"tasks_done": 3, "tasks_expected": 768, "rate_per_second": 1.5, "eta_seconds": 510.0,
                "nsides": {"8": {"done": 3, "requested": 768, "expected": 768}}, "dead_tasks": 0}  # fmt: skip
    manifest = await skydriver.ok(scanner.request("PATCH", f"{path}/manifest", {"progress": progress}))
    assert manifest["scan_state"] == "PENDING__WAITING_ON_FIRST_PIXEL_RECO" and manifest["progress"] == progress
    assert manifest["scanner"]["last_heartbeat"] == clock() and manifest["last_updated"] == clock()
    status = await skydriver.ok(user.get(f"{path}/status"))
    assert "3 of 768 pixel tasks done" in status["message"] and status["scan_complete"] is False

    partial = await skydriver.ok(
        scanner.request("PUT", f"{path}/result", {"skyscan_result": SKYMAP, "is_final": False})
    )
    assert partial == {"scan_id": scan_id, "skyscan_result": SKYMAP, "is_final": False, "summary": None}
    assert (await skydriver.ok(user.get(f"{path}/manifest")))["scan_state"] == "IN_PROGRESS__PARTIAL_RESULT_GENERATED"

    dead = [{"nside": 8, "pixel": 5, "seed": 0}]
    await skydriver.ok(scanner.request("PATCH", f"{path}/manifest", {"dead_tasks": dead}))
    more = [*dead, {"nside": 8, "pixel": 6, "seed": 0}]
    manifest = await skydriver.ok(scanner.request("PATCH", f"{path}/manifest", {"dead_tasks": more}))
    assert manifest["dead_tasks"] == more  # each once

    summary = {"best_fit": {"ra_deg": 10.0, "dec_deg": -5.0, "llh": 10.5}, "area_90_sqdeg": 3.2, "dead_tasks": 2}
    final = {"skyscan_result": SKYMAP, "is_final": True, "summary": summary}
    assert (await skydriver.ok(scanner.request("PUT", f"{path}/result", final)))["is_final"] is True
    whole = await skydriver.ok(user.get(path))
    assert whole["manifest"]["scan_state"] == "SCAN_FINISHED__PARTIAL" and whole["manifest"]["complete"] is True
    assert whole["result"] == {"scan_id": scan_id, **final}
    status = await skydriver.ok(user.get(f"{path}/status"))
    assert status["scan_complete"] is True and status["scan_state"] == "SCAN_FINISHED__PARTIAL"

    assert (await scanner.request("PUT", f"{path}/result", final)).status == 200  # a retried final PUT is fine
    late = await scanner.request("PUT", f"{path}/result", {"skyscan_result": SKYMAP, "is_final": False})
    assert late.status == 409 and "takes no more results" in late.json["error"]
    stray = await scanner.request("PATCH", f"{path}/manifest", {"progress": progress})
    assert stray.status == 409 and "takes no more reports" in stray.json["error"]


async def test_a_final_result_without_dead_tasks_finishes_successfully(skydriver: SkyDriverUnderTest) -> None:
    scan_id = await started(skydriver, 0.0)
    body = {"skyscan_result": SKYMAP, "is_final": True}
    await skydriver.ok(skydriver.system(scan_id).request("PUT", f"/scan/{scan_id}/result", body))
    manifest = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/manifest"))
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY" and manifest["complete"] is True


async def test_a_scanner_error_fails_the_scan(skydriver: SkyDriverUnderTest) -> None:
    scan_id = await started(skydriver, 0.0)
    body = {"scanner_error": "cannot connect to the broker"}
    manifest = await skydriver.ok(skydriver.system(scan_id).request("PATCH", f"/scan/{scan_id}/manifest", body))
    assert manifest["scan_state"] == "FAILED__SCANNER" and manifest["error"] == "scanner: cannot connect to the broker"
    status = await skydriver.ok(skydriver.user.get(f"/scan/{scan_id}/status"))
    assert status["message"].startswith("failed: the scanner") and "cannot connect to the broker" in status["message"]


async def test_checkpoints_are_unioned_and_deduplicated(skydriver: SkyDriverUnderTest) -> None:
    scan_id = await started(skydriver, 0.0)
    scanner, path = skydriver.system(scan_id), f"/scan/{scan_id}/checkpoint"
    assert await skydriver.ok(scanner.get(path)) == {"published": [], "results": []}
    first = {"published": [[8, 1], [8, 2]], "results": [pixel_result(1)]}
    assert await skydriver.ok(scanner.post(path, first)) == {"seq": 1}
    second = {"published": [[8, 2], [8, 3, 1]], "results": [pixel_result(1), pixel_result(2, llh=0.5)]}
    assert await skydriver.ok(scanner.post(path, second)) == {"seq": 2}
    assert await skydriver.ok(scanner.post(path, {})) == {"seq": 3}
    union = await skydriver.ok(scanner.get(path))
    assert union == {"published": [[8, 1], [8, 2], [8, 3, 1]], "results": [pixel_result(1), pixel_result(2, llh=0.5)]}
    bad = await scanner.post(path, {"results": [{**pixel_result(1), "llh": "low"}]})
    assert bad.status == 400 and bad.json["errors"][0]["field"] == "results[0].llh"
    await skydriver.ok(scanner.request("PATCH", f"/scan/{scan_id}/manifest", {"scanner_error": "boom"}))
    assert (await scanner.post(path, first)).status == 409


async def test_find_filters_projects_and_hides_deleted_scans(skydriver: SkyDriverUnderTest) -> None:
    gold = await skydriver.post_scan(scan_body(classifiers={"alert": "gold"}, priority=2))
    bronze = await skydriver.post_scan(scan_body(classifiers={"alert": "bronze"}))
    gone = await skydriver.post_scan(scan_body(classifiers={"alert": "gold"}))
    await skydriver.ok(skydriver.user.request("DELETE", f"/scan/{gone['scan_id']}", {}))

    async def find(body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await skydriver.ok(skydriver.user.post("/scans/find", body))
        assert list(answer) == ["manifests"]  # and nothing else at the top level
        manifests: list[dict[str, Any]] = answer["manifests"]
        return manifests

    assert [m["scan_id"] for m in await find({"filter": {"classifiers.alert": "gold"}})] == [gold["scan_id"]]
    both = await find({"filter": {"classifiers.alert": "gold"}, "include_deleted": True})
    assert [m["scan_id"] for m in both] == [gold["scan_id"], gone["scan_id"]]
    by_event = {"event_metadata.run_id": {"$in": [123456]}, "event_metadata.event_id": 42}
    assert len(await find({"filter": by_event})) == 2
    either = {"$or": [{"priority": {"$gte": 2}}, {"classifiers.alert": {"$eq": "bronze"}}]}
    projected = await find({"filter": either, "manifest_projection": ["scan_id", "event_metadata.run_id"]})
    assert projected == [{"scan_id": s["scan_id"], "event_metadata": {"run_id": 123456}} for s in (gold, bronze)]
    assert await find({"filter": {"scan_id": gold["scan_id"]}, "manifest_projection": ["*"]}) == [gold]
    refused = await skydriver.user.post("/scans/find", {"filter": {"$where": "sleep(1000)"}})
    assert refused.status == 400 and refused.json["errors"][0]["field"] == "filter.$where"
    nested = await skydriver.user.post("/scans/find", {"filter": {"priority": {"$regex": "x"}}})
    assert nested.status == 400 and "operator not allowed" in nested.json["error"]


async def test_the_backlog_is_ordered_by_priority_then_age(skydriver_factory: Factory) -> None:
    clock = FakeClock()
    skydriver = await skydriver_factory(clock=clock)
    ids = {}
    for name, priority in (("low", 0), ("high", 5), ("high-later", 5), ("mid", 1), ("deleted", 9)):
        clock.advance(1)
        ids[name] = (await skydriver.post_scan(scan_body(priority=priority)))["scan_id"]
    await skydriver.ok(skydriver.user.request("DELETE", f"/scan/{ids['deleted']}", {}))
    backlog = await skydriver.ok(skydriver.user.get("/scans/backlog"))
    order = ["high", "high-later", "mid", "low"]
    assert [e["scan_id"] for e in backlog["entries"]] == [ids[n] for n in order]
    assert [e["position"] for e in backlog["entries"]] == [0, 1, 2, 3]
    assert backlog["entries"][0]["priority"] == 5 and backlog["entries"][0]["timestamp"] == clock() - 3


async def test_delete_needs_the_flag_for_a_completed_scan_and_deleted_scans_404_elsewhere(
    skydriver: SkyDriverUnderTest,
) -> None:
    scan_id = await started(skydriver, 0.0)
    await skydriver.ok(
        skydriver.system(scan_id).request(
            "PUT", f"/scan/{scan_id}/result", {"skyscan_result": SKYMAP, "is_final": True}
        )
    )
    user, path = skydriver.user, f"/scan/{scan_id}"
    refused = await user.request("DELETE", path, {})
    assert refused.status == 400 and refused.json["errors"][0]["field"] == "delete_completed_scan"
    deleted = await skydriver.ok(user.request("DELETE", path, {"delete_completed_scan": True}))
    assert deleted["manifest"]["is_deleted"] is True and deleted["result"]["is_final"] is True
    assert deleted["manifest"]["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY"  # deleting does not undo success
    for route in ("", "/manifest", "/result", "/i3-event", "/ewms/workflow-id"):
        assert (await user.get(path + route)).status == 404, route
        assert (await user.get(path + route, query={"include_deleted": "True"})).status == 200, route
    status = await skydriver.ok(user.get(f"{path}/status"))  # answers for deleted scans without being asked
    assert status["is_deleted"] is True and status["scan_complete"] is True
    assert (await user.request("DELETE", path, {})).status == 404


async def test_deleting_a_waiting_scan_stops_it(skydriver: SkyDriverUnderTest) -> None:
    scan_id = (await skydriver.post_scan())["scan_id"]
    deleted = await skydriver.ok(skydriver.user.request("DELETE", f"/scan/{scan_id}", None))  # no body at all
    assert deleted["result"] == {}
    manifest = deleted["manifest"]
    assert manifest["scan_state"] == "STOPPED__PRESTARTUP" and manifest["error"] == "deleted by alice"
    assert (await skydriver.ok(skydriver.user.get("/scans/backlog"))) == {"entries": []}


async def test_rescan_links_old_and_new_and_may_stop_or_replace_the_old(skydriver: SkyDriverUnderTest) -> None:
    user = skydriver.user
    old = await skydriver.post_scan(scan_body(classifiers={"alert": "gold"}, priority=4))
    plain = await skydriver.ok(user.post(f"/scan/{old['scan_id']}/actions/rescan", {}))
    assert plain["rescan_of"] == old["scan_id"] and plain["scan_id"] != old["scan_id"]
    assert plain["classifiers"] == {"alert": "gold"} and plain["priority"] == 4
    assert plain["i3_event_id"] == old["i3_event_id"] and plain["scan_state"] == "PENDING__PRESTARTUP"

    body = {"abort_first": True, "replace_scan": True}
    replacing = await skydriver.ok(user.post(f"/scan/{old['scan_id']}/actions/rescan", body))
    old_now = await skydriver.ok(user.get(f"/scan/{old['scan_id']}/manifest"))
    assert old_now["replaced_by_scan_id"] == replacing["scan_id"] and old_now["scan_state"] == "STOPPED__PRESTARTUP"
    assert old_now["is_deleted"] is False
    request = await skydriver.ok(user.get(f"/scan-request/{old['scan_id']}"))
    assert request["rescan_ids"] == [plain["scan_id"], replacing["scan_id"]]
    new_request = await skydriver.ok(user.get(f"/scan-request/{replacing['scan_id']}"))
    assert {k: v for k, v in new_request.items() if k not in ("scan_id", "rescan_ids")} == {
        k: v for k, v in request.items() if k not in ("scan_id", "rescan_ids")
    }
    await skydriver.ok(user.request("DELETE", f"/scan/{plain['scan_id']}", {}))
    again = await skydriver.ok(user.post(f"/scan/{plain['scan_id']}/actions/rescan", None))  # deleted scans too
    assert again["rescan_of"] == plain["scan_id"]


async def test_workflow_routes_without_a_workflow_and_with_the_wms_down(skydriver: SkyDriverUnderTest) -> None:
    scan_id = await started(skydriver, 0.0)
    user, scanner, path = skydriver.user, skydriver.system(scan_id), f"/scan/{scan_id}"
    pending = {"workflow_id": "pending-ewms", "requested_ewms_workflow": False}
    assert await skydriver.ok(user.get(f"{path}/ewms/workflow-id")) == pending
    add = {"n_workers": 3, "cluster_location": "sub-2"}
    early = await user.post(f"{path}/actions/add-workers", add)
    assert early.status == 409 and "no workflow yet" in early.json["error"]
    assert (await scanner.post(f"{path}/ewms/actions/finished", {})).status == 409
    status = await skydriver.ok(user.get(f"{path}/status"))
    assert status["ewms"] == {"workflow_id": None, "alive": None, "deactivated": None, "pilots": None}
    assert status["scanner"] == {"alive": False, "restarts": 0, "last_heartbeat": 0.0}  # no scanner 'nowhere' runs

    recorded = {"workflow_id": "wf-1", "requested_ewms_workflow": True}
    assert await skydriver.ok(scanner.post(f"{path}/ewms/workflow-id", {"workflow_id": "wf-1"})) == recorded
    assert await skydriver.ok(scanner.post(f"{path}/ewms/workflow-id", {"workflow_id": "wf-1"})) == recorded
    other = await scanner.post(f"{path}/ewms/workflow-id", {"workflow_id": "wf-2"})
    assert other.status == 409
    status = await skydriver.ok(user.get(f"{path}/status"))  # the WMS is down: said so, never a 500
    assert status["ewms"]["workflow_id"] == "wf-1" and status["ewms"]["alive"] is None
    assert "did not answer" in status["ewms"]["error"]
    for response in (await user.post(f"{path}/actions/add-workers", add),
                     await scanner.post(f"{path}/ewms/actions/finished", {})):  # fmt: skip
        assert response.status == 503 and "does not answer" in response.json["error"]


async def test_an_icecube_style_script_with_rest_tools(skydriver: SkyDriverUnderTest) -> None:
    """What IceCube's scripts do: `RestClient`, GET arguments in the query string (booleans as 'True'),
    JSON bodies for POST and DELETE, unknown arguments ignored."""
    rc = RestClient(skydriver.url, token=token("user"), retries=0)
    manifest = await rc.request("POST", "/scan", scan_body(cluster={"sub-2": 10}, scanner_server_memory="1G"))
    scan_id = manifest["scan_id"]
    assert (await rc.request("GET", f"/scan/{scan_id}/manifest", {"include_deleted": True}))["scan_id"] == scan_id
    assert await rc.request("GET", f"/scan/{scan_id}/result", {"include_deleted": False, "unknown": 1}) == {}
    status = await rc.request("GET", f"/scan/{scan_id}/status")
    assert status["scan_complete"] is False and status["is_deleted"] is False
    found = await rc.request("POST", "/scans/find", {"filter": {"scan_id": {"$in": [scan_id]}}})
    assert [m["scan_id"] for m in found["manifests"]] == [scan_id]
    deleted = await rc.request("DELETE", f"/scan/{scan_id}")  # rest_tools sends {}
    assert deleted["manifest"]["is_deleted"] is True
    again = await rc.request("GET", f"/scan/{scan_id}", {"include_deleted": True})
    assert again["manifest"]["scan_state"] == "STOPPED__PRESTARTUP" and again["result"] == {}
    rc.close()
