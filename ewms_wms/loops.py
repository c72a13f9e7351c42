"""What the WMS's background loops (provisioner, janitor) share: stores, locks per workflow, a base class."""

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable

from ewms_rest.loops import Waker, run_forever

from .broker import BrokerAdmin
from .config import Config
from .database import Database


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
