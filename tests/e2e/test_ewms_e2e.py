"""Issue 12, "with the WMS and TMS": EWMS's own client library drives our whole system, end to end.

Everything runs as it would for a user: the WMS (`python -m ewms_wms`) and a TMS
(`python -m ewms_tms`, local backend) as processes, the pilots the TMS starts as processes, on
the real broker. A workflow is created over REST; a publisher feeds the workflow's public input
queue and a consumer reads every output from its public output queue — once written with
`oms-mqclient` (PyPI, import `mqclient`), once with `ewms_mq`. A poison event lands in the
input queue's `.dlq` through the WMS's policy; `oms-mqclient` redeclaring our queues gets no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mqclient
import pytest
from rest_tools.client import RestClient
from rest_tools.utils.auth import Auth

import ewms_mq
from ewms_tms.schedulers.local import LocalScheduler
from tests.integration.test_tms_local import assert_secret_free, final_jobs, wait_for

SECRET = "e2e-shared-secret-" + "s" * 32
N_EVENTS = 30
POISON = {"poison": True}
TASK = "sh -c 'if grep -q poison {{INFILE}}; then echo poisoned >&2; exit 3; fi; cp {{INFILE}} {{OUTFILE}}'"
PILOT_ENV = {
    "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": 600,
    "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": 600,
    "EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR": False,  # a poison event must not take its pilot down
    "EWMS_PILOT_INFILE_EXT": ".json",
    "EWMS_PILOT_OUTFILE_EXT": ".json",
}
START_GUARD = 60.0


def token(role: str, sub: str) -> str:
    auth = Auth(SECRET, issuer="ewms-wms", algorithm="HS256")  # type: ignore[no-untyped-call]
    return str(auth.create_token(sub, payload={"role": role}))  # type: ignore[no-untyped-call]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Services:
    wms_url: str
    location: str
    state_dir: Path
    logs: dict[str, Path]

    def secret_free(self, secret: str) -> None:
        """No log and no file of the TMS holds `secret`."""
        for log in self.logs.values():
            assert secret not in log.read_text(errors="replace"), log
        assert_secret_free(self.state_dir, secret)


def _start(name: str, module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_GUARD
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the WMS exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(f"{url}/v1/", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"the WMS did not answer within {START_GUARD}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def services(
    mongo_url: str, amqp_url: str, management_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """The WMS and one TMS (local backend) as processes; afterwards no pilot may be left running."""
    base = tmp_path_factory.mktemp("e2e")
    port, location = free_port(), f"e2e-{os.getpid()}"
    wms_url = f"http://127.0.0.1:{port}"
    logs = {"wms": base / "wms.log", "tms": base / "tms.log"}
    wms_env = {
        "WMS_MONGODB_URL": mongo_url,
        "WMS_MONGODB_DATABASE": f"e2e_{os.getpid()}_{port}",
        "WMS_BROKER_URL": amqp_url,
        "WMS_RABBITMQ_MANAGEMENT_URL": management_url,
        "WMS_AUTH_SECRET": SECRET,
        "WMS_HOST": "127.0.0.1",
        "WMS_PORT": str(port),
        "WMS_LOG_FORMAT": "text",
    }
    wms = _start("wms", "ewms_wms", wms_env, logs["wms"])
    tms: subprocess.Popen[bytes] | None = None
    try:
        _wait_healthy(wms_url, wms, logs["wms"])
        tms_env = {
            "TMS_WMS_URL": wms_url,
            "TMS_WMS_TOKEN": token("tms", f"tms-{location}"),
            "TMS_CLUSTER_LOCATION": location,
            "TMS_SCHEDULER": "local",
            "TMS_STATE_DIR": str(base / "tms-state"),
            "TMS_STARTER_INTERVAL": "0.2",
            "TMS_WATCHER_INTERVAL": "0.3",
            "TMS_STOPPER_INTERVAL": "0.2",
            "TMS_MAX_BACKOFF": "1",
            "TMS_LOCAL_KILL_GRACE": "5",
            "TMS_LOCAL_STOP_PILOTS_ON_EXIT": "true",
            "TMS_LOG_LEVEL": "DEBUG",
        }
        tms = _start("tms", "ewms_tms", tms_env, logs["tms"])
        yield Services(wms_url, location, base / "tms-state", logs)
    finally:
        if tms is not None:
            _stop(tms)
        _stop(wms)
    assert tms is not None and tms.returncode == 0, logs["tms"].read_text()[-3000:]
    jobs = LocalScheduler(base / "tms-state" / "local-jobs")
    for cluster in sorted(int(p.name) for p in jobs.state_dir.glob("[0-9]*")):
        asyncio.run(final_jobs(jobs, cluster))  # every pilot ended: nothing left running


@pytest.fixture
async def user(services: Services) -> AsyncIterator[RestClient]:
    client = RestClient(services.wms_url, token=token("user", "e2e-user"), timeout=30, retries=0)
    yield client
    client.close()


async def create_workflow(services: Services, user: RestClient, queue_factory: Any, management_api: Any) -> Any:
    body = {
        "public_queue_aliases": ["input", "output"],
        "tasks": [
            {
                "cluster_locations": [services.location],
                "input_queue_aliases": ["input"],
                "output_queue_aliases": ["output"],
                "task_image": "host",  # the TMS's TMS_HOST_COMMAND_IMAGE: a command task, no container
                "task_args": TASK,
                "n_workers": 2,
                "worker_config": {"max_worker_runtime": 600},
                "pilot_config": {"environment": PILOT_ENV},
            }
        ],
    }
    created = await user.request("POST", "/v1/workflows", body)
    for profile in created["mqprofiles"]:
        queue_factory.register(profile["mqid"])  # deleted after the test, with its .dlq and policy
    workflow_id = created["workflow"]["workflow_id"]

    def remove_broker_user() -> None:
        management_api("DELETE", f"/api/users/ewms-wf-{workflow_id}")

    created["cleanup"] = remove_broker_user
    return created


async def public_profiles(user: RestClient, workflow_id: str) -> dict[str, dict[str, Any]]:
    """What an EWMS user does: poll the MQS route until every public queue is activated."""

    async def activated() -> dict[str, dict[str, Any]] | None:
        answer = await user.request("GET", f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public")
        profiles = answer["mqprofiles"]
        return {p["alias"]: p for p in profiles} if profiles and all(p["is_activated"] for p in profiles) else None

    result: dict[str, dict[str, Any]] = await wait_for(activated, "the public queues are activated")
    return result


# -- the two clients, as users write them ----------------------------------------------------------


async def mqclient_round_trip(inq: dict[str, Any], outq: dict[str, Any], events: list[Any]) -> list[Any]:
    def queue(profile: dict[str, Any]) -> mqclient.Queue:
        return mqclient.Queue(
            profile["broker_type"], address=profile["broker_address"], name=profile["mqid"],
            auth_token=profile["auth_token"], timeout=120,
        )  # fmt: skip

    async with queue(inq).open_pub() as pub:  # declares our queue again: must not be refused
        for event in events:
            await pub.send(event)
    received: list[Any] = []
    async with queue(outq).open_sub() as sub:  # (this block swallows exceptions: no asserts inside)
        async for data in sub:
            received.append(data)
            if len(received) == N_EVENTS:
                break
    return received


async def ewms_mq_round_trip(inq: dict[str, Any], outq: dict[str, Any], events: list[Any]) -> list[Any]:
    async with await ewms_mq.connect(inq["broker_address"], auth_token=inq["auth_token"]) as broker:
        await broker.publish_many(inq["mqid"], events)
    received: list[Any] = []
    async with (
        await ewms_mq.connect(outq["broker_address"], auth_token=outq["auth_token"]) as broker,
        broker.consume(outq["mqid"], prefetch=10, idle_timeout=120) as outputs,
    ):
        async for msg in outputs:
            received.append(msg.data)
            await msg.ack()
            if len(received) == N_EVENTS:
                break
    return received


ROUND_TRIPS = {"oms-mqclient": mqclient_round_trip, "ewms_mq": ewms_mq_round_trip}


@pytest.mark.parametrize("client", list(ROUND_TRIPS))
async def test_a_workflow_on_our_wms_and_tms_serves_ewms_clients(
    client: str,
    services: Services,
    user: RestClient,
    amqp_url: str,
    queue_factory: Any,
    management_api: Any,
) -> None:
    created = await create_workflow(services, user, queue_factory, management_api)
    try:
        workflow_id = created["workflow"]["workflow_id"]
        tf_uuid = created["taskforces"][0]["taskforce_uuid"]
        profiles = await public_profiles(user, workflow_id)
        events: list[Any] = [{"pixel": i, "nside": 8} for i in range(N_EVENTS)]
        events.insert(N_EVENTS // 2, POISON)

        received = await ROUND_TRIPS[client](profiles["input"], profiles["output"], events)

        expected = [e for e in events if e != POISON]
        assert sorted(received, key=json.dumps) == sorted(expected, key=json.dumps)
        dlq = ewms_mq.dlq_name(profiles["input"]["mqid"])
        async with await ewms_mq.connect(amqp_url) as admin:

            async def dead_lettered() -> bool:
                return (await admin.queue_depth(dlq)).messages == 1

            await wait_for(dead_lettered, "the poison event is in the DLQ")
            async with admin.consume(dlq, idle_timeout=10) as dead:
                msg = await anext(dead)
                assert msg.data == POISON
                await msg.nack(requeue=True)

        await user.request("POST", f"/v1/workflows/{workflow_id}/actions/finished", {})

        async def complete() -> dict[str, Any] | None:
            tf: dict[str, Any] = await user.request("GET", f"/v1/taskforces/{tf_uuid}")
            return tf if tf["phase"] == "condor-complete" else None

        done = await wait_for(complete, "the TMS removed the pilots and the taskforce is complete")
        assert done["compound_statuses"] == {"removed": 2}
        services.secret_free(profiles["input"]["auth_token"])
    finally:
        created["cleanup"]()
