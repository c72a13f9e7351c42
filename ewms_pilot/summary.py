"""What a pilot did, as counters during the run and as one JSON document at exit.

The TMS and a person reading a job's output both want the same few numbers: how many
events were done, failed, retried, how long tasks took, and why the pilot stopped. The
failure report printed last on stderr is what HTCondor keeps as the job's error, so it
names every failed task with its exit code and stderr tail.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import TaskError

MAX_FAILURES_KEPT = 200  # a pilot that fails all day must not grow without bound
MAX_FAILURES_IN_SUMMARY = 50
MAX_FAILURES_IN_REPORT = 10


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed attempt at an event."""

    event_id: str
    kind: str
    reason: str
    exit_code: int | None
    stderr_tail: str

    @classmethod
    def from_error(cls, event_id: str, error: TaskError) -> Failure:
        return cls(event_id, error.kind, error.reason, error.exit_code, error.stderr_tail)


@dataclasses.dataclass
class Stats:
    """Counters the pilot updates as events finish."""

    started_wall: float = dataclasses.field(default_factory=time.time)
    started: float = dataclasses.field(default_factory=time.monotonic)
    received: int = 0
    done: int = 0
    published: int = 0
    failed: int = 0
    retried: int = 0
    interrupted: int = 0
    runtimes: list[float] = dataclasses.field(default_factory=list)
    failures: collections.deque[Failure] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=MAX_FAILURES_KEPT)
    )
    first_received: float | None = None
    last_settled: float | None = None

    def record_received(self, redelivered: bool) -> None:
        self.received += 1
        if redelivered:
            self.retried += 1
        if self.first_received is None:
            self.first_received = time.monotonic()

    def record_done(self, runtime: float, published: bool) -> None:
        self.done += 1
        self.published += int(published)
        self.runtimes.append(runtime)
        self.last_settled = time.monotonic()

    def record_failure(self, failure: Failure) -> None:
        self.failed += 1
        self.failures.append(failure)
        self.last_settled = time.monotonic()

    def active_seconds(self) -> float | None:
        """From the first event received to the last one done or failed: the busy period."""
        if self.first_received is None or self.last_settled is None:
            return None
        return self.last_settled - self.first_received

    def record_interrupted(self) -> None:
        self.interrupted += 1

    def summary(self, stop_reason: str, exit_code: int) -> dict[str, Any]:
        """The JSON summary document."""
        return {
            "stop_reason": stop_reason,
            "exit_code": exit_code,
            "events_received": self.received,
            "events_done": self.done,
            "events_published": self.published,
            "events_done_without_output": self.done - self.published,
            "events_failed": self.failed,
            "events_retried": self.retried,
            "events_interrupted": self.interrupted,
            "task_runtime_seconds": runtime_stats(self.runtimes),
            "active_seconds": _round(self.active_seconds()),
            "events_per_second": _rate(self.done, self.active_seconds()),
            "pilot_runtime_seconds": round(time.monotonic() - self.started, 3),
            "pilot_started_at": self.started_wall,
            "failures": [dataclasses.asdict(f) for f in list(self.failures)[-MAX_FAILURES_IN_SUMMARY:]],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _rate(count: int, seconds: float | None) -> float | None:
    """Events per second over the busy period (None when there is no period to speak of)."""
    if not seconds or count < 2:
        return None
    return round(count / seconds, 3)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: always one of the observed values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def runtime_stats(runtimes: list[float]) -> dict[str, float | int | None]:
    """Count, mean and p50/p90/p99/max of task runtimes (None when nothing ran)."""
    if not runtimes:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    values = sorted(runtimes)
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 6),
        "p50": round(percentile(values, 50), 6),
        "p90": round(percentile(values, 90), 6),
        "p99": round(percentile(values, 99), 6),
        "max": round(values[-1], 6),
    }


def write_summary(document: dict[str, Any], path: str) -> None:
    """Write the summary atomically, so a reader never sees half a file (blocking)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def failure_report(failures: Iterable[Failure], total: int) -> str:
    """The closing stderr lines: how many tasks failed and, per task, exit code and stderr tail."""
    lines = [f"{total} TASK(S) FAILED"]
    shown = list(failures)[-MAX_FAILURES_IN_REPORT:]
    if total > len(shown):
        lines.append(f"(showing the last {len(shown)})")
    for n, f in enumerate(shown, start=1):
        code = "none" if f.exit_code is None else str(f.exit_code)
        lines.append(f"--- failed task {n}: event {f.event_id}: {f.kind}, exit code {code}: {f.reason}")
        lines += [f"    {line}" for line in (f.stderr_tail or "<no stderr>").splitlines()]
    lines.append(f"{total} TASK(S) FAILED")
    return "\n".join(lines)
