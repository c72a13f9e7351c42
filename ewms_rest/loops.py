"""What a service's background loops share: run a pass now and then, or at once when woken.

A pass that raises is logged and retried at the next turn; the loop itself only ends when
cancelled, so one bad pass (the database away for a moment) never stops the service's
background work. The WMS's provisioner and janitor and skydriver's starter and watchdog run on it.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

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
