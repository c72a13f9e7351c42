"""Fault 6: the database killed and restarted in the middle of a scan.

The WMS and skydriver use an `nx-27017` of the test's own. While a scan runs (and more wait in skydriver's
backlog), the database process is SIGKILLed — a crash, not a clean shutdown — and started again on the same
port and data. The services answer 503 meanwhile and recover by themselves; every write they acknowledged
before the crash is there after it (the scans POSTed, the scanner's checkpoints), and the scan completes
with the skymap an undisturbed scan makes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.test_tms_local import wait_for
from tests.system import PrivateMongo, System, expected_skymap_async, pixels_once

pytestmark = pytest.mark.slow
NSIDES = {"16": 0, "64": 8}
BACKLOG = 8


def recorded(checkpoint: dict[str, Any]) -> tuple[set[tuple[int, ...]], set[tuple[int, int, int]]]:
    published = {tuple(int(x) for x in p) for p in checkpoint["published"]}
    results = {(int(r["nside"]), int(r["pixel"]), int(r["seed"])) for r in checkpoint["results"]}
    return published, results


async def test_services_recover_from_a_database_crash_without_losing_an_acknowledged_write(
    private_mongo: PrivateMongo, system_factory: Any
) -> None:
    # the database's fixture first: it is torn down last, after the services that use it
    database = {"mongodb_url": private_mongo.url}
    system: System = await system_factory(wms=database, skydriver={**database, "max_active_scans": 1})
    expected = asyncio.create_task(expected_skymap_async(NSIDES))
    running = await system.post(NSIDES)
    await system.results_in(running, at_least=500)
    backlog = [await system.post({"8": 0}, classifiers={"n": n}) for n in range(BACKLOG)]  # each answered 200
    published, results = recorded(await system.checkpoint(running))  # acknowledged

    await asyncio.to_thread(private_mongo.kill)

    async def database_reported(status: int) -> bool:  # each service's health route asks the database
        skydriver = await system.skydriver.with_token(None).get("/")
        wms = await system.wms.anonymous().get("/v1/")
        return skydriver.status == status and wms.status == status

    await wait_for(lambda: database_reported(503), "skydriver and the WMS report the database down")
    await private_mongo.astart()
    await wait_for(lambda: database_reported(200), "skydriver and the WMS have their database back")

    for scan_id in backlog:
        manifest = await system.manifest(scan_id)
        assert manifest["scan_state"] == "PENDING__PRESTARTUP" and manifest["classifiers"]["n"] == backlog.index(
            scan_id
        )
        assert (await system.skydriver.user.get(f"/scan-request/{scan_id}")).status == 200
    published_after, results_after = recorded(await system.checkpoint(running))
    assert published <= published_after and results <= results_after

    for scan_id in backlog:  # out of the way: the running scan is the one to watch
        await system.skydriver.ok(system.skydriver.user.request("DELETE", f"/scan/{scan_id}", {}))
    result = await system.complete(running)
    assert (await system.manifest(running))["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY"
    pixels_once(result["skyscan_result"])
    assert result["skyscan_result"] == await expected
    await system.workflow_ended(running, "FINISHED")
