"""A task run in-process: `EWMS_PILOT_TASK_CALLABLE=module:function`.

For short events the cost of starting a process per event dominates; a callable avoids
it. The function takes the event's data and returns the output's data, or None for
nothing to publish. A coroutine function is awaited on the pilot's loop; a plain function
runs in a worker thread so it can never stall the broker connection's heartbeats.

A timeout on a plain function fails the event, but the thread cannot be killed and runs
on; that is the price of no process boundary, and why long or untrusted tasks should be
commands or containers. Plain functions therefore run in the runner's own thread pool
(not asyncio's default one, which `asyncio.run` waits for at exit), and the pilot exits
without waiting for threads it had to abandon (`stuck_callable_threads`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import CallableError, StartupError, TaskTimeoutError
from ..io import NO_OUTPUT, TaskOutput

LOGGER = logging.getLogger(__name__)
THREAD_PREFIX = "ewms-task-callable"
_ABANDONED: set[concurrent.futures.Future[Any]] = set()


def stuck_callable_threads() -> int:
    """How many abandoned (timed-out or interrupted) sync callables are still running."""
    return sum(1 for f in _ABANDONED if not f.done())


def load_callable(spec: str) -> Callable[[Any], Any]:
    """Import `module:function` (dots allowed on both sides); fail with a start-up error."""
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name.strip())
    except Exception as exc:
        raise StartupError(f"EWMS_PILOT_TASK_CALLABLE={spec}: cannot import {module_name!r}: {exc!r}") from exc
    for attr in attr_path.strip().split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise StartupError(f"EWMS_PILOT_TASK_CALLABLE={spec}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise StartupError(f"EWMS_PILOT_TASK_CALLABLE={spec}: {attr_path!r} is not callable")
    func: Callable[[Any], Any] = obj
    return func


def _is_async(func: Callable[[Any], Any]) -> bool:
    call = getattr(func, "__call__", None)  # noqa: B004 -- an object with async __call__ counts too
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


class CallableRunner:
    """Runs the configured function on each event's data."""

    kind = "callable"

    def __init__(self, func: Callable[[Any], Any], *, timeout: float | None, max_workers: int = 1) -> None:
        self._func = func
        self._async = _is_async(func)
        self._timeout = timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix=THREAD_PREFIX)

    async def run(self, message_id: str | None, data: Any) -> TaskOutput:
        try:
            async with asyncio.timeout(self._timeout) as deadline:
                result = await self._call(data)
        except TimeoutError as exc:
            if deadline.expired():
                raise TaskTimeoutError(f"callable timed out after {self._timeout:g}s") from None
            raise CallableError(exc, traceback.format_exc()) from None
        except Exception as exc:
            raise CallableError(exc, traceback.format_exc()) from None
        return NO_OUTPUT if result is None else TaskOutput(result)

    async def aclose(self) -> None:
        """Let idle threads go; abandoned ones are left to `stuck_callable_threads`."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, data: Any) -> Any:
        if self._async:
            return await self._func(data)
        future = self._pool.submit(functools.partial(self._func, data))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # timeout or pilot deadline: the thread runs on
            if not future.cancel():
                _ABANDONED.add(future)
                future.add_done_callback(_ABANDONED.discard)
            raise
