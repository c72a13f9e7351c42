"""A task run in-process: `EWMS_PILOT_TASK_CALLABLE=module:function`.

For short events the cost of starting a process per event dominates; a callable avoids
it. The function takes the event's data and returns the output's data, or None for
nothing to publish. A coroutine function is awaited on the pilot's loop; a plain function
runs in a worker thread so it can never stall the broker connection's heartbeats.

A timeout on a plain function fails the event, but the thread cannot be killed and runs
on; that is the price of no process boundary, and why long or untrusted tasks should be
commands or containers. Such a thread is abandoned: a new thread takes its task slot, so
the next events run, and the pilot exits without waiting for it (`stuck_callable_threads`).

The hand-off to a thread is the pilot's largest cost per event on short events, so it is
lean: one daemon thread per task slot takes calls from a `SimpleQueue` and hands each result
back with a single `call_soon_threadsafe`, where `ThreadPoolExecutor` + `wrap_future` add
a concurrent future (its lock and condition) and a chained asyncio future per call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import CallableError, StartupError, TaskTimeoutError
from ..io import NO_OUTPUT, TaskOutput

LOGGER = logging.getLogger(__name__)
THREAD_PREFIX = "ewms-task-callable"


@dataclasses.dataclass(eq=False)
class _Call:
    """One sync call on its way through a slot thread; `state` is guarded by `_SlotThreads.lock`."""

    func: Callable[[Any], Any]
    data: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    state: str = "queued"  # -> "running" -> "done"; "cancelled" before it ran; "abandoned" while it ran
    finished: threading.Event | None = None  # made when abandoned: set once the call has returned


_ABANDONED: set[_Call] = set()  # abandoned calls still running


def stuck_callable_threads() -> int:
    """How many abandoned (timed-out or interrupted) sync callables are still running."""
    return len(_ABANDONED)


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
        self._threads = _SlotThreads(max_workers)

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
        self._threads.close()

    async def _call(self, data: Any) -> Any:
        if self._async:
            return await self._func(data)
        return await self._threads.call(self._func, data)


class _SlotThreads:
    """A thread per task slot for sync calls; an abandoned call's thread is replaced, not waited for."""

    def __init__(self, slots: int) -> None:
        self.lock = threading.Lock()
        self._slots = slots
        self._threads = 0  # started and not abandoned
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()

    async def call(self, func: Callable[[Any], Any], data: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = _Call(func, data, loop, loop.create_future())
        with self.lock:
            if self._threads < self._slots:
                self._start_thread()
        self._calls.put(call)
        try:
            return await call.future
        except asyncio.CancelledError:  # timeout or pilot deadline: a running call's thread runs on
            self._cancel(call)
            raise

    def close(self) -> None:
        with self.lock:
            for _ in range(self._threads):
                self._calls.put(None)
            self._threads = 0

    def _start_thread(self) -> None:
        self._threads += 1
        threading.Thread(target=self._work, name=f"{THREAD_PREFIX}-{self._threads}", daemon=True).start()

    def _cancel(self, call: _Call) -> None:
        with self.lock:
            if call.state == "queued":
                call.state = "cancelled"  # its thread skips it
            elif call.state == "running":
                call.state = "abandoned"
                call.finished = threading.Event()
                _ABANDONED.add(call)
                self._threads -= 1  # its thread leaves when the call returns; the slot gets a new one

    def _work(self) -> None:
        """Run calls until told to stop, or until a call of this thread was abandoned."""
        while (call := self._calls.get()) is not None:
            with self.lock:
                if call.state == "cancelled":
                    continue
                call.state = "running"
            try:
                result, error = call.func(call.data), None
            except BaseException as exc:  # handed to the awaiting task, as a pool's future would
                result, error = None, exc
            with self.lock:
                abandoned = call.state == "abandoned"
                call.state = "done"
            if abandoned:
                _ABANDONED.discard(call)
                assert call.finished is not None
                call.finished.set()
                return
            call.loop.call_soon_threadsafe(_settle, call.future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
