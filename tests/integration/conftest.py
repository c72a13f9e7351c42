"""WMS fixtures: a real WMS in-process on a free port, over the real broker and the MongoDB wire server.

- ``wms_factory`` (function): ``await wms_factory(run_loops=False, clock=None, **config_overrides)`` starts a
  WMS with its own database, on port 0; returns a :class:`WMSUnderTest`. Everything it made on the broker
  (queues, DLQs, policies, per-workflow users) is removed after the test, and its database dropped.
  ``await wms.stop()`` / ``await wms.start()`` take it down and bring a new one up on the same port and database
  (give a fixed ``port`` for that: a port 0 WMS may find its port taken by then).
- ``wms`` (function): one such WMS with the loops off (tests drive ``provisioner``/``janitor`` themselves).
- :class:`tests.rest_client.Client` calls the WMS like any HTTP client and checks every answer against the
  WMS's OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import openapi_core
import pytest
from pymongo import AsyncMongoClient
from rest_client import Client

from ewms_rest.tokens import mint_token
from ewms_rest.validation import load_openapi
from ewms_wms.config import Config
from ewms_wms.server import WMS

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
    return mint_token(secret, sub, role, issuer=issuer, lifetime_seconds=expiration, claims=claims)


class FakeClock:
    """A clock a test moves by hand, so leases and retention periods expire without sleeping."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))  # whole seconds: sums stay exact through the wire server's floats

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WMSUnderTest:
    """A running WMS plus clients for each role; it can be stopped and started again (a WMS outage)."""

    def __init__(self, wms: WMS, doc: dict[str, Any], *, run_loops: bool = False) -> None:
        self.wms = wms
        self.doc = doc
        self.spec = openapi_core.OpenAPI.from_dict(doc)
        self.run_loops = run_loops
        self.running = True

    async def stop(self) -> None:
        """Take the WMS down: its port refuses connections, its loops stop (its database keeps everything)."""
        if self.running:
            self.running = False
            await self.wms.stop()

    async def start(self, *, run_loops: bool | None = None) -> None:
        """Bring a stopped WMS back: a new one with the same configuration, port and database."""
        if self.running:
            return
        config = dataclasses.replace(self.wms.config, port=self.wms.port or self.wms.config.port)
        self.wms = WMS(config, clock=self.wms.clock)
        await self.wms.start(run_loops=self.run_loops if run_loops is None else run_loops)
        self.running = True

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
    made: list[WMSUnderTest] = []
    doc = load_openapi("ewms_wms")

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
        made.append(under_test := WMSUnderTest(wms, doc, run_loops=run_loops))
        return under_test

    yield make
    for under_test in made:
        await under_test.start(run_loops=False)  # one a test left stopped: its database and broker admin again
        wms = under_test.wms
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
