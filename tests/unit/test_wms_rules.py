"""Small rules of the WMS: search filters, projections, backoff, broker permissions, roles."""

import re

import pytest

from ewms_rest.auth import roles_in
from ewms_rest.search import QueryError, check_filter, project
from ewms_wms.broker import dlq_only_permissions, permissions
from ewms_wms.phases import COMPLETE, RM, TERMINAL, Phase
from ewms_wms.provisioner import backoff


def test_filters_allow_plain_fields_and_comparisons() -> None:
    check_filter({"phase": {"$in": ["failed"]}, "$or": [{"a.b": 1}, {"c": {"$not": {"$gt": 2}}}]}, "query")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"$where": "sleep(1000)"}, "query.$where"),
        ({"a": {"$expr": {}}}, "query.a.$expr"),
        ({"$or": [{"b": {"$function": {}}}]}, "query.$or[0].b.$function"),
        ({"a$b": 1}, "query.a$b"),
    ],
)
def test_filters_refuse_what_could_run_code(query: dict[str, object], field: str) -> None:
    with pytest.raises(QueryError) as caught:
        check_filter(query, "query")
    assert caught.value.field == field


def test_projection_keeps_dotted_paths_nested() -> None:
    doc = {"a": 1, "w": {"n": 2, "m": 3}, "z": None}
    assert project(doc, ["a", "w.n", "missing", "z"]) == {"a": 1, "w": {"n": 2}, "z": None}
    assert project(doc, None) is doc


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 2, 30) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_broker_permissions_name_only_the_workflows_queues() -> None:
    perms = permissions(["wf-a.in", "wf-a-out"])
    assert re.fullmatch(perms["configure"], "wf-a.in") and not re.fullmatch(perms["configure"], "wf-aXin")
    assert re.fullmatch(perms["write"], "amq.default")
    assert re.fullmatch(perms["read"], "wf-a-out.dlq") and not re.fullmatch(perms["read"], "wf-b-out")
    after = dlq_only_permissions(["wf-a.in"])
    assert after["configure"] == after["write"] == "^$" and re.fullmatch(after["read"], "wf-a.in.dlq")
    assert not re.fullmatch(after["read"], "wf-a.in")


def test_roles_from_a_string_a_list_or_a_nested_claim() -> None:
    assert roles_in({"role": "user"}, "role") == {"user"}
    assert roles_in({"realm_access": {"roles": ["tms", 3]}}, "realm_access.roles") == {"tms"}
    assert roles_in({"role": {"x": 1}}, "role") == set() and roles_in({}, "a.b") == set()


def test_phase_rules() -> None:
    assert {Phase.CONDOR_COMPLETE, Phase.FAILED} == TERMINAL
    assert Phase.PENDING_STOPPER in RM.sources and Phase.CONDOR_COMPLETE in RM.already_done
    assert Phase.CONDOR_SUBMIT in COMPLETE.sources and Phase.PENDING_STARTER not in COMPLETE.sources
