"""ewms_wms.model: documents built from a request — ids, queue names, defaults, sizes, credentials."""

import copy
from typing import Any

import pytest

from ewms_config import parse_size
from ewms_wms import model
from ewms_wms.model import BrokerSettings

SHARED = BrokerSettings("h:5672", per_workflow_users=False, shared_user="guest", shared_password="guest")
PER_WORKFLOW = BrokerSettings("h:5672/v", per_workflow_users=True, shared_user="", shared_password="")
BODY: dict[str, Any] = {
    "public_queue_aliases": ["to-client"],
    "priority": 7,
    "tasks": [
        {
            "cluster_locations": ["a", "b"],
            "input_queue_aliases": ["to-client"],
            "output_queue_aliases": ["from client", "from_client"],
            "task_image": "img",
            "n_workers": 3,
            "task_env": {"X": "1"},
            "worker_config": {"worker_memory": "2GiB", "n_cores": 4},
        }
    ],
}


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1, 1), ("512M", 512 * 1024**2), ("2GiB", 2 * 1024**3), ("1.5g", int(1.5 * 1024**3)), (" 10 kb ", 10240),
     ("7", 7), ("3B", 3), ("1T", 1024**4)],
)  # fmt: skip
def test_sizes(size: int | str, expected: int) -> None:
    assert parse_size(size) == expected


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12 parsecs")


def test_queue_names_read_well_and_never_collide() -> None:
    names = model.queue_names("wf1", ["Input Queue", "input_queue", "input-queue", "!!!"])
    assert names == {
        "Input Queue": "wf1-input-queue",
        "input_queue": "wf1-input-queue-2",
        "input-queue": "wf1-input-queue-3",
        "!!!": "wf1-q",
    }


def test_one_taskforce_per_task_and_location_with_defaults_filled_in() -> None:
    docs = model.build_workflow(copy.deepcopy(BODY), "alice", 100.0, PER_WORKFLOW)
    workflow, [directive] = docs.workflow, docs.task_directives
    assert workflow["priority"] == 7 and workflow["owner"] == "alice" and workflow["mq_state"] == "pending"
    assert [t["cluster_location"] for t in docs.taskforces] == ["a", "b"]
    assert all(t["phase"] == "pre-mq-activation" and t["priority"] == 7 for t in docs.taskforces)
    config = docs.taskforces[0]["worker_config"]
    assert config["worker_memory_bytes"] == 2 * 1024**3 and config["n_cores"] == 4
    assert config["max_worker_runtime"] == 24 * 3600 and config["worker_disk_bytes"] == 1024**3  # defaults
    assert directive["task_env"] == {"X": "1"} and directive["input_queues"] == [f"{workflow['workflow_id']}-to-client"]
    assert [p["is_public"] for p in docs.mqprofiles] == [True, False, False]
    user = workflow["broker_user"]
    assert user == f"ewms-wf-{workflow['workflow_id']}"
    assert {p["broker_address"] for p in docs.mqprofiles} == {f"{user}@h:5672/v"}
    assert len({p["auth_token"] for p in docs.mqprofiles}) == 1 and len(docs.mqprofiles[0]["auth_token"]) >= 40


def test_shared_credentials_mode() -> None:
    docs = model.build_workflow(copy.deepcopy(BODY), "alice", 100.0, SHARED)
    assert docs.workflow["broker_user"] is None
    assert {(p["broker_address"], p["auth_token"]) for p in docs.mqprofiles} == {("guest@h:5672", "guest")}


def test_rules_across_fields() -> None:
    body = copy.deepcopy(BODY)
    body["public_queue_aliases"] = ["to-client", "elsewhere"]
    body["tasks"][0]["environment"] = {}
    body["tasks"][0]["output_queue_aliases"].append("to-client")
    assert model.workflow_request_problems(body) == [
        ("public_queue_aliases[1]", "'elsewhere' is not an input or output alias of any task"),
        ("tasks[0]", "give either 'environment' or 'task_env', not both"),
        ("tasks[0].output_queue_aliases[2]", "is also an input alias of this task"),
    ]
    assert model.workflow_request_problems(copy.deepcopy(BODY)) == []
