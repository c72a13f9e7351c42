"""POST /scan: malformed bodies are a 400 naming the field; upstream SkyDriver's spellings are accepted."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.integration.skydriver.conftest import EVENT, SkyDriverUnderTest, scan_body

GiB = 1024**3
HUGE = "x" * 100_000


def event(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EVENT)
    doc.update(changes)
    return doc


def _names(answer: dict[str, Any], field: str, reason: str) -> bool:
    """The 400 answer lists `field` with a reason containing `reason`."""
    return answer["code"] == 400 and any(e["field"] == field and reason in e["reason"] for e in answer["errors"])


uneven = event(pulses={**EVENT["pulses"], "om": EVENT["pulses"]["om"][:-1]})
# (body or raw bytes, the field the error must name, words the reason must contain)
CASES: list[tuple[Any, str, str]] = [
    (scan_body(reco_algo=None), "reco_algo", "is required"),
    (scan_body(reco_algo="millipede"), "reco_algo", "must be one of"),
    (scan_body(event_i3live_json=None), "event_i3live_json", "is required"),
    (scan_body(event_i3live_json=7), "event_i3live_json", "must be object or string, not integer"),
    (scan_body(event_i3live_json="{not json"), "event_i3live_json", "not valid JSON"),
    (scan_body(event_i3live_json="[1, 2]"), "event_i3live_json", "does not hold an object"),
    (scan_body(event_i3live_json=event(pulses=None)), "event_i3live_json", "event invalid at pulses"),
    (scan_body(event_i3live_json=event(geometry="km3net")), "event_i3live_json", "event invalid at geometry"),
    (scan_body(event_i3live_json=uneven), "event_i3live_json", "columns differ in length"),
    (scan_body(nsides=None), "nsides", "is required"),
    (scan_body(nsides={}), "nsides", "at least 1 field"),
    (scan_body(nsides=[8, 64]), "nsides", "must be object, not array"),
    (scan_body(nsides={"7": 0}), "nsides", "7 is not a power of two"),
    (scan_body(nsides={"8": 0, "64": 0}), "nsides", "refines 0 pixels"),
    (scan_body(nsides={"eight": 0}), "nsides", "key 'eight' must match"),
    (scan_body(nsides={"8": -1}), "nsides.8", "at least 0"),
    (scan_body(real_or_simulated_event=None), "real_or_simulated_event", "is required"),
    (scan_body(real_or_simulated_event="maybe"), "real_or_simulated_event", "must be one of"),
    (scan_body(docker_tag=""), "docker_tag", "at least 1 character"),
    (scan_body(docker_tag="has space"), "docker_tag", "must match the pattern"),
    (scan_body(predictive_scanning_threshold=0), "predictive_scanning_threshold", "more than 0"),
    (scan_body(predictive_scanning_threshold=1.5), "predictive_scanning_threshold", "at most 1"),
    (scan_body(classifiers={"a": {"b": 1}}), "classifiers.a", "must be string or number or boolean"),
    (scan_body(classifiers={"a.b": 1}), "classifiers", "key 'a.b' must match"),
    (scan_body(request_clusters="sub-2"), "request_clusters", "must be object or array, not string"),
    (scan_body(request_clusters={"sub-2": 0}), "request_clusters.sub-2", "at least 1"),
    (scan_body(request_clusters=[["sub-2"]]), "request_clusters[0]", "at least 2 item"),
    (scan_body(request_clusters=[["sub-2", "many"]]), "request_clusters[0][1]", "must be integer"),
    (scan_body(cluster={"sub-2": 1}, request_clusters={"sub-2": 1}), "cluster", "alias of request_clusters"),
    (scan_body(scanner_server_memory="lots"), "scanner_server_memory", "must match the pattern"),
    (scan_body(scanner_server_memory="1G", scanner_server_memory_bytes=GiB), "scanner_server_memory", "give only"),
    (scan_body(worker_memory_bytes=-1), "worker_memory_bytes", "at least 1"),
    (scan_body(worker_disk="1G", worker_disk_bytes=GiB), "worker_disk", "alias of worker_disk_bytes"),
    (scan_body(max_pixel_reco_time=0), "max_pixel_reco_time", "at least 1"),
    (scan_body(max_pixel_reco_time="10"), "max_pixel_reco_time", "must be integer or null, not string"),
    (scan_body(max_worker_runtime=10), "max_worker_runtime", "at least 60"),
    (scan_body(priority=1.5), "priority", "must be integer, not number"),
    (scan_body(scanner_server_env={"1BAD": "x"}), "scanner_server_env", "key '1BAD' must match"),
    (scan_body(scanner_server_env={"K": HUGE}), "scanner_server_env.K", "at most 16384 characters"),
    (scan_body(reco_algo="crash_dummy", reco_options={"failure_rate": 2}), "reco_options", "failure_rate"),
    (scan_body(reco_options={"nested": [1]}), "reco_options.nested", "must be string or number or boolean"),
    (scan_body(priorty=3), "priorty", "is not an allowed field"),
    (b"{not json", "(body)", "is not valid JSON"),
    (b"", "(body)", "a JSON object is required"),
    (b"[1, 2]", "(body)", "must be a JSON object, not array"),
]


async def test_malformed_scan_requests_get_a_400_naming_the_field(skydriver: SkyDriverUnderTest) -> None:
    for case, field, reason in CASES:
        raw = case if isinstance(case, bytes) else None
        response = await skydriver.user.request("POST", "/scan", None if raw else case, raw=raw)
        assert response.status == 400, (field, response.status, response.json)
        assert _names(response.json, field, reason), (field, reason, response.json)
        assert HUGE not in response.body.decode(errors="replace")  # never echo the offending value
    # nothing of it was stored
    assert await skydriver.db.manifests.collection.count_documents({}) == 0
    assert await skydriver.db.requests.collection.count_documents({}) == 0


async def test_the_manifest_is_readable_right_after_post_with_the_fields_clients_rely_on(
    skydriver: SkyDriverUnderTest,
) -> None:
    manifest = await skydriver.post_scan(scan_body(classifiers={"alert": "gold", "signalness": 0.5}, priority=3))
    assert manifest["ewms_workflow_id"] == "pending-ewms" and manifest["progress"] is None
    assert manifest["scan_state"] == "PENDING__PRESTARTUP" and manifest["complete"] is False
    metadata = {"run_id": 123456, "event_id": 42, "event_type": EVENT["event_type"], "mjd": EVENT["mjd"]}
    assert manifest["event_metadata"] == {**metadata, "is_real_event": False}
    assert manifest["classifiers"] == {"alert": "gold", "signalness": 0.5} and manifest["priority"] == 3
    assert manifest["replaced_by_scan_id"] is None and manifest["rescan_of"] is None
    assert manifest["timestamp"] == manifest["last_updated"] and manifest["submitted_by"] == "alice"
    assert manifest["versions"]["skydriver"] and manifest["versions"]["scanner_image"] == "host"
    assert manifest["ewms_address"] == skydriver.skydriver.config.wms_url
    again = await skydriver.ok(skydriver.user.get(f"/scan/{manifest['scan_id']}/manifest"))
    assert again == manifest
    event = await skydriver.ok(skydriver.user.get(f"/scan/{manifest['scan_id']}/i3-event"))
    assert event == {"i3_event_id": manifest["i3_event_id"], "event_i3live_json": EVENT}


async def test_defaults_are_filled_in_and_the_stored_request_can_be_posted_back(skydriver: SkyDriverUnderTest) -> None:
    manifest = await skydriver.post_scan()
    stored = await skydriver.ok(skydriver.user.get(f"/scan-request/{manifest['scan_id']}"))
    assert stored == {
        **scan_body(),
        "scan_id": manifest["scan_id"],
        "rescan_ids": [],
        "docker_tag": "latest",
        "predictive_scanning_threshold": 1.0,
        "classifiers": {},
        "request_clusters": {"local": 2},  # SKYDRIVER_DEFAULT_CLUSTERS
        "worker_memory_bytes": 8 * GiB,
        "worker_disk_bytes": GiB,
        "max_pixel_reco_time": 1800,
        "max_worker_runtime": 4 * 3600,
        "priority": 0,
        "scanner_server_memory_bytes": GiB,
        "scanner_server_env": {},
        "reco_options": {},
    }
    reposted = await skydriver.post_scan(stored)  # a client may post what it read straight back
    again = await skydriver.ok(skydriver.user.get(f"/scan-request/{reposted['scan_id']}"))
    assert again == {**stored, "scan_id": reposted["scan_id"]}
    assert reposted["i3_event_id"] == manifest["i3_event_id"]  # the same event, stored once
    assert await skydriver.db.events.collection.count_documents({}) == 1


async def test_upstream_spellings_are_normalised(skydriver: SkyDriverUnderTest) -> None:
    """DESIGN §4.5: `cluster`, `scanner_server_memory` "1G", the event as a JSON string, nsides keys as strings,
    request_clusters as a list of pairs, `real_event`; accepted-and-ignored upstream fields."""
    upstream = {
        "reco_algo": "dummy",
        "event_i3live_json": json.dumps(EVENT),
        "nsides": {"8": 0, "64": 12},
        "real_or_simulated_event": "real_event",
        "docker_tag": "3.20.3",
        "cluster": [["sub-2", 100], ["sub-2", 50], ["bad-cluster", 7]],
        "scanner_server_memory": "1G",
        "worker_memory": "512M",
        "worker_disk": 2 * GiB,
        "scanner_server_env": {"SKYSCAN_PROGRESS_INTERVAL": 1, "DEBUG": True},
        "max_pixel_reco_time": None,
        "skyscan_mq_client_timeout_wait_for_first_message": 60,
        "debug_mode": ["client-logs"],
        "predictive_scanning_threshold": 1,
    }
    manifest = await skydriver.post_scan(upstream)
    assert manifest["event_metadata"]["is_real_event"] is True and manifest["docker_tag"] == "3.20.3"
    stored = await skydriver.ok(skydriver.user.get(f"/scan-request/{manifest['scan_id']}"))
    assert stored["request_clusters"] == {"sub-2": 150, "bad-cluster": 7}  # a location named twice adds up
    assert stored["scanner_server_memory_bytes"] == GiB and stored["worker_memory_bytes"] == 512 * 1024**2
    assert stored["worker_disk_bytes"] == 2 * GiB and stored["max_pixel_reco_time"] == 1800
    assert stored["nsides"] == {"8": 0, "64": 12} and stored["real_or_simulated_event"] == "real"
    assert stored["event_i3live_json"] == EVENT and stored["scanner_server_env"] == upstream["scanner_server_env"]
    for ignored in ("skyscan_mq_client_timeout_wait_for_first_message", "debug_mode", "cluster", "worker_memory"):
        assert ignored not in stored
    with_dict = await skydriver.post_scan(scan_body(request_clusters={"sub-2": 3}, real_or_simulated_event="sim"))
    stored = await skydriver.ok(skydriver.user.get(f"/scan-request/{with_dict['scan_id']}"))
    assert stored["request_clusters"] == {"sub-2": 3} and stored["real_or_simulated_event"] == "simulated"
