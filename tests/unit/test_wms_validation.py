"""The OpenAPI document is valid, matches the routes served, and its errors read well."""

import re

import pytest
from openapi_spec_validator import validate

from ewms_rest.app import route_regex
from ewms_rest.auth import ALLOWED_ROLES_ATTR
from ewms_rest.validation import FieldError, InvalidRequest, RequestValidator, field_path, load_openapi
from ewms_wms.handlers import HANDLERS

DOC = load_openapi("ewms_wms")
VALIDATOR = RequestValidator(DOC)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


def test_the_document_and_the_server_have_the_same_routes_and_methods() -> None:
    served = {(h.ROUTE, m) for h in HANDLERS for m in h.implemented_methods()}
    documented = {(p, m) for p, item in DOC["paths"].items() for m in item if m != "parameters"}
    assert served == documented


def test_design_routes_are_all_there() -> None:
    design = """POST /v1/workflows, GET /v1/workflows/{workflow_id}, POST /v1/workflows/{workflow_id}/actions/abort,
    POST /v1/workflows/{workflow_id}/actions/finished, POST /v1/query/workflows, GET /v1/task-directives/{task_id},
    POST /v1/query/task-directives, POST /v1/task-directives/{task_id}/actions/add-workers,
    GET /v1/taskforces/{taskforce_uuid}, POST /v1/query/taskforces, GET /v1/tms/pending-starter/taskforces,
    POST /v1/tms/condor-submit/taskforces/{taskforce_uuid},
    POST /v1/tms/condor-submit/taskforces/{taskforce_uuid}/failed,
    GET /v1/tms/pending-stopper/taskforces, POST /v1/tms/condor-rm/taskforces/{taskforce_uuid},
    POST /v1/tms/condor-rm/taskforces/{taskforce_uuid}/failed, POST /v1/tms/condor-complete/taskforces/{taskforce_uuid},
    POST /v1/tms/statuses/taskforces, GET /v1/schema/openapi,
    GET /v1/mqs/workflows/{workflow_id}/mq-profiles/public, GET /v1/mqs/mq-profiles/{mqid}"""
    for method, path in re.findall(r"(GET|POST) (\S+?),?(?=\s|$)", design):
        assert method.lower() in DOC["paths"][path], (method, path)


def test_documented_security_matches_the_handlers() -> None:
    for handler in HANDLERS:
        for method in handler.implemented_methods():
            roles = getattr(getattr(handler, method), ALLOWED_ROLES_ATTR, ())
            operation = DOC["paths"][handler.ROUTE][method]
            assert (operation.get("security", None) == []) == (not roles), handler.ROUTE
            if roles:
                assert operation["description"].endswith(f"Roles: {', '.join(roles)}."), handler.ROUTE


def test_route_regex() -> None:
    assert (
        route_regex("/v1/workflows/{workflow_id}/actions/abort")
        == "/v1/workflows/(?P<workflow_id>[^/]+)/actions/abort$"
    )


def test_field_paths() -> None:
    assert field_path("", ["tasks", 0, "worker_config", "n_cores"]) == "tasks[0].worker_config.n_cores"
    assert field_path("", []) == "(body)"


def _errors(body: bytes, route: str = "/v1/workflows", method: str = "post") -> list[FieldError]:
    with pytest.raises(InvalidRequest) as caught:
        VALIDATOR.body(route, method, body)
    return caught.value.errors


def test_errors_name_fields_and_rules_without_echoing_values() -> None:
    errors = _errors(b'{"public_queue_aliases": [], "tasks": [{"task_image": "secret-value", "n_workers": true}]}')
    text = "; ".join(map(str, errors))
    assert "tasks[0].cluster_locations: is required" in text
    assert "tasks[0].n_workers: must be integer, not boolean" in text
    assert "secret-value" not in text


def test_many_errors_are_capped() -> None:
    body = b'{"public_queue_aliases": [], "tasks": [{"a1":1,"a2":2,"a3":3,"a4":4,"a5":5,"a6":6,"a7":7,"a8":8,"a9":9}]}'
    assert len(_errors(body)) == 10


def test_query_arguments_are_checked_and_undeclared_ones_ignored() -> None:
    route = "/v1/tms/pending-starter/taskforces"
    assert VALIDATOR.query(route, "GET", {"schedd": [b"sub-2"], "other": [b"x"]}) == {"schedd": "sub-2"}
    with pytest.raises(InvalidRequest, match="query argument 'claimant': must match the pattern"):
        VALIDATOR.query(route, "GET", {"claimant": [b"has space"]})


def test_path_arguments_are_checked() -> None:
    VALIDATOR.path("/v1/workflows/{workflow_id}", "GET", {"workflow_id": "0123abc"})
    with pytest.raises(InvalidRequest, match="workflow_id: must match"):
        VALIDATOR.path("/v1/workflows/{workflow_id}", "GET", {"workflow_id": "a/b c"})
