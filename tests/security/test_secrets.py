"""Secrets never leak: a scan-like flow through skydriver and the WMS — a scan posted, started by the starter loop
(a workflow at the WMS with per-workflow broker users, a stand-in scanner from the real local launcher), reported
to by its scanner, searched, rescanned, deleted and cleaned up — with every logger recording from DEBUG up, then
every route read back. No secret may appear in any log record, in the scanner's log file, or in any answer except
those of the routes that exist to hand it out.

The secrets: both services' JWT secrets, the WMS's broker admin password (a throw-away broker user made for this
test, so the password is unique), every workflow's broker password, the scanner's token, skydriver's token at the
WMS, and the callers' own bearer tokens.

The routes that hand secrets out (the only answers allowed to carry one), all on the WMS and all workflow broker
credentials (`auth_token` of a queue profile):
  - `POST /v1/workflows` (role user: the creator gets its public queues' credentials),
  - `GET /v1/mqs/workflows/{workflow_id}/mq-profiles/public` (user, the workflow's owner),
  - `GET /v1/mqs/mq-profiles/{mqid}` (tms),
  - `GET /v1/tms/pending-starter/taskforces` (tms: what the pilots it submits need).
skydriver hands no secret out on any route: the scanner gets its token and its queues' credentials in its
environment only.

How the logs stay clean at DEBUG: the services mask URLs, never log the scanner's environment, and hold the two
libraries that log secrets at DEBUG (`rest_tools.server.handler`: each bearer token; `pymongo`: whole documents)
at INFO (`ewms_rest.logs.keep_secrets_out_of_logs`); the test checks that guard is in place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ewms_rest.logs import SECRET_LEAKING_LOGGERS
from ewms_rest.tokens import mint_token
from tests.integration.conftest import WMSUnderTest
from tests.integration.skydriver.conftest import SkyDriverUnderTest, scan_body, scanner_env, stand_in_launcher
from tests.openapi_routes import operations
from tests.rest_client import Client, Response
from tests.security.conftest import SKYDRIVER, WMS, concrete

if TYPE_CHECKING:
    from tests.conftest import ManagementAPI

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
SkyDriverFactory = Callable[..., Awaitable[SkyDriverUnderTest]]

HANDS_OUT = {
    ("wms", "post", "/v1/workflows"),
    ("wms", "get", "/v1/mqs/workflows/{workflow_id}/mq-profiles/public"),
    ("wms", "get", "/v1/mqs/mq-profiles/{mqid}"),
    ("wms", "get", "/v1/tms/pending-starter/taskforces"),
}


class Everything(logging.Handler):
    """Keeps every record (and its traceback) that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.formatter_ = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> Iterator[str]:
        for record in self.records:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + self.formatter_.formatException(record.exc_info)
            yield f"{record.name}: {text}"


@pytest.fixture
def debug_logs() -> Iterator[Everything]:
    """Every logger records from DEBUG up (those that set a higher level of their own are lowered too), as an
    operator's `*_LOG_LEVEL=DEBUG` would; the services then apply their own guard when they start."""
    handler = Everything()
    root = logging.getLogger()
    saved = (
        root.level,
        {n: lg.level for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)},
    )
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in saved[1]:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
async def broker_admin(
    management_api: ManagementAPI, amqp_url: str, management_url: str
) -> AsyncIterator[dict[str, str]]:
    """A throw-away broker administrator with a unique password: the WMS's own broker credentials."""
    user, password = f"wms-admin-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    quoted = urllib.parse.quote(user, safe="")
    status, body = management_api("PUT", f"/api/users/{quoted}", {"password": password, "tags": "administrator"})
    assert status in (201, 204), body
    status, body = management_api(
        "PUT", f"/api/permissions/%2F/{quoted}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    assert status in (201, 204), body
    amqp = urllib.parse.urlsplit(amqp_url)
    http = urllib.parse.urlsplit(management_url)
    auth = f"{quoted}:{urllib.parse.quote(password, safe='')}@"
    yield {
        "password": password,
        "broker_url": f"amqp://{auth}{amqp.hostname}:{amqp.port or 5672}/",
        "management_url": f"http://{auth}{http.hostname}:{http.port or 15672}",
    }
    management_api("DELETE", f"/api/users/{quoted}")


class Recorder:
    """Every answer the test gets, by (service, method, route template)."""

    def __init__(self) -> None:
        self.answers: list[tuple[tuple[str, str, str], Response]] = []

    async def __call__(
        self, service: str, route: str, client: Client, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> Response:
        answer = await client.request(method.upper(), path, body, **kwargs)
        self.answers.append(((service, method.lower(), route), answer))
        return answer


async def _until(predicate: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_no_secret_in_logs_or_answers_through_a_scan(
    debug_logs: Everything,
    broker_admin: dict[str, str],
    wms_factory: WMSFactory,
    skydriver_factory: SkyDriverFactory,
    tmp_path: Path,
) -> None:
    wms_secret, skydriver_secret = secrets.token_urlsafe(40), secrets.token_urlsafe(40)
    wms_token = mint_token(wms_secret, "skydriver", "user", issuer=WMS.issuer)
    tms_token = mint_token(wms_secret, "tms-local", "tms", issuer=WMS.issuer)
    admin_token = mint_token(wms_secret, "root", "admin", issuer=WMS.issuer)
    user_token = mint_token(skydriver_secret, "alice", "user", issuer=SKYDRIVER.issuer)
    wms = await wms_factory(
        run_loops=True,
        auth_secret=wms_secret,
        broker_url=broker_admin["broker_url"],
        rabbitmq_management_url=broker_admin["management_url"],
        janitor_poll_seconds=1.0,
        dlq_retention_seconds=0.0,
    )
    launcher = stand_in_launcher(tmp_path / "scanners")
    skydriver = await skydriver_factory(
        wms=wms, run_loops=True, launcher=launcher, auth_secret=skydriver_secret, wms_token=wms_token,
        starter_interval=0.5, watchdog_interval=0.5,
    )  # fmt: skip
    for name in SECRET_LEAKING_LOGGERS:  # the services' guard: what keeps bearer tokens and documents out
        assert logging.getLogger(name).getEffectiveLevel() > logging.DEBUG, name

    record = Recorder()
    user = skydriver.with_token(user_token)
    tms, admin = wms.with_token(tms_token), wms.with_token(admin_token)

    # -- the flow ------------------------------------------------------------------------------------------------
    answer = await record("skydriver", "/scan", user, "post", "/scan", scan_body(classifiers={"alert": "test"}))
    scan_id = answer.json["scan_id"]

    async def started() -> bool:
        manifest = await skydriver.db.manifests.get(scan_id)
        return manifest is not None and manifest["scanner"] is not None

    await _until(started)
    manifest = (await record("skydriver", "/scan/{scan_id}/manifest", user, "get", f"/scan/{scan_id}/manifest")).json
    env = scanner_env(launcher, manifest["scanner"]["handle"])
    scanner_token = env["SKYSCAN_SKYDRIVER_TOKEN"]
    scanner = skydriver.with_token(scanner_token)
    workflow_id = manifest["ewms_workflow_id"]

    # a TMS claims the taskforce (a route that hands credentials out) and confirms a submission
    claim = await record(
        "wms", "/v1/tms/pending-starter/taskforces", tms, "get", "/v1/tms/pending-starter/taskforces",
        query={"cluster_location": "local"},
    )  # fmt: skip
    uuid = claim.json["taskforce"]["taskforce_uuid"]
    await record(
        "wms", "/v1/tms/condor-submit/taskforces/{taskforce_uuid}", tms, "post",
        f"/v1/tms/condor-submit/taskforces/{uuid}", {"cluster_id": "1", "n_workers": 1},
    )  # fmt: skip
    await record(
        "wms", "/v1/tms/statuses/taskforces", tms, "post", "/v1/tms/statuses/taskforces",
        {"compound_statuses_by_taskforce": {uuid: {"RUNNING": {"tasking": 1}}}},
    )  # fmt: skip

    # the scanner reports; one report carries a secret where a number belongs: refused, never echoed
    route = "/scan/{scan_id}/manifest"
    await record("skydriver", route, scanner, "patch", f"/scan/{scan_id}/manifest", {"progress": {"tasks_done": 1}})
    answer = await record(
        "skydriver", route, scanner, "patch", f"/scan/{scan_id}/manifest", {"progress": scanner_token}
    )
    assert answer.status == 400
    await record(
        "skydriver", "/scan/{scan_id}/checkpoint", scanner, "post", f"/scan/{scan_id}/checkpoint",
        {"published": [[8, 0], [8, 1]]},
    )  # fmt: skip
    partial = {"nside-8": {"columns": ["index", "llh"], "data": [[0, 1.5]], "metadata": {"nside": 8}}}
    await record(
        "skydriver", "/scan/{scan_id}/result", scanner, "put", f"/scan/{scan_id}/result",
        {"skyscan_result": partial, "is_final": False},
    )  # fmt: skip
    await record("skydriver", "/scan/{scan_id}/status", user, "get", f"/scan/{scan_id}/status")
    await record(
        "skydriver", "/scan/{scan_id}/actions/add-workers", user, "post", f"/scan/{scan_id}/actions/add-workers",
        {"n_workers": 1, "cluster_location": "local"},
    )  # fmt: skip
    rescan = await record(
        "skydriver", "/scan/{scan_id}/actions/rescan", user, "post", f"/scan/{scan_id}/actions/rescan",
        {"abort_first": True, "replace_scan": True},
    )  # fmt: skip
    new_scan = rescan.json["scan_id"]
    await record("skydriver", "/scan/{scan_id}", user, "delete", f"/scan/{new_scan}", {})
    await record("skydriver", "/scan/{scan_id}", user, "delete", f"/scan/{scan_id}", {})

    async def cleaned_up() -> bool:
        docs = await skydriver.db.manifests.collection.find({}, {"cleanup_pending": True}).to_list()
        return not any(d.get("cleanup_pending") for d in docs)

    await _until(cleaned_up)

    # -- every route read back -------------------------------------------------------------------------------
    ids = {"scan_id": scan_id}
    for method, route in operations(SKYDRIVER.doc):
        if method == "get":
            for client in (user, scanner):
                await record("skydriver", route, client, "get", concrete(route, ids), query={"include_deleted": "true"})
    await record(
        "skydriver", "/scans/find", user, "post", "/scans/find",
        {"filter": {}, "include_deleted": True, "manifest_projection": ["*"]},
    )  # fmt: skip
    await record("skydriver", "/scans/backlog", user, "get", "/scans/backlog")
    wms_db = wms.wms.db
    profiles = await wms_db.mqprofiles.collection.find({}, {"_id": False}).to_list()
    taskforces = await wms_db.taskforces.collection.find({}, {"_id": False}).to_list()
    directives = await wms_db.task_directives.collection.find({}, {"_id": False}).to_list()
    wms_ids = {
        "workflow_id": workflow_id,
        "task_id": directives[0]["task_id"],
        "taskforce_uuid": taskforces[0]["taskforce_uuid"],
        "mqid": profiles[0]["mqid"],
    }
    wms_user = wms.with_token(wms_token)
    for method, route in operations(WMS.doc):
        if method == "get":
            query = {"cluster_location": "local"} if "/tms/pending-" in route else None
            for client in (wms_user, tms, admin):
                await record("wms", route, client, "get", concrete(route, wms_ids), query=query)
        elif route.startswith("/v1/query/"):
            for client in (wms_user, admin):
                await record("wms", route, client, "post", route, {"query": {}})

    # -- the secrets, and where they are -------------------------------------------------------------------
    broker_passwords = {p["auth_token"] for p in profiles}
    assert len(broker_passwords) >= 2 and all(len(p) >= 20 for p in broker_passwords)  # two workflows: scan + rescan
    assert json.loads(env["SKYSCAN_MQ_PROFILES"])["to-clients"]["auth_token"] in broker_passwords
    named = {
        "the WMS's JWT secret": wms_secret,
        "skydriver's JWT secret": skydriver_secret,
        "the WMS's broker password": broker_admin["password"],
        "the scanner's token": scanner_token,
        "skydriver's token at the WMS": wms_token,
        "a user's token": user_token,
        "the TMS's token": tms_token,
        "an admin's token": admin_token,
        **{f"broker password of {p['mqid']}": p["auth_token"] for p in profiles},
    }

    leaks = [
        f"{what} in a log record: {text[:300]}"
        for text in debug_logs.texts()
        for what, secret in named.items()
        if secret in text
    ]
    assert len(debug_logs.records) > 100  # the logs are there...
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records)  # ...down to DEBUG, and...
    assert not leaks, "\n".join(leaks)  # ...they hold no secret

    for path in (tmp_path / "scanners").rglob("*"):  # the launcher's files (the scanner's log, its pid)
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not [w for w, s in named.items() if s in text], path

    handed_out = set()
    for (service, method, route), answer in record.answers:
        found = [what for what, secret in named.items() if secret.encode() in answer.body]
        if (service, method, route) in HANDS_OUT:
            assert all(w.startswith("broker password of ") for w in found), (service, method, route, found)
            handed_out |= {(service, method, route)} if found else set()
        else:
            assert not found, (service, method, route, answer.status, found)
    # the check can see a secret: the routes that hand them out did
    assert ("wms", "get", "/v1/mqs/workflows/{workflow_id}/mq-profiles/public") in handed_out
    assert ("wms", "get", "/v1/mqs/mq-profiles/{mqid}") in handed_out
    assert ("wms", "get", "/v1/tms/pending-starter/taskforces") in handed_out
