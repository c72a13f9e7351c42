"""The consume loop: take events, run tasks, publish outputs, ack inputs last.

One asyncio task per event, at most `MAX_CONCURRENT_TASKS` running their task at once. An
event's input is acked only after its output is confirmed by the broker (ack-last), so a
pilot that dies at any point loses nothing: the broker redelivers every unacked input to
another pilot. Publishing and acking do not hold the task slot: with a prefetch above the
concurrency, the next event's task runs while the last one's output is being confirmed. A
failed task nacks its input with requeue; the broker's delivery limit parks an event that
keeps failing in the dead-letter queue.

Messages arrive through a feeder task into a local inbox. The broker bounds what is in
flight (prefetch), and the loop pulls from the inbox only when a task slot is free, which
lets the idle timers count exactly what upstream counts: time spent waiting for a message
while able to take one.

Stopping has two phases. First the pilot stops *taking* events (idle, no first message,
max runtime near, a signal, a task error, too many consecutive failures): the consumer is
cancelled and messages not yet started are nacked at once, so other pilots get them. Then
it *finishes* running tasks until a deadline (drain timeout after a signal, the hard
max-runtime end), cancelling and nacking whatever is still running at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any, Protocol

from .chirp import Chirper
from .config import PilotConfig
from .errors import PublishError, TaskError
from .io import TaskOutput
from .layout import safe_event_id
from .summary import Failure, Stats
from .tasks import TaskRunner

LOGGER = logging.getLogger(__name__)


class StopReason(enum.StrEnum):
    """Why the pilot stopped taking events (the summary's `stop_reason`)."""

    NO_FIRST_MESSAGE = "no-first-message"
    IDLE = "queue-idle"
    MAX_RUNTIME = "max-runtime"
    SIGNAL = "signal"
    TASK_ERROR = "task-error"
    CONSECUTIVE_FAILURES = "consecutive-failures"
    BROKER_ERROR = "broker-error"


# -- what the pilot needs from ewms_mq (structural, so the loop is typed on its own) -----


class Message(Protocol):
    @property
    def data(self) -> Any: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def delivery_count(self) -> int: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...

    async def nack(self, requeue: bool = True) -> None: ...


class Messages(Protocol):
    async def stop(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[Message]: ...


class Publisher(Protocol):
    async def publish(self, queue: str, data: Any, *, headers: dict[str, Any] | None = None) -> str: ...


class Consumer(Protocol):
    def consume(
        self, queue: str, *, prefetch: int, idle_timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[Messages]: ...


# -- the pilot ---------------------------------------------------------------------------


class Pilot:
    """Runs the consume loop once; `run()` returns why it stopped."""

    def __init__(
        self,
        config: PilotConfig,
        runner: TaskRunner,
        consumer: Consumer,
        publisher: Publisher,
        *,
        stats: Stats | None = None,
        chirper: Chirper | None = None,
    ) -> None:
        self._config = config
        self._runner = runner
        self._consumer = consumer
        self._publisher = publisher
        self.stats = stats or Stats()
        self._chirper = chirper or Chirper(False)
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._stop = asyncio.Event()
        self._deadline_moved = asyncio.Event()
        self.stop_reason: StopReason | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._running: set[asyncio.Task[None]] = set()  # events whose task runs: they hold the task slots
        self._delivering: set[asyncio.Task[None]] = set()  # events whose output is being published, then acked
        self._first = True
        self._consecutive_failures = 0
        self._longest_runtime = 0.0
        self._drain_deadline: float | None = None
        self._max_runtime_timer: asyncio.TimerHandle | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._stop_waiter: asyncio.Task[Any] | None = None

    # -- stopping ----------------------------------------------------------------------

    def request_stop(self, reason: StopReason) -> None:
        """Stop taking events; the first reason given is the one reported."""
        if self.stop_reason is None:
            self.stop_reason = reason
            LOGGER.info("stopping: no longer taking events (%s)", reason)
        self._stop.set()

    def on_signal(self, name: str) -> None:
        """SIGTERM/SIGINT: drain until the drain timeout; a second signal: stop right away."""
        now = self._loop.time()
        if self._drain_deadline is not None:
            LOGGER.warning("%s again: interrupting running tasks now", name)
            self._drain_deadline = now
        else:
            LOGGER.warning("%s: draining (running tasks get %gs)", name, self._config.drain_timeout)
            self._drain_deadline = now + self._config.drain_timeout
        self.request_stop(StopReason.SIGNAL)
        self._deadline_moved.set()

    def _hard_end(self) -> float | None:
        if self._config.max_runtime is None:
            return None
        return self._start + self._config.max_runtime

    def _finish_deadline(self) -> float | None:
        ends = [t for t in (self._drain_deadline, self._hard_end()) if t is not None]
        return min(ends) if ends else None

    def _schedule_max_runtime(self) -> None:
        """Stop taking events when the longest task seen so far would no longer fit."""
        end = self._hard_end()
        if end is None:
            return
        if self._max_runtime_timer is not None:
            self._max_runtime_timer.cancel()
        reserve = self._longest_runtime
        if self._config.task_timeout is not None:
            reserve = min(reserve, self._config.task_timeout)
        self._max_runtime_timer = self._loop.call_at(end - reserve, self.request_stop, StopReason.MAX_RUNTIME)

    # -- main phases -------------------------------------------------------------------

    async def run(self) -> StopReason:
        """Consume until a stop rule fires, then finish or interrupt running tasks."""
        self._schedule_max_runtime()
        self._chirper.set(Status="Tasking", StartedTimestamp=int(self.stats.started_wall))
        async with self._consumer.consume(
            self._config.queue_incoming, prefetch=self._config.effective_prefetch, idle_timeout=None
        ) as messages:
            self._feeder = asyncio.create_task(self._feed(messages))
            self._stop_waiter = asyncio.create_task(self._stop.wait())  # one for all waits, not one per wait
            try:
                await self._take_events()
            finally:
                await self._stop_consuming(messages)
                await self._nack_inbox()
                await self._finish_running()
                await self._stop_feeder()
                self._stop_waiter.cancel()
        if self._max_runtime_timer is not None:
            self._max_runtime_timer.cancel()
        assert self.stop_reason is not None
        return self.stop_reason

    async def _stop_consuming(self, messages: Messages) -> None:
        """Cancel the subscription; if the broker is gone, running tasks still get finished."""
        try:
            await messages.stop()
        except Exception as exc:
            LOGGER.warning("cancelling the consumer failed (%r); the broker requeues on disconnect", exc)

    async def _feed(self, messages: Messages) -> None:
        """Move delivered messages to the inbox; after a stop, hand them straight back."""
        async for msg in messages:
            if self._stop.is_set():
                await self._nack(msg, "pilot is stopping")
            else:
                self._inbox.put_nowait(msg)

    async def _take_events(self) -> None:
        while not self._stop.is_set():
            running = self._pending()
            if len(running) >= self._config.max_concurrent_tasks:
                await self._wait_first(running)
                continue
            msg = await self._next_message()
            if msg is not None:
                self._start_event(msg)

    async def _next_message(self) -> Message | None:
        """The next message, or None if a stop rule fired while waiting."""
        if not self._inbox.empty():  # fast path: prefetched and waiting, nothing to race
            self._first = False
            return self._inbox.get_nowait()
        timeout = self._config.first_message_timeout if self._first else self._config.timeout_queue_incoming
        getter = asyncio.create_task(self._inbox.get())
        await self._wait_first({getter}, limit=timeout)
        msg = await _settle(getter)
        if msg is not None and self._stop.is_set():
            self._inbox.put_nowait(msg)  # nacked with the rest of the inbox
            return None
        if msg is not None:
            self._first = False
            return msg
        if not self._stop.is_set():  # nothing arrived in time
            self.request_stop(StopReason.NO_FIRST_MESSAGE if self._first else StopReason.IDLE)
        return None

    async def _wait_first(self, tasks: set[asyncio.Task[Any]], limit: float | None = None) -> set[asyncio.Task[Any]]:
        """Wait for one of `tasks`, a stop request or the feeder ending, whichever is first."""
        assert self._stop_waiter is not None and self._feeder is not None
        waiting: set[asyncio.Task[Any]] = {*tasks, self._stop_waiter, self._feeder}
        done, _ = await asyncio.wait(waiting, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if self._feeder is not None and self._feeder in done:
            self._on_feeder_end()
        return done

    def _pending(self) -> set[asyncio.Task[None]]:
        return {t for t in self._running if not t.done()}

    def _on_feeder_end(self) -> None:
        """The consumer ended without being asked to: the broker is gone for good."""
        if self._stop.is_set():
            return
        assert self._feeder is not None
        exc = self._feeder.exception() if not self._feeder.cancelled() else None
        LOGGER.error("the incoming queue's consumer ended: %r", exc)
        self.request_stop(StopReason.BROKER_ERROR)

    # -- one event ---------------------------------------------------------------------

    def _start_event(self, msg: Message) -> None:
        redelivered = bool(msg.redelivered or msg.delivery_count)
        self.stats.record_received(redelivered)
        # one id for the event's files and every log line, also when the publisher set no message_id
        event_id = safe_event_id(msg.message_id)
        # what a pilot was working on when it died, and when a dead pilot's events came back (bench/pilot_recovery.py)
        LOGGER.debug("event %s received%s", event_id, " (redelivered)" if redelivered else "")
        task = asyncio.create_task(self._handle(msg, event_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, msg: Message, event_id: str) -> None:
        """Run the task; hand a success to `_deliver`, nack a failure. Never raises except on cancellation.

        The task slot is free as soon as this returns: publishing the output and acking the input
        (`_deliver`, two broker round trips) happen beside the next task rather than before it,
        when the prefetch lets the next event in meanwhile.
        """
        started = self._loop.time()
        try:
            output = await self._runner.run(event_id, msg.data)
        except asyncio.CancelledError:
            await self._interrupted(msg, event_id)
            raise
        except TaskError as exc:
            await self._failed(msg, event_id, exc)
        except Exception as exc:  # a bug must fail the event visibly, not kill the loop
            await self._failed(msg, event_id, TaskError(f"pilot error: {exc!r}", stderr_tail=traceback.format_exc()))
        else:
            delivery = asyncio.create_task(self._deliver(msg, event_id, output, self._loop.time() - started))
            self._delivering.add(delivery)
            delivery.add_done_callback(self._delivering.discard)

    async def _deliver(self, msg: Message, event_id: str, output: TaskOutput, runtime: float) -> None:
        """Publish the output, then ack the input (ack-last); a failed publish nacks it instead."""
        try:
            if output.present:
                await self._publish(output.data)
        except asyncio.CancelledError:
            await self._interrupted(msg, event_id)
            raise
        except TaskError as exc:
            await self._failed(msg, event_id, exc)
        else:
            await self._ack(msg)
            self._on_success(event_id, runtime, output.present)

    async def _interrupted(self, msg: Message, event_id: str) -> None:
        self.stats.record_interrupted()
        await asyncio.shield(self._nack(msg, "interrupted at the pilot's deadline", event_id))

    async def _failed(self, msg: Message, event_id: str, error: TaskError) -> None:
        await self._nack(msg, error.reason, event_id)
        self._on_failure(event_id, error, first_delivery=not msg.delivery_count)

    async def _publish(self, data: Any) -> None:
        try:
            await self._publisher.publish(self._config.queue_outgoing, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise PublishError(f"publishing the output failed: {exc!r}") from exc

    def _on_success(self, event_id: str, runtime: float, published: bool) -> None:
        LOGGER.info("event %s done in %.3fs (%s)", event_id, runtime, "published" if published else "no output")
        self.stats.record_done(runtime, published)
        self._consecutive_failures = 0
        if runtime > self._longest_runtime:
            self._longest_runtime = runtime
            self._schedule_max_runtime()
        self._chirp_counts()

    def _on_failure(self, event_id: str, error: TaskError, *, first_delivery: bool = True) -> None:
        """Record a failed event; stop taking events when a rule says so.

        Only events on their first delivery count towards `MAX_CONSECUTIVE_FAILURES`: an event the
        broker delivers again has failed (or been interrupted) elsewhere before, so its failing here
        says more about the event than about this host. Such events are what a workload's poison
        tasks look like at the end of a run, when they are all that is left in the queue and go
        round the pilots until the delivery limit dead-letters them; counting them would retire
        every healthy pilot, and leave the rest of the queue to nobody.
        """
        self.stats.record_failure(Failure.from_error(event_id, error))
        if first_delivery:
            self._consecutive_failures += 1
        LOGGER.error(
            "task failed for event %s (%s, exit code %s): %s\n%s",
            event_id,
            error.kind,
            error.exit_code,
            error.reason,
            error.stderr_tail,
        )
        self._chirp_counts()
        self._chirper.set(Error=f"{error.kind}: {error.reason}")
        if self._config.stop_listening_on_task_error:
            if error.names() & set(self._config.okay_errors):
                LOGGER.info("failure is in EWMS_PILOT_OKAY_ERRORS: still taking events")
            else:
                self.request_stop(StopReason.TASK_ERROR)
        limit = self._config.max_consecutive_failures
        if limit and self._consecutive_failures >= limit:
            LOGGER.error(
                "%d events in a row failed on their first delivery: this host looks broken", self._consecutive_failures
            )
            self.request_stop(StopReason.CONSECUTIVE_FAILURES)

    def _chirp_counts(self) -> None:
        s = self.stats
        self._chirper.set(TasksTotal=s.done + s.failed, TasksSuccess=s.done, TasksFailed=s.failed)

    # -- acks --------------------------------------------------------------------------

    async def _ack(self, msg: Message) -> None:
        """Ack after the output is confirmed; a failed ack means a harmless duplicate later."""
        try:
            await msg.ack()
        except Exception as exc:
            LOGGER.warning("ack failed (%r): the event will be redelivered and done again", exc)

    async def _nack(self, msg: Message, why: str, event_id: str | None = None) -> None:
        """Return the event to the queue for another attempt (the broker counts deliveries)."""
        LOGGER.info("nacking event %s: %s", event_id or msg.message_id or "(no message id)", why)
        try:
            await msg.nack(requeue=True)
        except Exception as exc:
            LOGGER.warning("nack failed (%r): the broker redelivers it when the channel closes", exc)

    async def _nack_inbox(self) -> None:
        while not self._inbox.empty():
            await self._nack(self._inbox.get_nowait(), "not started before the pilot stopped")

    # -- finishing ---------------------------------------------------------------------

    def _unfinished(self) -> set[asyncio.Task[None]]:
        """Events not yet acked or nacked: running their task or delivering its output."""
        return {t for t in self._running | self._delivering if not t.done()}

    async def _finish_running(self) -> None:
        """Let running tasks finish (and deliver) until the deadline, then interrupt (and nack) the rest."""
        if self._running:
            LOGGER.info("waiting for %d running task(s)", len(self._running))
        while self._unfinished():
            deadline = self._finish_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
            if timeout == 0.0:
                await self._interrupt_running()
                return
            self._deadline_moved.clear()
            moved = asyncio.create_task(self._deadline_moved.wait())
            try:
                await asyncio.wait({*self._unfinished(), moved}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()

    async def _interrupt_running(self) -> None:
        tasks = self._unfinished()
        LOGGER.warning("deadline reached: interrupting %d running task(s)", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_feeder(self) -> None:
        """The consumer was cancelled; stop waiting on it and hand back anything it still got."""
        if self._feeder is None:
            return
        if not self._feeder.done():
            self._feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._feeder
        await self._nack_inbox()


async def _settle(getter: asyncio.Task[Message]) -> Message | None:
    """Cancel a pending inbox read, but keep its message if it got one meanwhile."""
    if not getter.done():
        getter.cancel()
        await asyncio.wait({getter})  # unlike `await getter`, never swallows our own cancellation
    return None if getter.cancelled() else getter.result()
