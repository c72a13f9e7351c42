"""The stopper: removes the pilots of taskforces the WMS wants stopped, and confirms it.

A workflow that is finished or aborted moves its submitted taskforces to `pending-stopper`;
the stopper cancels each one's cluster and confirms `condor-rm`. The watcher then sees the
jobs end and confirms `condor-complete`. A removal that fails is reported and the taskforce
stays `pending-stopper`, offered again after the loop's backoff.
"""

from __future__ import annotations

import logging

from .schedulers import Scheduler, UnknownCluster
from .wms import WMS

LOGGER = logging.getLogger(__name__)


class Stopper:
    """One pass: stop at most one taskforce."""

    def __init__(self, wms: WMS, scheduler: Scheduler) -> None:
        self.wms = wms
        self.scheduler = scheduler

    async def step(self) -> bool:
        taskforce = await self.wms.next_pending_stopper()
        if taskforce is None:
            return False
        uuid, cluster_id = taskforce["taskforce_uuid"], taskforce.get("cluster_id")
        if cluster_id is not None:
            try:
                await self.scheduler.cancel(int(cluster_id))
            except UnknownCluster as exc:
                LOGGER.warning("taskforce %s: nothing to remove: %s", uuid, exc)
            except Exception as exc:
                LOGGER.error("taskforce %s: removing cluster %s failed: %s", uuid, cluster_id, exc)
                await self.wms.report_rm_failed(uuid, f"{self.scheduler.name} removal failed: {exc}")
                return False  # offered again next pass, after the interval
        await self.wms.confirm_rm(uuid)
        LOGGER.info("taskforce %s: cluster %s removed", uuid, cluster_id)
        return True
