"""What the background loops (provisioner, janitor) share: run a step now and then, or when woken.

A step that raises is logged and retried at the next turn; the loop itself only ends when
cancelled, so one bad pass never stops the service's housekeeping.
"""

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from .broker import BrokerAdmin
from .config import Config
from .database import Database

LOGGER = logging.getLogger(__name__)


class Waker:
    """A wake-up call for a loop that otherwise sleeps `interval` seconds between passes."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def sleep(self, interval: float) -> None:
        """Wait `interval` seconds or until woken, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), interval)
        self._event.clear()


async def run_forever(name: str, step: Callable[[], Awaitable[None]], waker: Waker, interval: float) -> None:
    """Call `step` again and again, `interval` apart unless woken; never dies of a failed step."""
    LOGGER.info("%s loop started (every %.1f s, or when woken)", name, interval)
    while True:
        try:
            await step()
        except Exception:
            LOGGER.exception("%s pass failed; trying again in %.1f s", name, interval)
        await waker.sleep(interval)


class WorkflowLocks:
    """One lock per workflow, so the provisioner and the janitor never work on one workflow at once."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: collections.Counter[str] = collections.Counter()

    @contextlib.asynccontextmanager
    async def hold(self, workflow_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(workflow_id, asyncio.Lock())
        self._users[workflow_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[workflow_id] -= 1
            if not self._users[workflow_id]:
                del self._users[workflow_id], self._locks[workflow_id]


class WorkflowLoop:
    """What the provisioner and the janitor are made of: the stores, the broker, a clock, shared locks.

    A subclass names itself, says how often it runs, and implements `run_once`.
    """

    name = "loop"

    def __init__(
        self, db: Database, admin: BrokerAdmin, config: Config, clock: Callable[[], float], locks: WorkflowLocks
    ) -> None:
        self.db = db
        self.admin = admin
        self.config = config
        self.clock = clock
        self.locks = locks
        self.waker = Waker()

    @property
    def interval(self) -> float:
        raise NotImplementedError

    async def run(self) -> None:
        await run_forever(self.name, self.run_once, self.waker, self.interval)

    async def run_once(self) -> None:
        raise NotImplementedError
