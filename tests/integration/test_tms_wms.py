"""The TMS against the real WMS, the real broker and real pilots (local backend).

A workflow's taskforce goes pending-starter -> condor-submit -> (running) -> pending-stopper ->
condor-rm -> condor-complete; statuses reach the WMS; abort removes the pilots; a TMS restart
(also one between submission and confirmation) never submits twice and re-adopts its cluster;
a taskforce stopped before its confirmation has its cluster removed; a TMS outlives a WMS outage;
credentials appear in no log, no file and nothing the WMS stores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import ewms_mq
from ewms_tms.config import Config
from ewms_tms.schedulers import JobState
from ewms_tms.schedulers.local import LocalScheduler
from ewms_tms.server import TMS
from ewms_tms.spec import Claim
from tests.integration.conftest import WMSUnderTest, make_token
from tests.integration.test_tms_local import assert_secret_free, final_jobs, wait_for

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
PILOT_ENV = {
    "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": 600,
    "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": 600,
    "EWMS_PILOT_INFILE_EXT": ".json",
    "EWMS_PILOT_OUTFILE_EXT": ".json",
}
WALK = ["pending-starter", "condor-submit", "pending-stopper", "condor-rm", "condor-complete"]


def workflow_body(location: str, n_workers: int = 2, **task: Any) -> dict[str, Any]:
    """One echo task as a host command at `location`, its pilots waiting for events as long as they must."""
    return {
        "public_queue_aliases": ["input", "output"],
        "tasks": [
            {
                "cluster_locations": [location],
                "input_queue_aliases": ["input"],
                "output_queue_aliases": ["output"],
                "task_image": "host",
                "task_args": "cp {{INFILE}} {{OUTFILE}}",
                "n_workers": n_workers,
                "worker_config": {"max_worker_runtime": 600},
                "pilot_config": {"environment": PILOT_ENV},
                **task,
            }
        ],
    }


class TMSRunner:
    """Starts TMS instances (in this process, as the loops run in production) on one state directory."""

    def __init__(self, state_dir: Path, location: str) -> None:
        self.state_dir = state_dir
        self.location = location
        self.running: list[tuple[TMS, asyncio.Task[None]]] = []

    def config(self, wms_url: str) -> Config:
        return Config.from_env(
            {
                "TMS_WMS_URL": wms_url,
                "TMS_WMS_TOKEN": make_token("tms", sub=f"tms-{self.location}"),
                "TMS_CLUSTER_LOCATION": self.location,
                "TMS_SCHEDULER": "local",
                "TMS_STATE_DIR": str(self.state_dir),
                "TMS_STARTER_INTERVAL": "0.1",
                "TMS_WATCHER_INTERVAL": "0.2",
                "TMS_STOPPER_INTERVAL": "0.1",
                "TMS_MAX_BACKOFF": "0.5",
                "TMS_LOCAL_KILL_GRACE": "5",
                "TMS_WMS_TIMEOUT": "30",
            }
        )

    def make(self, wms_url: str) -> TMS:
        return TMS(self.config(wms_url))

    def start(self, wms_url: str) -> TMS:
        tms = self.make(wms_url)
        self.running.append((tms, asyncio.create_task(tms.run())))
        return tms

    async def stop(self, tms: TMS) -> None:
        """What a TMS process being stopped does: its loops end; its pilots run on."""
        for entry in [e for e in self.running if e[0] is tms]:
            entry[1].cancel()
            await asyncio.gather(entry[1], return_exceptions=True)
            self.running.remove(entry)
        await tms.aclose()

    def clusters(self) -> list[int]:
        return sorted(int(p.name) for p in (self.state_dir / "local-jobs").glob("[0-9]*"))

    async def close(self) -> None:
        for tms, _ in list(self.running):
            await self.stop(tms)
        leftovers = LocalScheduler(self.state_dir / "local-jobs", kill_grace=5)
        for cluster in self.clusters():
            await leftovers.cancel(cluster)
            await final_jobs(leftovers, cluster)


@pytest.fixture
async def tmss(tmp_path: Path) -> AsyncIterator[TMSRunner]:
    runner = TMSRunner(tmp_path / "tms-state", f"loc-{uuid.uuid4().hex[:8]}")
    yield runner
    await runner.close()


async def taskforce(wms: WMSUnderTest, taskforce_uuid: str) -> dict[str, Any]:
    answer = await wms.admin.get(f"/v1/taskforces/{taskforce_uuid}")
    assert answer.status == 200, answer.json
    result: dict[str, Any] = answer.json
    return result


async def reaches(wms: WMSUnderTest, taskforce_uuid: str, **expected: Any) -> dict[str, Any]:
    """The taskforce once every field in `expected` has the expected value."""

    async def check() -> dict[str, Any] | None:
        tf = await taskforce(wms, taskforce_uuid)
        return tf if all(tf.get(k) == v for k, v in expected.items()) else None

    result: dict[str, Any] = await wait_for(check, f"taskforce {taskforce_uuid} has {expected}")
    return result


def walked(tf: dict[str, Any]) -> list[str]:
    """The phases the taskforce really moved through."""
    return [entry["target_phase"] for entry in tf["phase_change_log"] if entry["was_successful"]]


async def create(wms: WMSUnderTest, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    created = await wms.create_workflow(body)
    return created, created["taskforces"][0]["taskforce_uuid"]


async def echo_round_trip(created: dict[str, Any], n_events: int) -> list[Any]:
    """Publish events to the workflow's public input queue and read as many outputs, as its user would."""
    profiles = {p["alias"]: p for p in created["mqprofiles"]}
    inq, outq = profiles["input"], profiles["output"]
    sent = [{"pixel": i} for i in range(n_events)]
    async with await ewms_mq.connect(inq["broker_address"], auth_token=inq["auth_token"]) as broker:
        await broker.publish_many(inq["mqid"], sent)
        received: list[Any] = []
        async with broker.consume(outq["mqid"], prefetch=10, idle_timeout=90) as outputs:
            async for msg in outputs:
                received.append(msg.data)
                await msg.ack()
                if len(received) == n_events:
                    break
    assert sorted(received, key=json.dumps) == sorted(sent, key=json.dumps)
    return received


async def test_a_workflow_runs_on_local_pilots_and_completes_without_leaking_credentials(
    wms: WMSUnderTest, tmss: TMSRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tmss.start(wms.url)
    created, tf_uuid = await create(wms, workflow_body(tmss.location, n_workers=2))

    running = await reaches(wms, tf_uuid, phase="condor-submit", compound_statuses={"running": 2})
    assert running["cluster_id"] == tmss.clusters()[0] and running["n_workers"] == 2
    await echo_round_trip(created, 20)

    workflow_id = created["workflow"]["workflow_id"]
    assert (await wms.user.post(f"/v1/workflows/{workflow_id}/actions/finished", {})).status == 200
    done = await reaches(wms, tf_uuid, phase="condor-complete", compound_statuses={"removed": 2})
    assert walked(done) == WALK
    assert done["top_task_errors"] == {}  # removal by the TMS is no error
    assert tmss.clusters() == [done["cluster_id"]]  # submitted once

    secret = created["mqprofiles"][0]["auth_token"]
    assert "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN=<redacted>" in done["submit_dict"]["environment"]
    assert "EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN=<redacted>" in done["submit_description"]
    assert secret not in json.dumps(done)
    assert secret not in caplog.text
    assert_secret_free(tmss.state_dir, secret)


async def test_abort_removes_the_pilots_of_a_cluster_a_restarted_tms_adopted(
    wms: WMSUnderTest, tmss: TMSRunner
) -> None:
    first = tmss.start(wms.url)
    created, tf_uuid = await create(wms, workflow_body(tmss.location, n_workers=2))
    await reaches(wms, tf_uuid, phase="condor-submit", compound_statuses={"running": 2})

    await tmss.stop(first)  # the pilots run on without their TMS
    tmss.start(wms.url)
    await echo_round_trip(created, 5)  # the work goes on while no TMS watches
    workflow_id = created["workflow"]["workflow_id"]
    assert (await wms.user.post(f"/v1/workflows/{workflow_id}/actions/abort", {})).status == 200

    done = await reaches(wms, tf_uuid, phase="condor-complete", compound_statuses={"removed": 2})
    assert walked(done) == WALK
    assert tmss.clusters() == [done["cluster_id"]]
    jobs = await LocalScheduler(tmss.state_dir / "local-jobs").status(done["cluster_id"])
    assert [j.state for j in jobs] == [JobState.REMOVED, JobState.REMOVED]


async def test_a_restart_between_submission_and_confirmation_does_not_submit_twice(
    wms: WMSUnderTest, tmss: TMSRunner
) -> None:
    created, tf_uuid = await create(wms, workflow_body(tmss.location, n_workers=1))
    crashed = tmss.make(wms.url)
    answer = await crashed.wms.claim_pending_starter()
    assert answer is not None
    entry = await crashed.starter.submit(Claim.from_answer(answer))  # ... and the TMS dies before confirming
    assert entry is not None and entry.cluster_id is not None
    await crashed.aclose()

    tmss.start(wms.url)
    confirmed = await reaches(wms, tf_uuid, phase="condor-submit", compound_statuses={"running": 1})
    assert confirmed["cluster_id"] == entry.cluster_id
    assert tmss.clusters() == [entry.cluster_id]
    assert walked(confirmed) == WALK[:2]

    workflow_id = created["workflow"]["workflow_id"]
    await wms.user.post(f"/v1/workflows/{workflow_id}/actions/abort", {})
    await reaches(wms, tf_uuid, phase="condor-complete")


async def test_a_taskforce_stopped_before_its_confirmation_has_its_cluster_removed(
    wms: WMSUnderTest, tmss: TMSRunner, caplog: pytest.LogCaptureFixture
) -> None:
    tms = tmss.make(wms.url)

    async def claim_submit_and_stop() -> tuple[Any, str]:
        """Claim and submit, then the workflow is aborted before the submission is confirmed."""
        created, tf_uuid = await create(wms, workflow_body(tmss.location, n_workers=1))
        answer = await tms.wms.claim_pending_starter()
        assert answer is not None and answer["taskforce"]["taskforce_uuid"] == tf_uuid
        entry = await tms.starter.submit(Claim.from_answer(answer))
        assert entry is not None and entry.cluster_id is not None
        await wms.user.post(f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {})
        return entry, tf_uuid

    refused = await claim_submit_and_stop()
    await tms.starter.confirm(refused[0])  # the WMS answers 409: the TMS removes what it just submitted
    orphaned = await claim_submit_and_stop()
    await tms.aclose()  # ... and this time the TMS dies before confirming
    tmss.start(wms.url)  # the next TMS finds the cluster in its journal and removes it

    local = LocalScheduler(tmss.state_dir / "local-jobs")
    for entry, tf_uuid in (refused, orphaned):
        assert [j.state for j in await final_jobs(local, entry.cluster_id)] == [JobState.REMOVED]
        assert f"removing the cluster {entry.cluster_id} submitted for it" in caplog.text

        async def reported(tf_uuid: str = tf_uuid) -> dict[str, Any] | None:
            tf = await taskforce(wms, tf_uuid)
            log = [e["context"] for e in tf["phase_change_log"] if not e["was_successful"]]
            return tf if any(r.startswith("failure report") for r in log) else None

        tf = await wait_for(reported, f"the TMS told the WMS it removed the cluster of {tf_uuid}")
        assert tf["phase"] == "condor-complete" and tf["cluster_id"] is None
    assert tmss.clusters() == [refused[0].cluster_id, orphaned[0].cluster_id]

    async def journal_empty() -> bool:
        return not list((tmss.state_dir / "journal").glob("*.json"))

    await wait_for(journal_empty, "the journal is settled")


async def test_a_tms_rides_out_a_wms_outage(
    wms_factory: WMSFactory, tmss: TMSRunner, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmss.start(f"http://127.0.0.1:{port}")  # nothing answers there yet

    async def backing_off() -> bool:
        return caplog.text.count("cannot reach the WMS") >= 3

    await wait_for(backing_off, "the TMS retried a few times")
    wms = await wms_factory(port=port)
    created, tf_uuid = await create(wms, workflow_body(tmss.location, n_workers=1))
    await reaches(wms, tf_uuid, phase="condor-submit", compound_statuses={"running": 1})
    await wms.user.post(f"/v1/workflows/{created['workflow']['workflow_id']}/actions/abort", {})
    await reaches(wms, tf_uuid, phase="condor-complete")


async def test_a_taskforce_the_pilot_cannot_run_ends_failed_with_the_reason(wms: WMSUnderTest, tmss: TMSRunner) -> None:
    body = workflow_body(tmss.location, input_queue_aliases=["input", "more-input"])
    tmss.start(wms.url)
    _, tf_uuid = await create(wms, body)
    failed = await reaches(wms, tf_uuid, phase="failed")
    assert "one input and writes one output queue" in failed["failed_reason"]
    assert failed["submit_failures"] == 3
    assert tmss.clusters() == []
