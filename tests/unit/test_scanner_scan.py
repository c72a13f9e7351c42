"""SkyScan as a restarted scanner uses it: tasks still out are not sent twice, dead-lettered tasks are given up."""

from __future__ import annotations

from collections.abc import Collection

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest

from skydriver.event import Event, TrackSpec, simulate_track
from skydriver.recos import PixelResult, PixelTask, run_pixel_task
from skydriver.recos.dummy import Dummy
from skydriver.scanner.result import skymap
from skydriver.scanner.scan import ScanError, SkyScan

NSIDES: dict[int | str, int] = {8: 0, 32: 4, 128: 6}
Key = tuple[int, int, int]


@pytest.fixture(scope="module")
def event() -> Event:
    return simulate_track(TrackSpec(ra=1.0, dec=-0.3, energy_gev=2000.0), 5)


def _run(event: Event, tasks: list[PixelTask]) -> list[PixelResult]:
    return [PixelResult.from_dict(run_pixel_task(t.to_dict(), event)) for t in tasks]


def _drive(scan: SkyScan, event: Event, doomed: Collection[Key] = ()) -> SkyScan:
    """Answer every task, except that those in `doomed` come back from the dead-letter queue."""
    while not scan.done:
        tasks = scan.next_tasks()
        assert tasks, "a scan that is not done must have work out"
        for task in tasks:
            if task.key in doomed:
                assert scan.give_up(task)
        for result in _run(event, [t for t in tasks if t.key not in doomed]):
            scan.add_result(result)
    return scan


def _rows(scan: SkyScan) -> dict[int, list[tuple[int, float]]]:
    return {nside: sorted((p, r.llh) for p, r in fits.items()) for nside, fits in scan.best_fits().items()}


def _best_pixel(event: Event, nside: int) -> int:
    ra, dec = Dummy(event).minimum
    return int(healpy.ang2pix(nside, np.pi / 2 - dec, ra))


def test_restart_does_not_resend_what_is_still_in_the_queue(event: Event) -> None:
    reference = _drive(SkyScan(event.ref, "dummy", NSIDES, 2), event)
    first = SkyScan(event.ref, "dummy", NSIDES, 2)
    published: list[tuple[int, int]] = []
    in_queue: list[PixelTask] = []
    answered: list[PixelResult] = []
    for _ in range(2):  # the whole first level, then part of the second
        tasks = first.next_tasks()
        published += sorted({(t.nside, t.pixel) for t in tasks})
        done, in_queue = tasks[:-5], in_queue + tasks[-5:]  # five per round still sit in the queue
        for result in _run(event, done):
            first.add_result(result)
            answered.append(result)
    restarted = SkyScan.from_results(event.ref, "dummy", NSIDES, 2, answered, published=published)
    assert restarted.next_tasks() == []  # everything unanswered is still out
    for result in _run(event, in_queue):  # the pilots get to the queued tasks after all
        restarted.add_result(result)
    _drive(restarted, event)
    assert _rows(restarted) == _rows(reference)


def test_a_restart_without_the_published_set_sends_the_missing_tasks_again(event: Event) -> None:
    first = SkyScan(event.ref, "dummy", NSIDES, 2)
    tasks = first.next_tasks()
    answered = _run(event, tasks[:-3])
    restarted = SkyScan.from_results(event.ref, "dummy", NSIDES, 2, answered)
    assert {t.key for t in restarted.next_tasks()} == {t.key for t in tasks[-3:]}


def test_one_dead_seed_leaves_the_other_seeds_result(event: Event) -> None:
    best = _best_pixel(event, 8)
    scan = _drive(SkyScan(event.ref, "dummy", NSIDES, 2), event, doomed={(8, best, 1)})
    assert scan.best_fits()[8][best].seed == 0
    assert scan.dead_tasks == [(8, best, 1)] and scan.missing_pixels == []
    progress = scan.progress()
    assert progress.dead_tasks == 1 and progress.fraction == 1.0
    assert progress.to_dict()["dead_tasks"] == 1


def test_a_pixel_with_every_seed_dead_is_missing_and_the_scan_goes_on(event: Event) -> None:
    best = _best_pixel(event, 8)
    doomed = {(8, best, 0), (8, best, 1)}
    scan = _drive(SkyScan(event.ref, "dummy", NSIDES, 2), event, doomed=doomed)
    assert scan.done and scan.missing_pixels == [(8, best)]
    assert best not in scan.best_fits()[8]
    assert best not in {row[0] for row in skymap(scan.best_fits(), event)["nside-8"]["data"]}
    assert scan.best_fits()[32] and scan.best_fits()[128]  # refinement went on around the next best pixels
    assert scan.progress().nsides[0].done == 768  # the failed pixel counts as finished


def test_a_late_result_for_a_dead_task_is_taken(event: Event) -> None:
    scan = SkyScan(event.ref, "dummy", NSIDES, 1)
    task = scan.next_tasks()[0]
    assert scan.give_up(task) and not scan.give_up(task)
    assert scan.missing_pixels == [(task.nside, task.pixel)]
    (result,) = _run(event, [task])
    assert scan.add_result(result)
    assert scan.dead_tasks == [] and scan.missing_pixels == []
    assert scan.best_fits()[8][task.pixel] == result
    assert not scan.give_up(task)  # answered: nothing to give up


def test_dead_tasks_are_restored_and_not_sent_again(event: Event) -> None:
    scan = SkyScan(event.ref, "dummy", NSIDES, 2)
    tasks = scan.next_tasks()
    dead = [(8, 5, 0), (8, 5, 1), (8, 6, 1)]
    answered = _run(event, [t for t in tasks if t.key not in dead][:-4])
    restarted = SkyScan.from_results(event.ref, "dummy", NSIDES, 2, answered, dead=dead)
    resent = {t.key for t in restarted.next_tasks()}
    assert len(resent) == 4 and not resent & set(dead)
    assert restarted.missing_pixels == [(8, 5)] and restarted.dead_tasks == dead


def test_foreign_tasks_and_published_pixels_are_refused(event: Event) -> None:
    scan = SkyScan(event.ref, "dummy", NSIDES, 1)
    for bad in (PixelTask("other", "dummy", 8, 3, 0), PixelTask(event.ref, "dummy", 16, 3, 0)):
        with pytest.raises(ScanError):
            scan.give_up(bad)
    with pytest.raises(ScanError):
        SkyScan.from_results(event.ref, "dummy", NSIDES, 1, [], published=[(8, 768)])
    with pytest.raises(ScanError):
        SkyScan.from_results(event.ref, "dummy", NSIDES, 1, [], dead=[(64, 0, 0)])


def test_a_late_result_for_a_dead_pixel_is_refined_around(event: Event) -> None:
    """The refinement plan follows a pixel that came back after it was given up (it was memoised before)."""
    scan = SkyScan(event.ref, "dummy", {1: 0, 2: 1}, 1)
    sky = scan.next_tasks()
    for task in sky:
        if task.pixel == 5:
            assert scan.give_up(task)
        else:
            scan.add_result(PixelResult(event.ref, 1, task.pixel, 0, 10.0 + task.pixel, 0, 0, 0, 0, 0, 0, 0.0))
    before = {t.pixel for t in scan.next_tasks()}
    scan.add_result(PixelResult(event.ref, 1, 5, 0, 1.0, 0, 0, 0, 0, 0, 0, 0.0))  # the best pixel, late
    after = {t.pixel for t in scan.next_tasks()}
    assert after and not after & before  # its sub-pixels are new work
    assert scan.missing_pixels == [] and not scan.done
