"""Auth on every route: 401 without a valid token, 403 with a role the route does not allow, never a no-auth default."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ewms_rest.auth import ALLOWED_ROLES_ATTR
from ewms_wms.handlers import HANDLERS
from tests.integration.conftest import WMSUnderTest, make_token

ROLES = ("user", "tms", "admin")
PUBLIC = {("GET", "/v1/"), ("GET", "/v1/schema/openapi")}


def routes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, concrete path, allowed roles) for every route the WMS serves."""
    table = []
    for handler in HANDLERS:
        for method in handler.implemented_methods():
            allowed = getattr(getattr(handler, method), ALLOWED_ROLES_ATTR, ())
            path = re.sub(r"\{\w+\}", "someid", handler.ROUTE)
            table.append((method.upper(), path, tuple(str(r) for r in allowed)))
    return table


ROUTES = routes()


def test_every_route_but_health_and_the_schema_requires_a_role() -> None:
    assert len(ROUTES) == 22
    assert {(m, p) for m, p, allowed in ROUTES if not allowed} == PUBLIC


async def _status(wms: WMSUnderTest, token: str | None, method: str, path: str) -> tuple[int, Any]:
    client = wms.with_token(token) if token else wms.anonymous()
    query = {"cluster_location": "loc"} if "pending-st" in path else None
    response = await client.request(method, path, {} if method == "POST" else None, query=query)
    return response.status, response.json


async def test_without_a_valid_token_every_protected_route_answers_401(wms: WMSUnderTest) -> None:
    forged = make_token("admin", secret="another-secret-" + "y" * 40)
    expired = make_token("admin", expiration=-1000)  # past the 60 s leeway
    wrong_issuer = make_token("admin", issuer="someone-else")
    for method, path, allowed in ROUTES:
        for token in (None, forged, expired, wrong_issuer, "not-a-jwt"):
            status, body = await _status(wms, token, method, path)
            if not allowed:
                assert status == 200, (method, path)
                continue
            assert status == 401, (method, path, token)
            assert body == {"code": 401, "error": "a valid bearer token is required"}


@pytest.mark.parametrize("role", [*ROLES, None, "superuser"])
async def test_a_role_the_route_does_not_allow_gets_403_and_an_allowed_one_gets_through(
    wms: WMSUnderTest, role: str | None
) -> None:
    token = make_token(role)
    for method, path, allowed in ROUTES:
        if not allowed:
            continue
        status, body = await _status(wms, token, method, path)
        if role in allowed:
            assert status not in (401, 403), (method, path, role, body)
        else:
            assert status == 403, (method, path, role)
            assert body["error"] == f"this route needs one of the roles: {', '.join(allowed)}"


async def test_roles_may_come_as_a_list_from_another_claim(wms_factory: Any) -> None:
    wms = await wms_factory(auth_role_claim="realm_access.roles")
    keycloak_like = make_token(None, realm_access={"roles": ["offline_access", "user"]})
    assert (await wms.with_token(keycloak_like).post("/v1/workflows", {})).status == 400  # through auth, bad body
    assert (await wms.client("user").post("/v1/workflows", {})).status == 403  # the plain 'role' claim is not read
