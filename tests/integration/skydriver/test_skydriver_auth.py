"""Auth on every route: 401 without a valid token, 403 for a role the route does not allow, and a system token
with a `scan_id` claim reaching only its own scan."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ewms_rest.auth import ALLOWED_ROLES_ATTR
from ewms_rest.tokens import mint_token
from skydriver.handlers import HANDLERS
from tests.integration.skydriver.conftest import SECRET, SkyDriverUnderTest, token

PUBLIC = {("GET", "/"), ("GET", "/schema/openapi")}
OTHER_SCAN = "0" * 32


def routes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, route template, allowed roles) for every route skydriver serves."""
    table = []
    for handler in HANDLERS:
        for method in handler.implemented_methods():
            allowed = getattr(getattr(handler, method), ALLOWED_ROLES_ATTR, ())
            table.append((method.upper(), handler.ROUTE, tuple(str(r) for r in allowed)))
    return table


ROUTES = routes()
SCAN_ROUTES = [(m, r, a) for m, r, a in ROUTES if "{scan_id}" in r]


def concrete(route: str, scan_id: str = OTHER_SCAN) -> str:
    return re.sub(r"\{\w+\}", scan_id, route)


async def _status(skydriver: SkyDriverUnderTest, raw_token: str | None, method: str, path: str) -> tuple[int, Any]:
    response = await skydriver.with_token(raw_token).request(method, path, None if method == "GET" else {})
    return response.status, response.json


def test_every_route_but_health_and_the_schema_requires_a_role() -> None:
    assert len(ROUTES) == 21
    assert {(m, r) for m, r, allowed in ROUTES if not allowed} == PUBLIC


async def test_without_a_valid_token_every_protected_route_answers_401(skydriver: SkyDriverUnderTest) -> None:
    forged = mint_token("another-secret-" + "y" * 40, "mallory", "user", issuer="skydriver")
    expired = mint_token(SECRET, "alice", "user", issuer="skydriver", lifetime_seconds=-1000)  # past the 60 s leeway
    wrong_issuer = mint_token(SECRET, "alice", "user", issuer="ewms-wms")
    for method, route, allowed in ROUTES:
        for raw in (None, forged, expired, wrong_issuer, "not-a-jwt"):
            status, body = await _status(skydriver, raw, method, concrete(route))
            if not allowed:
                assert status == 200, (method, route)
                continue
            assert status == 401, (method, route, raw)
            assert body == {"code": 401, "error": "a valid bearer token is required"}


@pytest.mark.parametrize("role", ["user", "system", None, "admin"])
async def test_a_role_the_route_does_not_allow_gets_403_and_an_allowed_one_gets_through(
    skydriver: SkyDriverUnderTest, role: str | None
) -> None:
    raw = token(role)
    for method, route, allowed in ROUTES:
        if not allowed:
            continue
        status, body = await _status(skydriver, raw, method, concrete(route))
        if role in allowed:
            assert status not in (401, 403), (method, route, role, body)
        else:
            assert status == 403, (method, route, role)
            assert body["error"] == f"this route needs one of the roles: {', '.join(allowed)}"


async def test_a_scan_id_claim_limits_a_system_token_to_its_scan(skydriver: SkyDriverUnderTest) -> None:
    own = (await skydriver.post_scan())["scan_id"]
    scoped = token("system", sub="scanner", scan_id=own)
    both = token(["user", "system"], sub="ops", scan_id=own)
    for method, route, allowed in SCAN_ROUTES:
        if "system" not in allowed:
            continue
        status, body = await _status(skydriver, scoped, method, concrete(route))
        assert status == 403, (method, route)
        assert body["error"] == f"this token may only reach scan {own}"
        status, body = await _status(skydriver, scoped, method, concrete(route, own))
        assert status not in (401, 403), (method, route, body)
        # with the user role too, the claim binds only where the route is for scanners alone
        status, _ = await _status(skydriver, both, method, concrete(route))
        assert (status == 403) == ("user" not in allowed), (method, route, status)


async def test_roles_may_come_as_a_list_from_another_claim(skydriver_factory: Any) -> None:
    skydriver = await skydriver_factory(auth_role_claim="realm_access.roles")
    keycloak_like = token(None, realm_access={"roles": ["offline_access", "user"]})
    assert (await skydriver.with_token(keycloak_like).post("/scan", {})).status == 400  # through auth, bad body
    assert (await skydriver.client("user").post("/scan", {})).status == 403  # the plain 'role' claim is not read


@pytest.mark.parametrize("role_claim", ["role", "realm_access.roles"])
async def test_the_token_minted_for_a_scanner_reaches_its_scan_only(skydriver_factory: Any, role_claim: str) -> None:
    skydriver = await skydriver_factory(auth_role_claim=role_claim)
    user = skydriver.with_token(token("user", realm_access={"roles": ["user"]}))  # both spellings
    own = (await skydriver.post_scan(client=user))["scan_id"]
    other = (await skydriver.post_scan(client=user))["scan_id"]
    scanner = skydriver.with_token(skydriver.skydriver.scans.scanner_token(own))
    assert (await scanner.request("PATCH", f"/scan/{own}/manifest", {})).status == 200
    assert (await scanner.request("PATCH", f"/scan/{other}/manifest", {})).status == 403
    assert (await scanner.post("/scan", {})).status == 403  # and it is no user
