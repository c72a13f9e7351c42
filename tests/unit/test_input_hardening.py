"""What the fuzzer (tests/fuzz) found, pinned: request bodies that passed the documents but broke the services
with a 500 (or a request that could tie up the broker) are now 400s naming the field — each case here is one the
fuzzer produced."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ewms_config import MAX_SIZE, parse_size, size_problem
from ewms_rest.search import QueryError, check_filter
from ewms_rest.validation import InvalidRequest, check_storable, decode_json
from ewms_wms import model
from skydriver.scan_request import normalise
from tests.integration.skydriver.conftest import scan_body

WORKFLOW: dict[str, Any] = {
    "public_queue_aliases": ["in"],
    "tasks": [
        {
            "cluster_locations": ["a"],
            "input_queue_aliases": ["in"],
            "output_queue_aliases": ["out"],
            "task_image": "img",
            "n_workers": 1,
        }
    ],
}


def _errors(raw: bytes) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRequest) as caught:
        check_storable(decode_json(raw), raw)
    return [(e.field, e.reason) for e in caught.value.errors]


def test_integers_mongodb_cannot_store_are_refused_naming_the_field() -> None:
    raw = b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": "12345678901234567890", "d": 1e300}'
    check_storable(decode_json(raw), raw)
    assert _errors(b'{"query": {"n": [1, 9223372036854775808]}}') == [
        ("query.n[1]", "is an integer beyond 64 bits (what the database stores)")
    ]
    assert _errors(b'{"x": -9223372036854775809}')[0][0] == "x"
    with pytest.raises(InvalidRequest) as caught:  # a number longer than Python converts
        decode_json(b'{"a": [1, -' + b"9" * 5000 + b"]}")
    assert len(str(caught.value)) < 300  # and the value is not echoed


def test_field_names_with_a_nul_are_refused_with_where_they_are() -> None:
    raw = b'{"a": "x\\u0000y"}'
    check_storable(decode_json(raw), raw)  # in a value it is only text
    assert _errors(b'{"query": {"ok": 1, "b": [0, {"c\\u0000": 1}]}}') == [
        ("query.b[1]", "a field name contains a NUL character (\\u0000)")
    ]
    assert _errors(b'{"\\u0000": 1}')[0][0] == "(body)"


def test_a_deep_body_is_refused_not_a_crash() -> None:
    for depth in (950, 5000):  # what the JSON parser takes, and what it does not
        raw = b'{"a": ' + b"[" * depth + b'{"\\u0000": 1}' + b"]" * depth + b"}"
        with pytest.raises(InvalidRequest, match=r"NUL|nested too deeply"):
            check_storable(decode_json(raw), raw)


def test_filters_stay_vetted() -> None:
    check_filter({"a": {"$in": [1, 2]}}, "filter")
    with pytest.raises(QueryError):
        check_filter({"$where": "1"}, "filter")


@pytest.mark.parametrize(
    ("value", "problem"),
    [(1024.0, None), ("1P", None), (MAX_SIZE, None), ("82771p", "between 1 byte and 1P"), ("0", "between"),
     ("0.0001k", "between"), (1.5, "not a whole number"), ("lots", "not a size")],
)  # fmt: skip
def test_sizes_are_whole_bytes_between_one_and_a_petabyte(value: Any, problem: str | None) -> None:
    found = size_problem(value)
    assert (found is None) if problem is None else (problem in str(found)), found
    if problem is None:
        assert parse_size(value) == int(value) if not isinstance(value, str) else parse_size(value) == MAX_SIZE


def test_a_scan_request_with_an_out_of_range_size_is_a_400_naming_the_field_it_came_in() -> None:
    for field in ("worker_disk_bytes", "worker_disk", "scanner_server_memory"):
        with pytest.raises(InvalidRequest) as caught:
            normalise(scan_body(**{field: "82771p"}), {"local": 1})
        assert [e.field for e in caught.value.errors] == [field]
    request = normalise(scan_body(worker_memory_bytes=2048.0, request_clusters={"x": 3.0}), {"local": 1})
    assert request.fields["worker_memory_bytes"] == 2048 and isinstance(request.fields["worker_memory_bytes"], int)
    assert request.fields["request_clusters"] == {"x": 3} and isinstance(request.fields["request_clusters"]["x"], int)


def test_one_workflow_may_not_ask_for_thousands_of_queues_or_taskforces() -> None:
    assert model.workflow_request_problems(copy.deepcopy(WORKFLOW)) == []
    many_queues = copy.deepcopy(WORKFLOW)
    many_queues["tasks"][0]["output_queue_aliases"] = [f"o{i}" for i in range(model.MAX_WORKFLOW_QUEUES)]
    assert model.workflow_request_problems(many_queues) == [
        ("tasks", f"name {model.MAX_WORKFLOW_QUEUES + 1} queues; a workflow may have at most 64")
    ]
    many_taskforces = copy.deepcopy(WORKFLOW)
    many_taskforces["tasks"] = [
        {**WORKFLOW["tasks"][0], "cluster_locations": [f"l{i}" for i in range(64)]} for _ in range(5)
    ]
    [(field, reason)] = model.workflow_request_problems(many_taskforces)
    assert field == "tasks" and reason.startswith("make 320 taskforces")


def test_a_workflow_size_out_of_range_is_a_problem_not_a_crash() -> None:
    body = copy.deepcopy(WORKFLOW)
    body["tasks"][0]["worker_config"] = {"worker_disk": "9999P", "worker_memory": 512.0}
    [(field, reason)] = model.workflow_request_problems(body)
    assert field == "tasks[0].worker_config.worker_disk" and reason.startswith("must be between 1 byte and 1P")
    assert json.dumps(model.worker_config({"worker_memory": 512.0}))  # a whole float is a size
