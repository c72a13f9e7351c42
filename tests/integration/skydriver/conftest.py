"""skydriver fixtures: a real skydriver in-process on a free port, over the MongoDB wire server.

- ``skydriver_factory`` (function): ``await skydriver_factory(wms=None, run_loops=False, clock=None,
  launcher=None, **config_overrides)`` starts a skydriver with its own database on port 0 and returns a
  :class:`SkyDriverUnderTest`. ``wms`` is a running WMS (from ``wms_factory``) to request workflows from;
  without one, skydriver's WMS URL points at a closed port, so every WMS call finds it down. Scanners go to
  the real local launcher under the test's tmp dir unless ``launcher`` is given. Databases are dropped after
  the test.
- ``skydriver`` (function): one such skydriver without a WMS and with the loops off.
- ``system``, ``system_factory``, ``tms_factory``: the whole system (WMS, skydriver, a TMS process), from
  ``tests/system.py``.
- :func:`scan_body` builds a valid ``POST /scan`` body around a small simulated event;
  :func:`stand_in_launcher` is the real local launcher running a stand-in scanner that never reports.
"""

from __future__ import annotations

import copy
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openapi_core
import pytest
from pymongo import AsyncMongoClient

from ewms_rest.tokens import mint_token
from ewms_rest.validation import load_openapi
from skydriver.config import Config
from skydriver.event import TrackSpec, simulate_track
from skydriver.launchers import ScannerLauncher
from skydriver.launchers.local import LocalLauncher
from skydriver.server import SkyDriver
from tests.integration.conftest import WMSUnderTest, make_token
from tests.rest_client import Client, Response
from tests.system import system, system_factory, tms_factory  # noqa: F401  (fixtures: the whole system)

SECRET = "skydriver-test-secret-" + "s" * 40
ISSUER = "skydriver"
EVENT = simulate_track(TrackSpec(ra=1.0, dec=-0.5, energy_gev=2000.0), seed=7, run_id=123456, event_id=42).to_dict()
BODY: dict[str, Any] = {
    "reco_algo": "dummy",
    "event_i3live_json": EVENT,
    "nsides": {"8": 0},
    "real_or_simulated_event": "simulated",
}


def scan_body(**changes: Any) -> dict[str, Any]:
    """A valid `POST /scan` body with top-level `changes` (None deletes a key)."""
    body = copy.deepcopy(BODY)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def token(role: str | list[str] | None, sub: str = "alice", **claims: Any) -> str:
    """A token skydriver's local mode accepts (role claim omitted when None)."""
    return mint_token(SECRET, sub, role, issuer=ISSUER, claims=claims)


def stand_in_launcher(state_dir: Path, *, exits: bool = False) -> LocalLauncher:
    """The real local launcher running a stand-in scanner that never reports: it waits for a signal, or exits."""
    code = "pass" if exits else "import signal; signal.pause()"
    return LocalLauncher(state_dir, command=(sys.executable, "-c", code), kill_grace=10)


def scanner_env(launcher: LocalLauncher, handle: str) -> dict[str, str]:
    """The environment the launched scanner process got (from /proc).

    Right after `execve` returns to the parent, the kernel may not have laid out the new program's
    environment yet (`/proc/PID/environ` reads empty until it has): there is no event to wait for,
    so read again, briefly, until it is there.
    """
    identity = launcher.identity(handle)
    assert identity is not None, handle
    deadline = time.monotonic() + 10.0
    while not (raw := Path(f"/proc/{identity.pid}/environ").read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def closed_port_url() -> str:
    """A URL where nothing listens: a WMS that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SkyDriverUnderTest:
    """A running skydriver plus clients for its roles."""

    def __init__(self, skydriver: SkyDriver, doc: dict[str, Any], spec: openapi_core.OpenAPI) -> None:
        self.skydriver = skydriver
        self.doc = doc
        self.spec = spec

    @property
    def url(self) -> str:
        return self.skydriver.url

    @property
    def db(self) -> Any:
        return self.skydriver.db

    def client(self, role: str | list[str] | None = "user", sub: str = "alice", **claims: Any) -> Client:
        return Client(self.url, token(role, sub, **claims), self.spec, self.doc)

    def with_token(self, raw: str | None) -> Client:
        return Client(self.url, raw, self.spec, self.doc)

    @property
    def user(self) -> Client:
        return self.client("user")

    def system(self, scan_id: str | None = None) -> Client:
        """A scanner's client: role system, limited to `scan_id` when given (as skydriver mints them)."""
        return self.client("system", sub="scanner", **({"scan_id": scan_id} if scan_id else {}))

    async def post_scan(self, body: dict[str, Any] | None = None, client: Client | None = None) -> dict[str, Any]:
        """`POST /scan`; the new manifest."""
        response = await (client or self.user).post("/scan", body or scan_body())
        assert response.status == 200, response.json
        manifest: dict[str, Any] = response.json
        return manifest

    async def ok(self, response: Awaitable[Response]) -> Any:
        """The JSON of a 200 answer (fails the test with the answer otherwise)."""
        answer = await response
        assert answer.status == 200, (answer.status, answer.json)
        return answer.json


async def _stop_scanners(skydriver: SkyDriver) -> None:
    """Scanners outlive skydriver by design: stop every one this test's skydriver started."""
    docs = await skydriver.db.manifests.collection.find({"scanner": {"$ne": None}}, {"scanner": True}).to_list()
    for doc in docs:
        await skydriver.launcher.stop(doc["scanner"]["handle"])


@pytest.fixture
async def skydriver_factory(
    mongo_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[SkyDriverUnderTest]]]:
    """Start skydrivers (see the module docstring); all are stopped and their databases dropped after the test."""
    made: list[SkyDriver] = []
    doc = load_openapi("skydriver")
    spec = openapi_core.OpenAPI.from_dict(doc)

    async def make(
        *,
        wms: WMSUnderTest | None = None,
        run_loops: bool = False,
        clock: Callable[[], float] | None = None,
        launcher: ScannerLauncher | None = None,
        **overrides: Any,
    ) -> SkyDriverUnderTest:
        settings: dict[str, Any] = {
            "mongodb_url": mongo_url,
            "mongodb_database": f"skydriver_test_{uuid.uuid4().hex[:12]}",
            "auth_secret": SECRET,
            "auth_issuer": ISSUER,
            "wms_url": wms.url if wms else closed_port_url(),
            "wms_token": make_token("user", sub="skydriver"),
            "wms_timeout": 10.0,
            "local_state_dir": str(tmp_path / "scanners"),
            "host": "127.0.0.1",
            "port": 0,
            **overrides,
        }
        skydriver = SkyDriver(Config(**settings), clock=clock or time.time, launcher=launcher)
        await skydriver.start(run_loops=run_loops)
        made.append(skydriver)
        return SkyDriverUnderTest(skydriver, doc, spec)

    yield make
    for skydriver in made:
        await _stop_scanners(skydriver)
        await skydriver.stop()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
        await client.drop_database(skydriver.config.mongodb_database)
        await client.close()


@pytest.fixture
async def skydriver(skydriver_factory: Callable[..., Awaitable[SkyDriverUnderTest]]) -> SkyDriverUnderTest:
    """A running skydriver without a WMS (its URL finds nothing) and with the loops off."""
    return await skydriver_factory()
