"""WMS fixtures: a real WMS in-process on a free port, over the real broker and the MongoDB wire server.

- ``wms_factory`` (function): ``await wms_factory(run_loops=False, clock=None, **config_overrides)`` starts a
  WMS with its own database, on port 0; returns a :class:`WMSUnderTest`. Everything it made on the broker
  (queues, DLQs, policies, per-workflow users) is removed after the test, and its database dropped.
- ``wms`` (function): one such WMS with the loops off (tests drive ``provisioner``/``janitor`` themselves).
- :class:`Client` calls the WMS like any HTTP client and checks every answer against the WMS's OpenAPI
  document with openapi-core, so the document stays the truth about the routes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import openapi_core
import pytest
from openapi_core.datatypes import RequestParameters
from pymongo import AsyncMongoClient
from rest_tools.utils.auth import Auth
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from werkzeug.datastructures import Headers, ImmutableMultiDict

from ewms_wms.config import Config
from ewms_wms.server import WMS
from ewms_wms.validation import load_openapi

if TYPE_CHECKING:
    from tests.conftest import ManagementAPI

SECRET = "test-secret-" + "x" * 40
ISSUER = "ewms-wms"
SEED_BODY: dict[str, Any] = {  # the talk's request body, verbatim (n_workers filled in)
    "public_queue_aliases": ["input-queue", "output-queue"],
    "tasks": [
        {
            "cluster_locations": ["sub-2"],
            "input_queue_aliases": ["input-queue"],
            "output_queue_aliases": ["output-queue"],
            "task_image": "icecube/skymap_scanner:3.20.3",
            "task_args": "client --in {{INFILE}} --out {{OUTFILE}}",
            "environment": {},
            "n_workers": 4,
            "worker_config": {
                "max_worker_runtime": 60 * 10,
                "worker_disk": "512M",
                "worker_memory": "512M",
            },
        },
    ],
}


def make_token(
    role: str | list[str] | None,
    sub: str = "alice",
    secret: str = SECRET,
    *,
    issuer: str = ISSUER,
    expiration: int | None = None,
    **claims: Any,
) -> str:
    """A signed JWT like the WMS's local mode accepts (role claim omitted when None)."""
    payload = dict(claims)
    if role is not None:
        payload["role"] = role
    auth = Auth(secret, issuer=issuer, algorithm="HS256")  # type: ignore[no-untyped-call]
    return str(auth.create_token(sub, expiration, payload=payload))  # type: ignore[no-untyped-call]


class FakeClock:
    """A clock a test moves by hand, so leases and retention periods expire without sleeping."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds: sums stay exact through the wire server's floats

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Response:
    status: int
    json: Any
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class _OpenAPIRequest:
    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclasses.dataclass
class _OpenAPIResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


class Client:
    """HTTP calls to the WMS as one bearer token; answers are checked against the OpenAPI document."""

    def __init__(self, base_url: str, token: str | None, spec: openapi_core.OpenAPI, doc: dict[str, Any]) -> None:
        self.base_url = base_url
        self.token = token
        self.spec = spec
        self.doc = doc
        self.http = AsyncHTTPClient()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
        validate: bool = True,
    ) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = HTTPRequest(url, method=method, headers=headers, body=data, allow_nonstandard_methods=True)
        answer = await self.http.fetch(request, raise_error=False)
        response = Response(answer.code, _json(answer.body), dict(answer.headers), answer.body or b"")
        if validate:
            self.check_against_openapi(method, path, query or {}, data, response)
        return response

    def check_against_openapi(
        self, method: str, path: str, query: dict[str, str], data: bytes | None, response: Response
    ) -> None:
        """The answer is one the document promises for this route (routes it does not know are skipped)."""
        if not _documented(self.doc, method, path):
            return
        request = _OpenAPIRequest(
            host_url=self.base_url,
            path=path,
            method=method.lower(),
            body=data,
            content_type="application/json",
            parameters=RequestParameters(query=ImmutableMultiDict(query)),
        )
        answer = _OpenAPIResponse(
            response.status, response.headers.get("Content-Type", "").split(";")[0], Headers(response.headers),
            response.body,
        )  # fmt: skip
        self.spec.validate_response(request, answer)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("POST", path, body, **kwargs)


def _json(body: bytes | None) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _documented(doc: dict[str, Any], method: str, path: str) -> bool:
    """Whether the document has an operation for this method and concrete path."""
    for template, item in doc["paths"].items():
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return True
    return False


class WMSUnderTest:
    """A running WMS plus clients for each role."""

    def __init__(self, wms: WMS, doc: dict[str, Any]) -> None:
        self.wms = wms
        self.doc = doc
        self.spec = openapi_core.OpenAPI.from_dict(doc)

    @property
    def url(self) -> str:
        return self.wms.url

    def client(self, role: str | list[str] | None = "user", sub: str = "alice", **claims: Any) -> Client:
        """A client with a token for `role` (None: a token without a role)."""
        return Client(self.url, make_token(role, sub, **claims), self.spec, self.doc)

    def anonymous(self) -> Client:
        return Client(self.url, None, self.spec, self.doc)

    def with_token(self, token: str) -> Client:
        return Client(self.url, token, self.spec, self.doc)

    @property
    def user(self) -> Client:
        return self.client("user")

    @property
    def tms(self) -> Client:
        return self.client("tms", sub="tms-sub-2")

    @property
    def admin(self) -> Client:
        return self.client("admin", sub="root")

    async def create_workflow(self, body: dict[str, Any] | None = None, client: Client | None = None) -> Any:
        response = await (client or self.user).post("/v1/workflows", body or SEED_BODY)
        assert response.status == 200, response.json
        return response.json


async def _remove_broker_leftovers(wms: WMS, management_api: ManagementAPI) -> None:
    """Delete every queue, DLQ, policy and user the WMS's workflows may have made."""
    vhost = urllib.parse.quote(wms.config.broker_address.vhost, safe="")
    profiles = await wms.db.mqprofiles.collection.find({}, {"mqid": True, "_id": False}).to_list()
    workflows = await wms.db.workflows.collection.find({}, {"broker_user": True, "_id": False}).to_list()
    for profile in profiles:
        for queue in (profile["mqid"], profile["mqid"] + ".dlq"):
            management_api("DELETE", f"/api/queues/{vhost}/{urllib.parse.quote(queue, safe='')}")
        management_api("DELETE", f"/api/policies/{vhost}/{urllib.parse.quote('ewms-dlq-' + profile['mqid'], safe='')}")
    for workflow in workflows:
        if workflow.get("broker_user"):
            management_api("DELETE", f"/api/users/{urllib.parse.quote(workflow['broker_user'], safe='')}")


@pytest.fixture
async def wms_factory(
    mongo_url: str, amqp_url: str, management_url: str, management_api: ManagementAPI
) -> AsyncIterator[Callable[..., Awaitable[WMSUnderTest]]]:
    """Start WMSs (see the module docstring); all are stopped and cleaned up after the test."""
    made: list[WMS] = []
    doc = load_openapi()

    async def make(
        *, run_loops: bool = False, clock: Callable[[], float] | None = None, **overrides: Any
    ) -> WMSUnderTest:
        settings: dict[str, Any] = {
            "mongodb_url": mongo_url,
            "mongodb_database": f"wms_test_{uuid.uuid4().hex[:12]}",
            "broker_url": amqp_url,
            "rabbitmq_management_url": management_url,
            "auth_secret": SECRET,
            "auth_issuer": ISSUER,
            "host": "127.0.0.1",
            "port": 0,
            **overrides,
        }
        wms = WMS(Config(**settings), clock=clock or time.time)
        await wms.start(run_loops=run_loops)
        made.append(wms)
        return WMSUnderTest(wms, doc)

    yield make
    for wms in made:
        await _remove_broker_leftovers(wms, management_api)
        database = wms.config.mongodb_database
        await wms.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
        await client.drop_database(database)
        await client.close()


@pytest.fixture
async def wms(wms_factory: Callable[..., Awaitable[WMSUnderTest]]) -> WMSUnderTest:
    """A running WMS with its loops off (and the real clock)."""
    return await wms_factory()
