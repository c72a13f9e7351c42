"""The provisioner: puts each new workflow's queues on the broker, then releases its taskforces.

For every workflow still `pending`: create its broker user (if per-workflow users are on),
declare its queues and DLQs, set their dead-letter policies, mark the queue profiles
activated, and move its taskforces pre-mq-activation -> pending-starter. A failed attempt
is retried with exponential backoff (`initial * 2^(n-1)`, capped); workflows are attempted
concurrently, each within its own timeout, so one that keeps failing (or hangs) never holds
up the others. `POST /v1/workflows` runs the first attempt at once and waits for it briefly.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ewms_mq import MQError

from .broker import BrokerAdmin, BrokerUser
from .config import Config
from .database import Database
from .loops import WorkflowLocks, WorkflowLoop

LOGGER = logging.getLogger(__name__)
CONCURRENCY = 8


def backoff(attempts: int, initial: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th consecutive failure."""
    return float(min(initial * 2 ** max(attempts - 1, 0), cap))


class Provisioner(WorkflowLoop):
    name = "provisioner"

    def __init__(
        self, db: Database, admin: BrokerAdmin, config: Config, clock: Callable[[], float], locks: WorkflowLocks
    ) -> None:
        super().__init__(db, admin, config, clock, locks)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def interval(self) -> float:
        return self.config.provision_poll_seconds

    async def run_once(self) -> None:
        """Attempt every workflow whose (next) attempt is due, concurrently."""
        due = await self.db.workflows.due_for_provisioning(self.clock())
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(workflow_id: str) -> None:
            async with limit:
                await self.attempt(workflow_id)

        await asyncio.gather(*(one(w) for w in due))

    async def provision_now(self, workflow_id: str, wait: float) -> None:
        """Start an attempt at once and wait up to `wait` seconds for it; it goes on after that."""
        if wait <= 0:
            self.waker.wake()
            return
        task = self._spawn(self.attempt(workflow_id))
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            LOGGER.info("workflow %s: provisioning goes on in the background", workflow_id)

    def _spawn(self, coro: Coroutine[Any, Any, bool]) -> "asyncio.Task[bool]":
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def attempt(self, workflow_id: str) -> bool:
        """One provisioning attempt; True when the workflow's queues are activated by it."""
        try:
            async with self.locks.hold(workflow_id):
                return await self._attempt(workflow_id)
        except Exception:  # a database hiccup: the next pass tries again
            LOGGER.exception("workflow %s: provisioning attempt failed unexpectedly", workflow_id)
            return False

    async def _attempt(self, workflow_id: str) -> bool:
        workflow = await self.db.workflows.get(workflow_id)
        if workflow is None or workflow["mq_state"] != "pending" or workflow["deactivated"]:
            return False
        profiles = await self.db.mqprofiles.for_workflow(workflow_id)
        queues = [p["mqid"] for p in profiles]
        user = (
            BrokerUser(workflow["broker_user"], profiles[0]["auth_token"])
            if workflow["broker_user"] and profiles
            else None
        )
        try:
            await asyncio.wait_for(self.admin.provision(queues, user), self.config.provision_timeout_seconds)
        except (MQError, TimeoutError) as exc:
            await self._failed(workflow_id, exc)
            return False
        now = self.clock()
        await self.db.mqprofiles.activate(workflow_id)
        moved = await self.db.taskforces.activate(workflow_id, now)
        activated = await self.db.workflows.mark_activated(workflow_id, now)
        LOGGER.info(
            "workflow %s: %d queue(s) activated, %d taskforce(s) pending-starter", workflow_id, len(queues), moved
        )
        return activated

    async def _failed(self, workflow_id: str, exc: BaseException) -> None:
        error = str(exc) or f"timed out after {self.config.provision_timeout_seconds:.0f} s"
        doc = await self.db.workflows.get(workflow_id)
        attempts = (doc["provision_attempts"] if doc else 0) + 1
        delay = backoff(
            attempts, self.config.provision_backoff_initial_seconds, self.config.provision_backoff_max_seconds
        )
        await self.db.workflows.provision_failed(workflow_id, self.clock() + delay, error)
        LOGGER.warning(
            "workflow %s: provisioning attempt %d failed (%s); next in %.0f s", workflow_id, attempts, error, delay
        )

    async def close(self) -> None:
        """Cancel attempts still running in the background."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
