"""Watching a scan from outside: poll skydriver, draw one line (nside, pixels, pilots, rate, ETA, state).

On a terminal the line rewrites itself; in a log or CI it is printed as a plain line every
`PLAIN_INTERVAL_S` and on every change of state, so a long scan leaves a readable, short trace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..states import OVER
from .api import SkyDriverAPI

POLL_S = 1.0
PLAIN_INTERVAL_S = 10.0
BAR_WIDTH = 24


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one poll saw: the status route's answer and the manifest's progress, reduced to what is shown."""

    scan_id: str
    state: str
    message: str
    complete: bool
    progress: dict[str, Any] | None
    pilots_running: int

    @property
    def over(self) -> bool:
        return self.complete or self.state in OVER

    @property
    def fraction(self) -> float:
        progress = self.progress or {}
        expected = progress.get("tasks_expected") or 0
        return min(1.0, progress.get("tasks_done", 0) / expected) if expected else 0.0

    def line(self) -> str:
        """`[#####.....]  45%  8: 768/768  64: 300/768 | 2 pilots running | 41.0 tasks/s | ETA 35s | STATE`."""
        parts = [f"[{'#' * int(BAR_WIDTH * self.fraction):.<{BAR_WIDTH}}] {self.fraction:4.0%}"]
        progress = self.progress or {}
        nsides = progress.get("nsides") or {}
        if nsides:
            parts.append("  ".join(f"{n}: {p['done']}/{p['expected']}" for n, p in sorted(nsides.items(), key=_nside)))
        parts.append(f"{self.pilots_running} pilot{'' if self.pilots_running == 1 else 's'} running")
        if progress.get("rate_per_second"):
            parts.append(f"{progress['rate_per_second']:.1f} tasks/s")
        if progress.get("eta_seconds") is not None and not self.over:
            parts.append(f"ETA {progress['eta_seconds']:.0f}s")
        if progress.get("dead_tasks"):
            parts.append(f"{progress['dead_tasks']} dead tasks")
        parts.append(self.state)
        return " | ".join(parts)


def _nside(item: tuple[str, Any]) -> int:
    return int(item[0])


def pilots_running(status: dict[str, Any]) -> int:
    """Running pilots summed over the scan's cluster locations (the status route's `ewms.pilots`)."""
    pilots = (status.get("ewms") or {}).get("pilots") or {}
    return sum(int(counts.get("running", 0)) for counts in pilots.values())


async def snapshot(api: SkyDriverAPI, scan_id: str) -> Snapshot:
    status = await api.scan_get(scan_id, "/status", include_deleted=True)
    manifest = await api.scan_get(scan_id, "/manifest", include_deleted=True)
    return Snapshot(
        scan_id=scan_id,
        state=status["scan_state"],
        message=status.get("message", ""),
        complete=bool(status.get("scan_complete")),
        progress=manifest.get("progress"),
        pilots_running=pilots_running(status),
    )


class ProgressLine:
    """Draws snapshots on `stream`: rewriting one line on a terminal, plain lines now and then otherwise."""

    def __init__(self, stream: TextIO, plain_interval: float = PLAIN_INTERVAL_S) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._plain_interval = plain_interval
        self._last_plain = -plain_interval
        self._last_state = ""
        self._drawn = False

    def show(self, snap: Snapshot) -> None:
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r" + snap.line()[:width] + "\x1b[K")
            self._drawn = True
        elif snap.state != self._last_state or time.monotonic() - self._last_plain >= self._plain_interval:
            self._stream.write(snap.line() + "\n")
            self._last_plain = time.monotonic()
        self._last_state = snap.state
        self._stream.flush()

    def finish(self, snap: Snapshot) -> None:
        """The final line stays on screen (and in the log), whatever the interval."""
        if self._tty:
            self.show(snap)
            self._stream.write("\n")
        else:
            self._stream.write(snap.line() + "\n")
        self._stream.flush()


async def watch(
    api: SkyDriverAPI,
    scan_id: str,
    line: ProgressLine | None,
    *,
    poll: float = POLL_S,
    check: Callable[[], None] | None = None,
) -> Snapshot:
    """Poll until the scan is over (complete, failed or stopped); `check` runs before each poll and may raise."""
    while True:
        if check:
            check()
        snap = await snapshot(api, scan_id)
        if snap.over:
            if line:
                line.finish(snap)
            return snap
        if line:
            line.show(snap)
        await asyncio.sleep(poll)
