"""Wiring: the WMS client, the scheduler backend, the journal and the three loops, as one service.

`TMS(config).run()` runs the starter, watcher and stopper side by side until cancelled; a
failing loop backs off on its own and never takes the others down. Tests hand in their own
scheduler (the HTCondor backend over a fake schedd) or REST client.
"""

from __future__ import annotations

import asyncio
import logging

from rest_tools.client import RestClient

from . import schedulers
from .config import Config
from .journal import Journal
from .loop import run_forever
from .schedulers import Scheduler
from .starter import Starter
from .stopper import Stopper
from .watcher import Watcher
from .wms import WMS, rest_client

LOGGER = logging.getLogger(__name__)


class TMS:
    """The Task Management Service of one cluster location."""

    def __init__(self, config: Config, *, scheduler: Scheduler | None = None, client: RestClient | None = None) -> None:
        self.config = config
        self.scheduler = scheduler or schedulers.load(config)
        self.wms = WMS(client or rest_client(config), config.cluster_location, config.claimant)
        self.journal = Journal(config.state_dir / "journal")
        self.starter = Starter(
            self.wms,
            self.scheduler,
            self.journal,
            host_command_image=config.host_command_image,
            operator_env=dict(config.pilot_env),
        )
        self.watcher = Watcher(self.wms, self.scheduler, batch_size=config.status_batch_size)
        self.stopper = Stopper(self.wms, self.scheduler)

    async def run(self) -> None:
        """Run the three loops until cancelled."""
        config = self.config
        LOGGER.info(
            "TMS for %s (claimant %s, %s backend, state in %s) talking to %s",
            config.cluster_location, config.claimant, self.scheduler.name, config.state_dir, config.wms_url,
        )  # fmt: skip
        async with asyncio.TaskGroup() as group:
            group.create_task(run_forever("starter", self.starter.step, config.starter_interval, config.max_backoff))
            group.create_task(run_forever("watcher", self.watcher.step, config.watcher_interval, config.max_backoff))
            group.create_task(run_forever("stopper", self.stopper.step, config.stopper_interval, config.max_backoff))

    async def aclose(self) -> None:
        """Let go of the backend and the HTTP session (the pilots keep running, as batch jobs do)."""
        await self.scheduler.aclose()
        self.wms.client.close()
