"""Every route of both services, enumerated from their OpenAPI documents (a new route is covered as soon as it is
documented): without a valid token 401, with a role the route does not allow 403 — decided before anything about
the objects is revealed or changed — and a scanner's scan-scoped token nowhere but on its own scan.

The allowed roles are the handlers' (`require_roles` records them in `ewms_rest.auth.ALLOWED_ROLES_ATTR`); the
document and the code must agree on which routes exist and which are public. The integration auth tests
(tests/integration/test_wms_auth.py, skydriver/test_skydriver_auth.py) walk the handlers with placeholder ids;
these add the document as the source, more kinds of bad credentials, roles of the other service, existing
objects, and checks that nothing changed.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.integration.conftest import WMSUnderTest
from tests.integration.skydriver.conftest import SkyDriverUnderTest
from tests.security.conftest import OTHER, SERVICES, SKYDRIVER, WMS, Service, bad_credentials, concrete

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
SkyDriverFactory = Callable[..., Awaitable[SkyDriverUnderTest]]
Answer = tuple[int, Any, dict[str, str]]

OPERATIONS = [(s, m, r) for s in SERVICES for m, r in s.operations()]
PROTECTED = [(s, m, r) for s, m, r in OPERATIONS if not s.is_public(m, r)]
IDS = [f"{s.name} {m.upper()} {r}" for s, m, r in PROTECTED]
MISSING_IDS = {k: "f" * 32 for k in ("scan_id", "workflow_id", "task_id", "taskforce_uuid", "mqid")}


async def send(base_url: str, method: str, path: str, headers: dict[str, str], query: str = "") -> Answer:
    """One raw request (a JSON body `{}` where the method carries one): status, decoded JSON, headers."""
    body = None if method == "get" else b"{}"
    request = HTTPRequest(
        base_url + path + (f"?{query}" if query else ""),
        method=method.upper(),
        headers={"Content-Type": "application/json", **headers},
        body=body,
        allow_nonstandard_methods=True,
    )
    answer = await AsyncHTTPClient().fetch(request, raise_error=False)
    try:
        decoded = json.loads(answer.body) if answer.body else None
    except ValueError:
        decoded = answer.body
    return answer.code, decoded, dict(answer.headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------------------------------- the route table


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_document_and_the_handlers_name_the_same_routes_and_the_same_public_ones(service: Service) -> None:
    documented = set(service.operations())
    served = set(service.route_roles)
    assert documented == served, (
        f"documented only: {sorted(documented - served)}; served only: {sorted(served - documented)}"
    )
    for method, route in documented:
        public = service.is_public(method, route)
        allowed = service.route_roles[(method, route)]
        assert public == (not allowed), (method, route, allowed)
        assert set(allowed) <= set(service.roles), (method, route, allowed)
        if not public:  # a protected route documents both refusals, and the 503 of a database that does not answer
            assert {"401", "403", "503"} <= set(service.doc["paths"][route][method]["responses"]), (method, route)


# ------------------------------------------------------------------------------------------------- fixtures


async def _seeded(
    service: Service, wms_factory: WMSFactory, skydriver_factory: SkyDriverFactory
) -> tuple[str, dict[str, str], Callable[[], Awaitable[Any]]]:
    """A running service with one object of each kind: (base URL, path ids, a snapshot of its state)."""
    if service is WMS:
        wms = await wms_factory()
        created = await wms.create_workflow()
        ids = {
            "workflow_id": created["workflow"]["workflow_id"],
            "task_id": created["task_directives"][0]["task_id"],
            "taskforce_uuid": created["taskforces"][0]["taskforce_uuid"],
            "mqid": created["mqprofiles"][0]["mqid"],
        }

        async def snapshot() -> Any:
            db = wms.wms.db
            return [
                await c.collection.find({}, {"_id": False}).to_list()
                for c in (db.workflows, db.task_directives, db.taskforces, db.mqprofiles)
            ]

        return wms.url, ids, snapshot
    skydriver = await skydriver_factory()
    scan_id = (await skydriver.post_scan())["scan_id"]

    async def sd_snapshot() -> Any:
        db = skydriver.db
        return [
            await c.collection.find({}, {"_id": False}).to_list()
            for c in (db.manifests, db.requests, db.results, db.events, db.checkpoints)
        ]

    return skydriver.url, {"scan_id": scan_id}, sd_snapshot


def _query(route: str) -> str:
    return "cluster_location=sub-2" if "/tms/pending-" in route else ""


# ------------------------------------------------------------------------------------------------- 401 and 403


@pytest.mark.parametrize(("service", "method", "route"), PROTECTED, ids=IDS)
async def test_without_valid_credentials_the_route_answers_401_and_changes_nothing(
    service: Service, method: str, route: str, wms_factory: WMSFactory, skydriver_factory: SkyDriverFactory
) -> None:
    base_url, ids, snapshot = await _seeded(service, wms_factory, skydriver_factory)
    before = await snapshot()
    valid_token = urllib.parse.quote(service.token(list(service.roles)))
    for name, headers in bad_credentials(service).items():
        query = _query(route)
        if name == "token in the query string only":  # bearer tokens go in the header, nowhere else
            query = "&".join(filter(None, [query, f"access_token={valid_token}", f"token={valid_token}"]))
        for path in (concrete(route, ids), concrete(route, MISSING_IDS)):
            status, body, answer_headers = await send(base_url, method, path, headers, query)
            assert status == 401, (name, method, path, status, body)
            assert body == {"code": 401, "error": "a valid bearer token is required"}, (name, path)
            assert answer_headers.get("Www-Authenticate", "").startswith("Bearer realm="), (name, path)
    assert await snapshot() == before, f"{method.upper()} {route} changed something without a valid token"


@pytest.mark.parametrize(("service", "method", "route"), PROTECTED, ids=IDS)
async def test_a_role_the_route_does_not_allow_gets_403_before_anything_else(
    service: Service, method: str, route: str, wms_factory: WMSFactory, skydriver_factory: SkyDriverFactory
) -> None:
    base_url, ids, snapshot = await _seeded(service, wms_factory, skydriver_factory)
    allowed = service.route_roles[(method, route)]
    refused: list[str | list[str] | None] = [r for r in service.roles if r not in allowed]
    refused += [r for r in OTHER[service.name].roles if r not in service.roles]  # the other service's roles
    refused += [None, "", "superuser", [r.upper() for r in allowed], [f"{r} " for r in allowed]]
    before = await snapshot()
    expected = {"code": 403, "error": f"this route needs one of the roles: {', '.join(allowed)}"}
    for role in refused:
        token = service.token(role, sub="mallory")
        answers = [
            await send(base_url, method, concrete(route, these), bearer(token), _query(route))
            for these in (ids, MISSING_IDS)
        ]
        for status, body, _ in answers:
            assert (status, body) == (403, expected), (role, method, route, status, body)
    assert await snapshot() == before, f"{method.upper()} {route} changed something for a refused role"
    for role in allowed:  # and each allowed role gets past the check
        status, body, _ = await send(base_url, method, concrete(route, ids), bearer(service.token(role)), _query(route))
        assert status not in (401, 403), (role, method, route, status, body)


# ------------------------------------------------------------------------------------------------- scopes


SCANNER_ROUTES = [(m, r) for m, r in SKYDRIVER.operations() if "{scan_id}" in r]


@pytest.mark.parametrize(("method", "route"), SCANNER_ROUTES, ids=[f"{m.upper()} {r}" for m, r in SCANNER_ROUTES])
async def test_a_scanners_token_reaches_its_own_scan_and_no_other(
    skydriver_factory: SkyDriverFactory, method: str, route: str
) -> None:
    """The token skydriver mints for a scanner (role system, claim scan_id) on another existing scan: 403, and
    that scan is untouched; on routes for users only it is refused for its role."""
    skydriver = await skydriver_factory()
    own, other = [(await skydriver.post_scan())["scan_id"] for _ in range(2)]
    token = skydriver.skydriver.scans.scanner_token(own)
    before = await skydriver.db.manifests.get_internal(other)
    allowed = SKYDRIVER.route_roles[(method, route)]
    for target in (other, "0" * 32):
        status, body, _ = await send(skydriver.url, method, concrete(route, {"scan_id": target}), bearer(token))
        if "system" in allowed:
            assert (status, body["error"]) == (403, f"this token may only reach scan {own}"), (target, body)
        else:
            assert status == 403 and "needs one of the roles" in body["error"], (target, body)
    assert await skydriver.db.manifests.get_internal(other) == before
    assert await skydriver.db.checkpoints.union(other) == {"published": [], "results": []}
    assert await skydriver.db.results.get(other) is None
    status, body, _ = await send(skydriver.url, method, concrete(route, {"scan_id": own}), bearer(token))
    assert (status not in (401, 403)) == ("system" in allowed), (status, body)


WMS_OWNED = [
    (m, r)
    for m, r in WMS.operations()
    if "{" in r and "user" in WMS.route_roles[(m, r)] and "{mqid}" not in r  # mq-profiles by name: the TMS's
]


@pytest.mark.parametrize(("method", "route"), WMS_OWNED, ids=[f"{m.upper()} {r}" for m, r in WMS_OWNED])
async def test_a_wms_user_reaches_only_its_own_workflows(wms_factory: WMSFactory, method: str, route: str) -> None:
    """Another user's workflow, task or taskforce answers exactly as one that does not exist (no oracle), and
    acting on it changes nothing."""
    wms = await wms_factory()
    created = await wms.create_workflow(client=wms.client("user", sub="alice"))
    ids = {
        "workflow_id": created["workflow"]["workflow_id"],
        "task_id": created["task_directives"][0]["task_id"],
        "taskforce_uuid": created["taskforces"][0]["taskforce_uuid"],
    }
    bob = bearer(WMS.token("user", sub="bob"))
    body_for = {"add-workers": {"cluster_location": "sub-2", "n_workers": 1}}
    db = wms.wms.db

    async def state() -> Any:
        return [await c.collection.find({}, {"_id": False}).to_list() for c in (db.workflows, db.taskforces)]

    before = await state()
    answers = []
    for these in (ids, MISSING_IDS):
        path = concrete(route, these)
        payload = next((v for k, v in body_for.items() if path.endswith(k)), {})
        request = HTTPRequest(
            wms.url + path,
            method=method.upper(),
            headers={"Content-Type": "application/json", **bob},
            body=None if method == "get" else json.dumps(payload),
        )
        answer = await AsyncHTTPClient().fetch(request, raise_error=False)
        body = json.loads(answer.body)
        for value in these.values():
            body["error"] = body["error"].replace(value, "<id>")
        answers.append((answer.code, body))
    assert answers[0] == answers[1], answers
    assert answers[0][0] == 404, answers
    assert await state() == before
