"""The watcher: how the pilots of each active taskforce here are doing, told to the WMS.

Per pass it asks the WMS which taskforces here have jobs (`condor-submit`, `pending-stopper`,
`condor-rm`), asks the backend for each cluster's jobs, and reports
`compound_statuses` (state -> count) and `top_task_errors` (error -> how many jobs report it)
in batches, sending only what changed since the last report. A taskforce whose jobs have
all ended — every one terminated, removed or aborted, read from the jobs themselves — is
confirmed `condor-complete`.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from typing import Any

from ewms_rest.client import ServiceRefused

from .schedulers import JobStatus, Scheduler, UnknownCluster
from .wms import WMS

LOGGER = logging.getLogger(__name__)
TOP_ERRORS = 20
ERROR_TEXT_MAX = 1000

Report = tuple[dict[str, int], dict[str, int]]


def compound_statuses(jobs: Iterable[JobStatus]) -> dict[str, int]:
    """State -> number of jobs in it."""
    return dict(collections.Counter(str(job.state) for job in jobs))


def top_task_errors(jobs: Iterable[JobStatus]) -> dict[str, int]:
    """The most frequent errors (hold reasons, pilots' last errors) -> how many jobs report each."""
    counts: collections.Counter[str] = collections.Counter()
    for job in jobs:
        texts = {text[:ERROR_TEXT_MAX] for text in (job.hold_reason, job.last_error) if text}
        counts.update(texts)
    return dict(counts.most_common(TOP_ERRORS))


def all_ended(jobs: list[JobStatus], n_workers: int) -> bool:
    """Every job the taskforce has is final, and the backend knows of all of them."""
    return bool(jobs) and len(jobs) >= n_workers and all(job.final for job in jobs)


class Watcher:
    """One pass over every active taskforce here."""

    def __init__(self, wms: WMS, scheduler: Scheduler, *, batch_size: int = 100) -> None:
        self.wms = wms
        self.scheduler = scheduler
        self.batch_size = batch_size
        self._sent: dict[str, Report] = {}

    async def step(self) -> bool:
        reports: dict[str, Report] = {}
        ended: list[str] = []
        for taskforce in await self.wms.active_taskforces():
            uuid = taskforce["taskforce_uuid"]
            jobs = await self._jobs(taskforce)
            if jobs is None:
                continue
            reports[uuid] = (compound_statuses(jobs), top_task_errors(jobs))
            if all_ended(jobs, int(taskforce.get("n_workers") or 0)):
                ended.append(uuid)
        await self._report(reports)
        for uuid in ended:
            await self._complete(uuid)
        return False

    async def _jobs(self, taskforce: dict[str, Any]) -> list[JobStatus] | None:
        uuid, cluster_id = taskforce["taskforce_uuid"], taskforce["cluster_id"]
        try:
            return await self.scheduler.status(int(cluster_id))
        except UnknownCluster as exc:
            LOGGER.warning("taskforce %s (%s): %s", uuid, taskforce.get("phase"), exc)
            return None

    async def _report(self, reports: dict[str, Report]) -> None:
        """Send what changed, `batch_size` taskforces per request; forget taskforces no longer active."""
        self._sent = {uuid: sent for uuid, sent in self._sent.items() if uuid in reports}
        changed = [uuid for uuid, report in reports.items() if self._sent.get(uuid) != report]
        for start in range(0, len(changed), self.batch_size):
            batch = changed[start : start + self.batch_size]
            results = await self.wms.report_statuses(
                {uuid: reports[uuid][0] for uuid in batch}, {uuid: reports[uuid][1] for uuid in batch}
            )
            refused = {r["uuid"]: r.get("error", "") for r in results if r.get("status") != "updated"}
            for uuid in batch:
                if uuid in refused:
                    LOGGER.warning("taskforce %s: statuses not recorded: %s", uuid, refused[uuid])
                else:
                    self._sent[uuid] = reports[uuid]

    async def _complete(self, uuid: str) -> None:
        try:
            await self.wms.confirm_complete(uuid, time.time())
        except ServiceRefused as exc:
            LOGGER.warning("taskforce %s: completion not recorded: %s", uuid, exc)
            return
        LOGGER.info("taskforce %s: every pilot has ended; condor-complete", uuid)
