"""The scan core: which pixel tasks to send, what their results mean, how far along the scan is.

It knows nothing about transport. A driver (the local executor here; the scanner server behind
RabbitMQ later) loops:

    scan = SkyScan(event.ref, "pandel_track", {8: 0, 64: 12, 512: 24}, n_seeds=3)
    while not scan.done:
        publish(scan.next_tasks())          # new tasks only; each (nside, pixel, seed) once
        scan.add_result(receive())          # any order, duplicates tolerated

The state is the set of results; everything else (which pixels are requested, which are best,
progress) is derived from it. So a scan is restarted with `SkyScan.from_results(...)`: finished
pixels are not redone, and tasks that were out when it stopped are sent again — unless the restart
is told they are still out (`published`: a scanner whose tasks sit in a durable queue or with
pilots must not send them twice).

A task can be given up (`give_up`: the broker dead-lettered it after its delivery limit). The scan
goes on: the seed counts as settled without a result, a pixel with some seeds left keeps the best
of those, and a pixel whose every seed was given up is finished but failed — it never refines and
is missing from the skymap (`missing_pixels`).

Refinement: the first nside covers the whole sky. Level i + 1 subdivides two overlapping sets of
n_{i+1} finished pixels of level i, once a `predictive_scanning_threshold` fraction of level i's
requested pixels is finished: the n nearest (centre to centre) the best fit so far (the lowest-llh
pixel of levels 0..i), and the n with the lowest llh. The disc keeps the region around the best fit
whole even where one pixel's centre happens to fit badly; the lowest-llh set follows the landscape
to the side of the best pixel where the minimum actually lies, which a disc around a coarse pixel's
centre can miss. Either alone left true directions at coarse resolution in our coverage runs.
Pixels of level i that finish later still count: if one changes either set, the new sub-pixels are
requested too, so starting early never loses a region that waiting would have refined (with a
threshold of 1 nothing is ever topped up).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..recos.base import RecoOption
from ..recos.messages import PixelResult, PixelTask
from .pixels import children, expected_pixels, npix, parse_nsides, pix2vec


class ScanError(ValueError):
    """A result that cannot belong to this scan."""


@dataclass(frozen=True)
class NsideProgress:
    nside: int
    done: int  # pixels with every seed finished
    requested: int  # pixels whose tasks have been handed out
    expected: int  # pixels this level will scan, as far as can be told now


@dataclass(frozen=True)
class Progress:
    """Where a scan stands; `rate` and `eta` count only results received since this object was built."""

    nsides: list[NsideProgress]
    tasks_done: int  # settled: a result in, or given up
    tasks_expected: int
    rate_per_second: float | None
    eta_seconds: float | None
    dead_tasks: int = 0  # given up (dead-lettered); included in tasks_done

    @property
    def fraction(self) -> float:
        return self.tasks_done / self.tasks_expected if self.tasks_expected else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "nsides": {
                str(n.nside): {"done": n.done, "requested": n.requested, "expected": n.expected} for n in self.nsides
            },
            "tasks_done": self.tasks_done,
            "tasks_expected": self.tasks_expected,
            "rate_per_second": self.rate_per_second,
            "eta_seconds": self.eta_seconds,
            "dead_tasks": self.dead_tasks,
        }


@dataclass
class _Level:
    nside: int
    refine: int
    requested: set[int] = field(default_factory=set)
    seeds_done: dict[int, int] = field(default_factory=dict)  # pixel → settled seeds (a result, or given up)
    best: dict[int, PixelResult] = field(default_factory=dict)  # finished pixel → its best seed's result
    failed: set[int] = field(default_factory=set)  # finished pixels whose every seed was given up
    version: int = 0  # bumped whenever `best` or `failed` changes: what the refinement plan is memoised on

    @property
    def n_finished(self) -> int:
        return len(self.best) + len(self.failed)

    def unfinished(self, pixels: set[int]) -> set[int]:
        return pixels - self.best.keys() - self.failed


class SkyScan:
    """Pixel tasks out, results in, refinement in between. Not thread-safe: drive it from one task."""

    def __init__(
        self,
        event_ref: str,
        reco_algo: str,
        nsides: Mapping[int | str, int],
        n_seeds: int,
        *,
        reco_options: Mapping[str, RecoOption] | None = None,
        predictive_scanning_threshold: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < predictive_scanning_threshold <= 1.0:
            raise ValueError(f"predictive_scanning_threshold {predictive_scanning_threshold} is not in (0, 1]")
        if n_seeds < 1:
            raise ValueError(f"n_seeds {n_seeds} must be at least 1")
        self.event_ref = event_ref
        self.reco_algo = reco_algo
        self.reco_options = dict(reco_options or {})
        self.n_seeds = n_seeds
        self.threshold = predictive_scanning_threshold
        pairs = parse_nsides(nsides)
        self._levels = [_Level(nside, refine) for nside, refine in pairs]
        self._by_nside = {level.nside: level for level in self._levels}
        self._expected = expected_pixels(pairs)
        self._results: dict[tuple[int, int, int], PixelResult] = {}
        self._dead: set[tuple[int, int, int]] = set()
        self._unrequested_settled = False  # a seed of a pixel not requested was settled: see next_tasks
        self._wanted_cache: dict[int, tuple[tuple[int, ...], set[int] | None]] = {}
        self._clock = clock
        self._started = clock()
        self._received_since_start = 0

    @classmethod
    def from_results(
        cls,
        event_ref: str,
        reco_algo: str,
        nsides: Mapping[int | str, int],
        n_seeds: int,
        results: Iterable[PixelResult],
        *,
        published: Iterable[Sequence[int]] = (),
        dead: Iterable[Sequence[int]] = (),
        **kwargs: Any,
    ) -> SkyScan:
        """Rebuild a scan from the results it had received; `next_tasks()` then resends only what is missing.

        `published` (nside, pixel) pairs are still out (in the queue or with pilots): not sent again.
        `dead` (nside, pixel, seed) keys were given up before.
        """
        scan = cls(event_ref, reco_algo, nsides, n_seeds, **kwargs)
        for result in results:
            scan._check(result.event_ref, result.nside, result.pixel, result.seed)
            scan._record(result)
        for nside, pixel, seed in dead:
            scan._check(event_ref, nside, pixel, seed)
            scan._give_up((nside, pixel, seed))
        for nside, pixel, *_seed in published:  # [nside, pixel]; a seed, if recorded, changes nothing
            scan._check(event_ref, nside, pixel, 0)
            scan._by_nside[nside].requested.add(pixel)
        return scan

    @property
    def nsides(self) -> list[int]:
        return [level.nside for level in self._levels]

    @property
    def results(self) -> list[PixelResult]:
        """Every distinct result received, one per (nside, pixel, seed)."""
        return list(self._results.values())

    @property
    def dead_tasks(self) -> list[tuple[int, int, int]]:
        """Every (nside, pixel, seed) given up and not answered since, sorted."""
        return sorted(self._dead)

    @property
    def missing_pixels(self) -> list[tuple[int, int]]:
        """(nside, pixel) of every pixel whose seeds were all given up: requested, but not in the skymap."""
        return sorted((level.nside, pixel) for level in self._levels for pixel in level.failed)

    def next_tasks(self) -> list[PixelTask]:
        """Tasks not handed out before: new pixels the results so far call for, and any not finished on restart."""
        tasks: list[PixelTask] = []
        for index, level in enumerate(self._levels):
            wanted = self._wanted_pixels(index)
            if wanted is None:
                break
            new = sorted(wanted - level.requested)
            level.requested.update(new)
            tasks.extend(self._tasks(level.nside, new))
        tasks.extend(self._unfinished_tasks_after_restart())
        return tasks

    def add_result(self, result: PixelResult) -> bool:
        """Take one result; False if its (nside, pixel, seed) was already in (the duplicate is dropped).

        Raises `ScanError` for a result of another event, nside, seed range or pixel range.
        """
        self._check(result.event_ref, result.nside, result.pixel, result.seed)
        if result.key in self._results:
            return False
        self._record(result)
        self._received_since_start += 1
        return True

    def give_up(self, task: PixelTask) -> bool:
        """Settle a task without a result (it was dead-lettered); False if it was settled already.

        The scan goes on without it; a later result for it is still taken. Raises `ScanError` for a
        task of another event or out of range.
        """
        self._check(task.event_ref, task.nside, task.pixel, task.seed)
        return self._give_up(task.key)

    @property
    def done(self) -> bool:
        """Every requested pixel finished, and those results call for no further pixels.

        Asked after every result, so it first compares counts: fewer finished pixels than requested
        ones settles it without a set difference.
        """
        if any(level.n_finished < len(level.requested) for level in self._levels):
            return False
        if any(level.unfinished(level.requested) for level in self._levels):
            return False
        return all(
            (wanted := self._wanted_pixels(index)) is not None and wanted <= level.requested
            for index, level in enumerate(self._levels)
        )

    def best_fits(self) -> dict[int, dict[int, PixelResult]]:
        """For each nside, each finished pixel's best result (lowest llh over its seeds)."""
        return {level.nside: dict(level.best) for level in self._levels}

    def progress(self) -> Progress:
        nsides = [
            NsideProgress(level.nside, level.n_finished, len(level.requested), max(expected, len(level.requested)))
            for level, expected in zip(self._levels, self._expected, strict=True)
        ]
        tasks_expected = sum(n.expected for n in nsides) * self.n_seeds
        tasks_done = len(self._results) + len(self._dead)
        elapsed = self._clock() - self._started
        rate = self._received_since_start / elapsed if self._received_since_start and elapsed > 0 else None
        eta = max(tasks_expected - tasks_done, 0) / rate if rate else None
        return Progress(nsides, tasks_done, tasks_expected, rate, eta, len(self._dead))

    def _check(self, event_ref: str, nside: int, pixel: int, seed: int) -> None:
        """Refuse a result or task that cannot belong to this scan (`ScanError`)."""
        if event_ref != self.event_ref:
            raise ScanError(f"event {event_ref}, this scan is {self.event_ref}")
        if nside not in self._by_nside:
            raise ScanError(f"nside {nside}; this scan has {self.nsides}")
        if not 0 <= seed < self.n_seeds or not 0 <= pixel < npix(nside):
            raise ScanError(f"pixel {pixel} seed {seed}: out of range")

    def _record(self, result: PixelResult) -> None:
        """Store a checked result; a repeated key overwrites (a duplicate carries the same value)."""
        new = not self._settled(result.key)
        self._results[result.key] = result
        self._dead.discard(result.key)  # a late answer beats having given up
        self._count_and_settle(result.nside, result.pixel, new)

    def _give_up(self, key: tuple[int, int, int]) -> bool:
        if self._settled(key):
            return False
        self._dead.add(key)
        self._count_and_settle(key[0], key[1], True)
        return True

    def _settled(self, key: tuple[int, int, int]) -> bool:
        return key in self._results or key in self._dead

    def _count_and_settle(self, nside: int, pixel: int, new: bool) -> None:
        """Count a newly settled seed; once every seed is settled, the pixel is finished (best or failed)."""
        level = self._by_nside[nside]
        if new:
            level.seeds_done[pixel] = level.seeds_done.get(pixel, 0) + 1
            if pixel not in level.requested:
                self._unrequested_settled = True
        if level.seeds_done[pixel] < self.n_seeds:
            return
        before = (level.best.get(pixel), pixel in level.failed)
        seeds = [r for seed in range(self.n_seeds) if (r := self._results.get((nside, pixel, seed))) is not None]
        if seeds:
            level.best[pixel] = min(seeds, key=_llh_order)
            level.failed.discard(pixel)
        else:
            level.failed.add(pixel)
        if (level.best.get(pixel), pixel in level.failed) != before:
            level.version += 1

    def _wanted_pixels(self, index: int) -> set[int] | None:
        """The pixels level `index` should scan given the results so far; None while it cannot start.

        Memoised on the versions of the levels before `index` and on how many pixels the level before
        requested: nothing else the answer depends on can change without one of them changing.
        """
        parent_requested = [len(level.requested) for level in self._levels[index - 1 : index]]
        stamp = (*(level.version for level in self._levels[:index]), *parent_requested)
        cached = self._wanted_cache.get(index)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        wanted = self._plan_level(index)
        self._wanted_cache[index] = (stamp, wanted)
        return wanted

    def _plan_level(self, index: int) -> set[int] | None:
        level = self._levels[index]
        if index == 0:
            return set(range(npix(level.nside)))
        parent = self._levels[index - 1]
        finished = len(parent.requested) - len(parent.unfinished(parent.requested))
        if not parent.requested or finished < self.threshold * len(parent.requested):
            return None
        anchor = self._best_so_far(index)
        if anchor is None:
            return set()
        candidates = np.array(sorted(parent.best), dtype=np.int64)
        centres = pix2vec(parent.nside, candidates)
        closeness = np.einsum("kn,k->n", centres, pix2vec(anchor.nside, anchor.pixel))
        nearest = candidates[np.lexsort((candidates, -closeness))[: level.refine]]
        llhs = np.array([parent.best[p].llh for p in candidates])
        lowest = candidates[np.lexsort((candidates, np.nan_to_num(llhs, nan=np.inf)))[: level.refine]]
        chosen = np.union1d(nearest, lowest)
        return set(children(parent.nside, chosen, level.nside).tolist())

    def _best_so_far(self, index: int) -> PixelResult | None:
        """The finished pixel with the lowest llh on the levels before `index` (None if all failed)."""
        finished = [r for level in self._levels[:index] for r in level.best.values() if math.isfinite(r.llh)]
        return min(finished, key=lambda r: (r.llh, r.nside, r.pixel)) if finished else None

    def _unfinished_tasks_after_restart(self) -> list[PixelTask]:
        """Seeds missing for pixels that came back only partly (results known, but not handed out by this object).

        Such pixels only arise when a seed of a pixel not requested is settled (restored results, a
        predecessor's late answer); `next_tasks` runs once per result, so without one it looks no further.
        """
        if not self._unrequested_settled:
            return []
        self._unrequested_settled = False
        tasks: list[PixelTask] = []
        for level in self._levels:
            for pixel, seeds_done in level.seeds_done.items():
                if seeds_done < self.n_seeds and pixel not in level.requested:
                    level.requested.add(pixel)
                    missing = [s for s in range(self.n_seeds) if not self._settled((level.nside, pixel, s))]
                    tasks.extend(self._task(level.nside, pixel, seed) for seed in missing)
        return tasks

    def _tasks(self, nside: int, pixels: list[int]) -> list[PixelTask]:
        return [
            self._task(nside, pixel, seed)
            for pixel in pixels
            for seed in range(self.n_seeds)
            if not self._settled((nside, pixel, seed))
        ]

    def _task(self, nside: int, pixel: int, seed: int) -> PixelTask:
        return PixelTask(self.event_ref, self.reco_algo, nside, pixel, seed, dict(self.reco_options))


def _llh_order(result: PixelResult) -> tuple[bool, float]:
    """Sort key putting NaN llh (a failed fit) last."""
    return (math.isnan(result.llh), result.llh)
