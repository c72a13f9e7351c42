"""What the starter, watcher and stopper share: run a pass again and again, backing off on failure.

A pass returns True when it did something and there may be more (go again at once), False
when there was nothing to do (wait one interval). A failed pass — the WMS down, the
scheduler refusing — is logged and retried after a delay that doubles up to `max_backoff`,
so an outage of the WMS is ridden out without hammering it, and the first good pass
returns to the normal pace. Only cancellation ends a loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ewms_rest.client import ServiceUnavailable

LOGGER = logging.getLogger(__name__)


class Backoff:
    """Delays after consecutive failures: `initial`, doubled each time, at most `maximum`."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._next = initial

    def failure(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay

    def success(self) -> None:
        self._next = self.initial


async def run_forever(name: str, step: Callable[[], Awaitable[bool]], interval: float, max_backoff: float) -> None:
    """Call `step` until cancelled: again at once after work, `interval` after none, backing off on errors."""
    LOGGER.info("%s loop started (every %.1f s when idle)", name, interval)
    backoff = Backoff(interval, max_backoff)
    while True:
        try:
            busy = await step()
        except ServiceUnavailable as exc:
            delay = backoff.failure()
            LOGGER.warning("%s: %s; trying again in %.1f s", name, exc, delay)
        except Exception:
            delay = backoff.failure()
            LOGGER.exception("%s pass failed; trying again in %.1f s", name, delay)
        else:
            backoff.success()
            delay = 0.0 if busy else interval
        await asyncio.sleep(delay)
