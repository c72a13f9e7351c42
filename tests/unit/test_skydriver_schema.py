"""skydriver's OpenAPI document: valid, and in step with the code (routes, roles, recos, states, sizes)."""

import re

import pytest
from openapi_spec_validator import validate

from ewms_config import parse_size
from ewms_rest.auth import ALLOWED_ROLES_ATTR
from ewms_rest.validation import load_openapi
from skydriver.handlers import HANDLERS
from skydriver.recos import RECOS
from skydriver.states import ScanState

DOC = load_openapi("skydriver")


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"] == "3.1.0"


def test_every_route_is_documented_and_every_documented_route_served() -> None:
    served = {(h.ROUTE, m) for h in HANDLERS for m in h.implemented_methods()}
    documented = {(route, m) for route, item in DOC["paths"].items() for m in item if m != "parameters"}
    assert served == documented


def test_the_document_says_which_routes_need_no_token_and_names_each_routes_roles() -> None:
    for handler in HANDLERS:
        for method in handler.implemented_methods():
            operation = DOC["paths"][handler.ROUTE][method]
            allowed = getattr(getattr(handler, method), ALLOWED_ROLES_ATTR, ())
            assert (operation.get("security") == []) == (not allowed), (handler.ROUTE, method)
            if allowed:
                assert f"Roles: {', '.join(allowed)}" in operation["description"], (handler.ROUTE, method)


def test_enums_follow_the_code() -> None:
    schemas = DOC["components"]["schemas"]
    assert schemas["ScanRequest"]["properties"]["reco_algo"]["enum"] == sorted(RECOS)
    assert schemas["ScanState"]["enum"] == [str(s) for s in ScanState]


def test_every_scan_route_takes_the_scan_id_in_its_documented_form() -> None:
    for route, item in DOC["paths"].items():
        if "{scan_id}" in route:
            assert item["parameters"][0]["schema"] == {"$ref": "#/components/schemas/ScanId"}
    assert re.fullmatch(DOC["components"]["schemas"]["ScanId"]["pattern"], "0" * 32)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, 1),
        ("512", 512),
        ("1G", 1024**3),
        ("512M", 512 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1.5 gb", 3 * 1024**3 // 2),
    ],
)
def test_sizes_in_bytes(size: int | str, expected: int) -> None:
    assert parse_size(size) == expected


def test_a_size_the_schema_lets_through_always_parses() -> None:
    pattern = DOC["components"]["schemas"]["Size"]["pattern"]
    for text in ("1G", " 2 GiB ", "7b", "3.25T", "10kb"):
        assert re.fullmatch(pattern, text) and parse_size(text) > 0
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
