"""The scanner of one scan: pixel tasks out to the pilots, their results in, the skymap to skydriver.

It starts from what skydriver holds: the request, the event, and whatever a previous instance of
this scan recorded (the checkpoints' published tasks and received results, the manifest's dead
tasks). So a scanner can die at any moment and its successor neither loses nor repeats work. Then,
concurrently, until `SkyScan` is done:

* **publish** the tasks the scan asks for to `to-clients` (with confirms), then record them
  (checkpoint `published`). Publishing first: a crash between the two only sends those tasks again
  (results are keyed, a duplicate is dropped); recording first would leave a successor waiting for
  tasks that never reached the queue.
* **results** from `from-clients`: validated (garbage and foreign results are logged and acked away),
  batched, recorded (checkpoint `results`), and only then acked — ack-last across the scanner: what
  was not recorded was not acked, and the broker hands it to the successor.
* **dead tasks** from the task queue's dead-letter queue (the broker's delivery limit was hit):
  given up, recorded in the manifest's `dead_tasks`, then acked. The scan goes on without them.
* **progress** every SKYSCAN_PROGRESS_INTERVAL (the heartbeat skydriver's watchdog reads) and the
  partial skymap every SKYSCAN_RESULT_INTERVAL.

When the scan is done: the final skymap (pixels whose every task died are missing, and listed in
the summary), then the workflow is finished, so the pilots go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import ewms_mq
from ewms_rest.client import RestError

from ..event.model import Event
from ..recos import get_reco_class
from ..recos.messages import PixelResult, PixelTask
from .api import SkyDriverAPI
from .config import FROM_CLIENTS, TO_CLIENTS, ScannerConfig
from .result import MultiResolutionMap, PixelFits, skymap
from .scan import SkyScan

LOGGER = logging.getLogger(__name__)
BATCH_ITEMS = 200  # results per checkpoint: one request to skydriver per this many pixels
BATCH_SECONDS = 1.0  # ... or per this long, when results trickle in
PREFETCH = 2 * BATCH_ITEMS  # a full batch waits for its record while the next one arrives
FAILED_FIT_LLH = 1e300  # JSON has no NaN or infinity; see json_safe
MAX_ERROR_CHARS = 4096

T = TypeVar("T")


class ScanFailed(Exception):
    """A problem the scanner cannot get past; reported to skydriver as the scan's `scanner_error`."""


class Delivery(Protocol):
    """What the scanner needs of a message (`ewms_mq.Message` is one)."""

    @property
    def data(self) -> Any: ...

    @property
    def message_id(self) -> str | None: ...

    async def ack(self) -> None: ...


class RecordThenAck(Generic[T]):
    """Deliveries held until what they carried is recorded at skydriver, then acked together.

    If the scanner dies before the record, nothing of the batch was acked and the broker hands every
    message to the next instance. Batching keeps skydriver's load at one request per `max_items`
    messages, or per `max_seconds` when they trickle in.
    """

    def __init__(
        self,
        record: Callable[[list[T]], Awaitable[object]],
        *,
        max_items: int = BATCH_ITEMS,
        max_seconds: float = BATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self.max_items = max_items
        self.max_seconds = max_seconds
        self._clock = clock
        self._messages: list[Delivery] = []
        self._items: list[T] = []
        self._since: float | None = None

    def add(self, message: Delivery, item: T | None) -> None:
        """Hold `message`; `item` (None: a duplicate or garbage, nothing to record) is recorded before the ack."""
        if self._since is None:
            self._since = self._clock()
        self._messages.append(message)
        if item is not None:
            self._items.append(item)

    @property
    def due(self) -> bool:
        return len(self._messages) >= self.max_items or self.seconds_left() == 0.0

    def seconds_left(self) -> float | None:
        """Until the batch is due; None while it is empty (nothing to wait for)."""
        if self._since is None:
            return None
        return max(0.0, self._since + self.max_seconds - self._clock())

    async def flush(self) -> None:
        """Record the items, then ack the messages. If the record fails, none is acked."""
        messages, items = self._messages, self._items
        self._messages, self._items, self._since = [], [], None
        if items:
            await self._record(items)
        for message in messages:  # one turn of the loop: the broker client sends them as one multiple ack
            await message.ack()


async def consume_in_batches(
    messages: AsyncIterator[Delivery],
    batch: RecordThenAck[T],
    take: Callable[[Delivery], T | None],
    flushed: Callable[[], None],
    last: Callable[[], bool] = lambda: False,
) -> None:
    """Each message through `take` into `batch`; the batch is flushed when due, then `flushed()` is told.

    When `last()` says nothing more is to come (the scan has every result it waits for), the batch
    is flushed at once: waiting out `max_seconds` would only delay the final skymap.
    """
    while True:
        try:
            async with asyncio.timeout(batch.seconds_left()):
                message = await anext(messages)
        except TimeoutError:
            message = None
        except StopAsyncIteration:
            return
        if message is not None:
            batch.add(message, take(message))
        if batch.due or (message is not None and last()):
            await batch.flush()
            flushed()


def json_safe(result: PixelResult) -> PixelResult:
    """The result with non-finite numbers replaced: JSON (what skydriver stores) has no NaN or infinity.

    A fit that did not converge (llh NaN or inf) keeps the worst llh there is, so it is neither the
    best fit nor inside a contour — exactly how the scan core ranks a NaN; its other columns mean
    nothing and become 0.
    """
    fixes: dict[str, Any] = {
        name: FAILED_FIT_LLH if name == "llh" else 0.0
        for name, value in vars(result).items()  # its fields (scalars); one result per pixel task: keep it cheap
        if isinstance(value, float) and not math.isfinite(value)
    }
    return dataclasses.replace(result, **fixes) if fixes else result


def json_object(data: Any) -> dict[str, Any]:
    """A message's JSON object; a pilot whose outfile is not `.json` sends the object's text."""
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def scan_from_records(
    request: Mapping[str, Any], event: Event, checkpoint: Mapping[str, Any], dead_tasks: Iterable[Mapping[str, int]]
) -> SkyScan:
    """The scan `request` asks for, where earlier instances left it: results in, tasks still out, tasks given up."""
    reco_algo = str(request["reco_algo"])
    return SkyScan.from_results(
        event.ref,
        reco_algo,
        request["nsides"],
        get_reco_class(reco_algo).n_seeds,
        [PixelResult.from_dict(doc) for doc in checkpoint["results"]],
        published=checkpoint["published"],
        dead=[(task["nside"], task["pixel"], task["seed"]) for task in dead_tasks],
        reco_options=request.get("reco_options") or {},
        predictive_scanning_threshold=float(request.get("predictive_scanning_threshold", 1.0)),
    )


class Scanner:
    """One scan's scanner, from its restored state to its final skymap."""

    def __init__(
        self, config: ScannerConfig, api: SkyDriverAPI, event: Event, scan: SkyScan, *, complete: bool = False
    ) -> None:
        self.config = config
        self.complete = complete  # the final skymap is stored already (an instance died just after)
        self.api = api
        self.event = event
        self.scan = scan
        self._more_work = asyncio.Event()  # results or dead tasks came in: the scan may want new tasks
        self._done = asyncio.Event()

    @classmethod
    async def restore(cls, config: ScannerConfig, api: SkyDriverAPI) -> Scanner:
        """The scan as skydriver knows it: request, event, and what earlier instances recorded."""
        request = await api.scan_request()
        event_doc = await api.event()
        checkpoint = await api.checkpoint()
        manifest = await api.manifest()
        try:
            event = Event.from_dict(event_doc)
            scan = scan_from_records(request, event, checkpoint, manifest.get("dead_tasks") or [])
        except (KeyError, TypeError, ValueError) as exc:
            raise ScanFailed(f"cannot restore the scan from skydriver's records: {exc!r}") from exc
        LOGGER.info(
            "scan %s: event %s, %s; restored %d results, %d dead tasks",
            config.scan_id,
            event.ref,
            scan.reco_algo,
            len(scan.results),
            len(scan.dead_tasks),
        )
        return cls(config, api, event, scan, complete=bool(manifest.get("complete")))

    async def run(self) -> None:
        """Scan to the end: first heartbeat, then the loops until done, then the final skymap."""
        if self.complete:
            LOGGER.info("scan %s is complete already", self.config.scan_id)
            await self._finish_workflow()
            return
        await self.api.patch_manifest(progress=self._progress(), scan_metadata=self._metadata())
        async with contextlib.AsyncExitStack() as stack:
            tasks_broker = await stack.enter_async_context(await self._connect(TO_CLIENTS))
            results_broker = await stack.enter_async_context(await self._connect(FROM_CLIENTS))
            self._check_done()  # and wakes the publisher for the first time
            await self._until_done(
                {
                    "publish": self._publish_loop(tasks_broker),
                    "results": self._results_loop(results_broker),
                    "dead-tasks": self._dead_task_loop(tasks_broker),
                    "progress": self._progress_loop(),
                    "partial-results": self._partial_result_loop(),
                }
            )
        await self._finish()

    async def _connect(self, alias: str) -> ewms_mq.RabbitMQBroker:
        profile = self.config.mq_profiles[alias]
        return await ewms_mq.connect(
            profile.broker_address, auth_token=profile.auth_token or None, broker_type=profile.broker_type
        )

    def _queue(self, alias: str) -> str:
        return self.config.mq_profiles[alias].mqid

    async def _until_done(self, loops: dict[str, Coroutine[Any, Any, None]]) -> None:
        """Run the loops until the scan is done; a loop that fails (or ends) first fails the scan."""
        tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]
        done = asyncio.create_task(self._done.wait())
        try:
            finished, _ = await asyncio.wait([done, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if done not in finished:
                failed = finished.pop()
                failed.result()  # its exception, if it has one
                raise ScanFailed(f"the {failed.get_name()} loop ended before the scan was done")
        finally:
            for task in [done, *tasks]:
                task.cancel()
            await asyncio.gather(done, *tasks, return_exceptions=True)

    # -- the loops --------------------------------------------------------------------------------

    async def _publish_loop(self, broker: ewms_mq.RabbitMQBroker) -> None:
        """Send what the scan asks for, each time results (or dead tasks) may have changed that."""
        queue = self._queue(TO_CLIENTS)
        while True:
            await self._more_work.wait()
            self._more_work.clear()
            tasks = self.scan.next_tasks()
            if not tasks:
                continue
            await broker.publish_many(queue, [task.to_dict() for task in tasks])
            await self.api.record(published=sorted({(task.nside, task.pixel) for task in tasks}))
            LOGGER.info("published %d tasks", len(tasks))

    async def _results_loop(self, broker: ewms_mq.RabbitMQBroker) -> None:
        batch: RecordThenAck[PixelResult] = RecordThenAck(self._record_results)
        async with broker.consume(self._queue(FROM_CLIENTS), prefetch=PREFETCH) as messages:
            await consume_in_batches(messages, batch, self.take_result, self._check_done, self._all_settled)

    async def _dead_task_loop(self, broker: ewms_mq.RabbitMQBroker) -> None:
        batch: RecordThenAck[PixelTask] = RecordThenAck(self._record_dead_tasks)
        async with broker.consume(ewms_mq.dlq_name(self._queue(TO_CLIENTS)), prefetch=PREFETCH) as messages:
            await consume_in_batches(messages, batch, self.take_dead_task, self._check_done, self._all_settled)

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.progress_interval)  # a period, not a stand-in for an event
            await self.api.patch_manifest(progress=self._progress())

    async def _partial_result_loop(self) -> None:
        sent = -1
        while True:
            await asyncio.sleep(self.config.result_interval)  # a period, not a stand-in for an event
            fits = self.scan.best_fits()
            if len(self.scan.results) != sent and any(fits.values()):
                sent = len(self.scan.results)
                await self._put_result(fits, is_final=False)

    # -- messages in ------------------------------------------------------------------------------

    def take_result(self, message: Delivery) -> PixelResult | None:
        """The result to record, or None for a duplicate or something that is not a result of this scan."""
        try:
            result = json_safe(PixelResult.from_dict(json_object(message.data)))
            if not self.scan.add_result(result):
                return None
        except (ewms_mq.MQError, KeyError, TypeError, ValueError) as exc:  # ScanError is a ValueError
            LOGGER.warning("message %s on the result queue dropped: %r", message.message_id, exc)
            return None
        # the publisher may send the next level's tasks now, not only once this batch is recorded: at
        # a level's end the pilots would otherwise sit idle for up to BATCH_SECONDS. Safe: a successor
        # restored from fewer recorded results (the rest come back unacked) asks for the same tasks.
        self._more_work.set()
        return result

    def take_dead_task(self, message: Delivery) -> PixelTask | None:
        """The task given up, or None if it was settled already or is not a task of this scan."""
        try:
            task = PixelTask.from_dict(json_object(message.data))
            if not self.scan.give_up(task):
                return None
        except (ewms_mq.MQError, KeyError, TypeError, ValueError) as exc:
            LOGGER.warning("message %s on the dead-letter queue dropped: %r", message.message_id, exc)
            return None
        LOGGER.warning("task %s was dead-lettered (delivery limit): given up", task.key)
        return task

    async def _record_results(self, results: list[PixelResult]) -> None:
        await self.api.record(results=[result.to_dict() for result in results])

    async def _record_dead_tasks(self, _new: list[PixelTask]) -> None:
        await self.api.patch_manifest(dead_tasks=self._dead_task_docs())

    def _all_settled(self) -> bool:
        """Every task has its result or was given up: the last batch need not wait for more."""
        return self.scan.done

    def _check_done(self) -> None:
        """After a record: the scan may want new tasks, or be done."""
        self._more_work.set()
        if self.scan.done:
            self._done.set()

    # -- reports ----------------------------------------------------------------------------------

    async def _finish(self) -> None:
        fits = self.scan.best_fits()
        if not any(fits.values()):
            raise ScanFailed("every pixel's tasks were dead-lettered: there is no skymap to make")
        await self.api.patch_manifest(progress=self._progress(), dead_tasks=self._dead_task_docs())
        await self._put_result(fits, is_final=True)
        await self._finish_workflow()
        LOGGER.info(
            "scan %s done: %d results, %d dead tasks",
            self.config.scan_id,
            len(self.scan.results),
            len(self.scan.dead_tasks),
        )

    async def _finish_workflow(self) -> None:
        """Let the pilots go; best effort: skydriver's watchdog finishes the workflow of a complete scan too."""
        try:
            await self.api.workflow_finished()
        except RestError as exc:
            LOGGER.warning("could not finish the workflow now: %s", exc)

    async def _put_result(self, fits: PixelFits, *, is_final: bool) -> None:
        summary = MultiResolutionMap(fits).summary().to_dict()
        summary["dead_tasks"] = self._dead_task_docs()
        summary["missing_pixels"] = [{"nside": nside, "pixel": pixel} for nside, pixel in self.scan.missing_pixels]
        await self.api.put_result(skymap(fits, self.event), is_final=is_final, summary=summary)

    def _progress(self) -> dict[str, Any]:
        return self.scan.progress().to_dict()

    def _metadata(self) -> dict[str, Any]:
        return {
            "event_ref": self.event.ref,
            "reco_algo": self.scan.reco_algo,
            "n_seeds": self.scan.n_seeds,
            "restored_results": len(self.scan.results),
            "restored_dead_tasks": len(self.scan.dead_tasks),
        }

    def _dead_task_docs(self) -> list[dict[str, int]]:
        return [{"nside": nside, "pixel": pixel, "seed": seed} for nside, pixel, seed in self.scan.dead_tasks]


async def run_scanner(config: ScannerConfig, api: SkyDriverAPI) -> int:
    """Scan to the end: 0 once the final skymap is stored; 1 after a fatal problem, reported to skydriver."""
    try:
        scanner = await Scanner.restore(config, api)
        await scanner.run()
    except Exception as exc:  # anything: the scan's owner must learn why it stopped
        LOGGER.exception("scan %s failed", config.scan_id)
        await report_error(api, f"{type(exc).__name__}: {exc}")
        return 1
    return 0


async def report_error(api: SkyDriverAPI, message: str) -> None:
    """PATCH `scanner_error`; if skydriver cannot be told, the log is all there is."""
    try:
        await api.patch_manifest(scanner_error=message[:MAX_ERROR_CHARS])
    except RestError as exc:
        LOGGER.error("could not report the error to skydriver: %s", exc)
