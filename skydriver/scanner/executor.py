"""Run a scan here, without a broker: in this process or on a process pool.

This is the serial baseline the distributed scan is measured against. It drives `SkyScan` the
way the scanner server will (tasks out, results in any order), calls the same
`skydriver.recos.run_pixel_task` a pilot calls, and retries a failed task like a broker's
delivery limit would.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..event.model import Event
from ..recos import get_reco_class, run_pixel_task
from ..recos.base import RecoOption
from ..recos.messages import PixelResult, PixelTask
from .scan import Progress, SkyScan

LOGGER = logging.getLogger(__name__)
DEFAULT_MAX_ATTEMPTS = 3  # like the broker's delivery limit: then the task is dead-lettered and the scan fails

_worker_event: dict[str, Any] = {}


class TaskFailed(RuntimeError):
    """A pixel task failed `max_attempts` times."""


@dataclass
class ScanConfig:
    """How to scan: which reconstruction, which nsides, how to run it."""

    reco_algo: str
    nsides: Mapping[int | str, int]
    reco_options: dict[str, RecoOption] = field(default_factory=dict)
    predictive_scanning_threshold: float = 1.0
    workers: int = 0  # 0: in this process; N: a pool of N processes
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def run_scan(
    event: Event,
    config: ScanConfig,
    *,
    previous_results: Iterable[PixelResult] = (),
    on_result: Callable[[PixelResult], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SkyScan:
    """Scan `event` to the end; `previous_results` resume an interrupted scan, `on_result` sees each new result."""
    scan = SkyScan.from_results(
        event.ref,
        config.reco_algo,
        config.nsides,
        get_reco_class(config.reco_algo).n_seeds,
        previous_results,
        reco_options=config.reco_options,
        predictive_scanning_threshold=config.predictive_scanning_threshold,
    )
    runner = _PoolRunner(event, config.workers) if config.workers > 0 else _InlineRunner(event)
    attempts: dict[tuple[int, int, int], int] = {}
    with runner:
        runner.submit(scan.next_tasks())
        while not scan.done:
            task, outcome = runner.next_outcome()
            if isinstance(outcome, BaseException):
                attempts[task.key] = attempts.get(task.key, 0) + 1
                if attempts[task.key] >= config.max_attempts:
                    raise TaskFailed(f"task {task.key} failed {attempts[task.key]} times: {outcome!r}") from outcome
                LOGGER.warning("task %s failed (%r); retrying", task.key, outcome)
                runner.submit([task])
                continue
            if scan.add_result(outcome) and on_result is not None:
                on_result(outcome)
            runner.submit(scan.next_tasks())
            if on_progress is not None:
                on_progress(scan.progress())
    return scan


Outcome = tuple[PixelTask, PixelResult | BaseException]


class _InlineRunner:
    """Tasks run one at a time, here, when their outcome is asked for."""

    def __init__(self, event: Event) -> None:
        self._event = event
        self._queue: list[PixelTask] = []

    def __enter__(self) -> _InlineRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.clear()

    def submit(self, tasks: list[PixelTask]) -> None:
        self._queue.extend(reversed(tasks))  # popped from the end: first submitted, first run

    def next_outcome(self) -> Outcome:
        if not self._queue:
            raise RuntimeError("scan is not done but no task is outstanding")
        task = self._queue.pop()
        try:
            return task, PixelResult.from_dict(run_pixel_task(task.to_dict(), self._event))
        except Exception as exc:
            return task, exc


class _PoolRunner:
    """Tasks run on a process pool; each worker prepares the event once (see `run_pixel_task`'s cache)."""

    def __init__(self, event: Event, workers: int) -> None:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(event.to_dict(),)
        )
        self._outstanding = 0
        self._finished: queue.SimpleQueue[Outcome] = queue.SimpleQueue()

    def __enter__(self) -> _PoolRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, tasks: list[PixelTask]) -> None:
        for task in tasks:
            future = self._pool.submit(_run_in_worker, task.to_dict())
            future.add_done_callback(lambda done, task=task: self._finished.put((task, _outcome(done))))  # type: ignore[misc]
            self._outstanding += 1

    def next_outcome(self) -> Outcome:
        """The next task to finish, in completion order (a queue fed by the futures: O(1) per task)."""
        if not self._outstanding:
            raise RuntimeError("scan is not done but no task is outstanding")
        self._outstanding -= 1
        return self._finished.get()


def _outcome(future: concurrent.futures.Future[dict[str, Any]]) -> PixelResult | BaseException:
    try:
        return PixelResult.from_dict(future.result())
    except Exception as exc:
        return exc


def _init_worker(event: dict[str, Any]) -> None:
    _worker_event.clear()
    _worker_event.update(event)


def _run_in_worker(task: dict[str, Any]) -> dict[str, Any]:
    return run_pixel_task(task, _worker_event)
