"""Fault 2: the broker restarted in the middle of a scan.

The WMS, the scanner and the pilots all use a RabbitMQ node of the test's own, which is stopped and
started again while pixel tasks and results are on their way. Queues are durable and messages persistent;
`ewms_mq` reconnects, re-subscribes and sends unconfirmed publishes again, and whatever was delivered but not
acked comes back from the broker. The same scanner and pilots carry on (none is restarted) and the scan
completes with the skymap an undisturbed scan makes: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ewms_tms.schedulers import JobState
from tests.system import PILOTS, expected_skymap_async, pixels_once

pytestmark = pytest.mark.slow
NSIDES = {"16": 0, "64": 8}


async def test_the_scan_rides_out_a_broker_restart(private_rabbitmq_factory: Any, system_factory: Any) -> None:
    # the node's fixture first: it is torn down last, once nothing in this process holds a connection to it
    node = private_rabbitmq_factory(management=True)  # the WMS sets DLQ policies through the management API
    system = await system_factory(wms={"broker_url": node.url, "rabbitmq_management_url": node.management_url})
    expected = asyncio.create_task(expected_skymap_async(NSIDES))
    scan_id = await system.post(NSIDES)

    await system.results_in(scan_id, at_least=500)
    await node.arestart()  # stop (all connections drop), start again with the same data and ports

    result = await system.complete(scan_id)
    manifest = await system.manifest(scan_id)
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY" and manifest["dead_tasks"] == []
    assert manifest["scanner"]["restarts"] == 0  # the scanner reconnected: it was not replaced
    pixels_once(result["skyscan_result"])
    assert result["skyscan_result"] == await expected

    await system.workflow_ended(scan_id, "FINISHED")
    for cluster in system.tms.clusters():  # the pilots reconnected too: none failed, each drained at the end
        assert all(job.state is not JobState.FAILED for job in await system.tms.jobs.status(cluster))
    summaries = system.tms.pilot_summaries()
    assert len(summaries) == PILOTS and {s["stop_reason"] for s in summaries} == {"signal"}, summaries
    launcher = system.skydriver.skydriver.launcher
    scanner_log = launcher.log_path(manifest["scanner"]["handle"]).read_text()
    assert "reconnected to" in scanner_log
    pilot_logs = [p.read_text() for p in system.tms.jobs.state_dir.glob("*/*/stderr")]
    assert len(pilot_logs) == PILOTS and all("reconnected to" in log for log in pilot_logs)
