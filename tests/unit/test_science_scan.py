"""The scan core: refinement, known minima, any order, duplicates, restarts, predictive scanning, progress."""

from __future__ import annotations

import itertools
import random

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest

from skydriver.event import Event, TrackSpec, simulate_track
from skydriver.recos import PixelResult, PixelTask, run_pixel_task
from skydriver.recos.dummy import Dummy
from skydriver.scanner.pixels import children, parse_nsides
from skydriver.scanner.scan import ScanError, SkyScan

NSIDES = {8: 0, 32: 6, 128: 10}


@pytest.fixture(scope="module")
def event() -> Event:
    return simulate_track(TrackSpec(ra=4.0, dec=0.5, energy_gev=3000.0), 31)


def _run(event: Event, tasks: list[PixelTask]) -> list[PixelResult]:
    return [PixelResult.from_dict(run_pixel_task(t.to_dict(), event)) for t in tasks]


def _drive(scan: SkyScan, event: Event, order_seed: int | None = None, duplicates: bool = False) -> SkyScan:
    """Answer every task the scan hands out, optionally shuffled and with every result delivered twice."""
    shuffle = random.Random(order_seed)
    while not scan.done:
        tasks = scan.next_tasks()
        assert tasks, "a scan that is not done must have work out"
        results = _run(event, tasks)
        if duplicates:
            results += results
        if order_seed is not None:
            shuffle.shuffle(results)
        for result in results:
            scan.add_result(result)
    return scan


def _skymap_rows(scan: SkyScan) -> dict[int, list[tuple[int, float]]]:
    return {nside: sorted((p, r.llh) for p, r in fits.items()) for nside, fits in scan.best_fits().items()}


def test_children_agree_with_healpy_geometry() -> None:
    parents = np.array([0, 17, 700])
    subpixels = children(8, parents, 64)
    assert subpixels.size == 3 * 64 and np.unique(subpixels).size == subpixels.size
    theta, phi = healpy.pix2ang(64, subpixels)
    np.testing.assert_array_equal(np.sort(np.unique(healpy.ang2pix(8, theta, phi))), parents)


def test_nsides_are_validated() -> None:
    assert parse_nsides({"64": 12, "8": 0}) == [(8, 0), (64, 12)]
    for bad in ({12: 0}, {8: 0, 64: 0}, {}, {8: 0, 64: -1}):
        with pytest.raises(ValueError, match="nsides"):
            parse_nsides(bad)


def test_dummy_scan_finds_the_known_minimum_at_every_nside(event: Event) -> None:
    scan = _drive(SkyScan(event.ref, "dummy", NSIDES, 1), event)
    ra0, dec0 = Dummy(event).minimum
    target = healpy.ang2vec(np.pi / 2 - dec0, ra0)
    for nside, fits in scan.best_fits().items():
        best = min(fits.values(), key=lambda r: r.llh).pixel
        centres = np.array(healpy.pix2vec(nside, np.arange(12 * nside**2))).T
        nearest = int(np.argmax(centres @ target))  # over the whole sky, not just what was scanned
        assert best == nearest, f"nside {nside}"


def test_refinement_subdivides_the_pixels_around_the_best_fit(event: Event) -> None:
    scan = _drive(SkyScan(event.ref, "dummy", NSIDES, 1), event)
    fits = scan.best_fits()
    levels = parse_nsides(NSIDES)
    for index, ((coarse, _), (fine, count)) in enumerate(itertools.pairwise(levels)):
        so_far = [r for nside, _ in levels[: index + 1] for r in fits[nside].values()]
        best = min(so_far, key=lambda r: r.llh)
        anchor = healpy.pix2vec(best.nside, best.pixel)
        scanned_coarse = np.array(sorted(fits[coarse]))
        distance = np.arccos(np.clip(np.array(healpy.pix2vec(coarse, scanned_coarse)).T @ anchor, -1, 1))
        nearest = set(scanned_coarse[np.argsort(distance, kind="stable")[:count]].tolist())
        lowest = {r.pixel for r in sorted(fits[coarse].values(), key=lambda r: (r.llh, r.pixel))[:count]}
        chosen = nearest | lowest
        assert best.pixel in chosen or best.nside != coarse
        scanned = np.array(sorted(fits[fine]))
        assert scanned.size == len(chosen) * (fine // coarse) ** 2
        theta, phi = healpy.pix2ang(fine, scanned)
        assert set(healpy.ang2pix(coarse, theta, phi).tolist()) == chosen  # each fine pixel inside a chosen one
        parent_nest = healpy.ring2nest(fine, scanned) >> (2 * int(np.log2(fine // coarse)))
        assert set(healpy.nest2ring(coarse, parent_nest).tolist()) == chosen  # the NESTED relation agrees
        ra, dec = Dummy(event).minimum
        assert healpy.ang2pix(fine, np.pi / 2 - dec, ra) in set(scanned.tolist())  # the minimum is refined


def test_results_in_any_order_and_duplicates_give_the_same_skymap(event: Event) -> None:
    straight = _drive(SkyScan(event.ref, "dummy", NSIDES, 1), event)
    shuffled = _drive(SkyScan(event.ref, "dummy", NSIDES, 1), event, order_seed=3, duplicates=True)
    assert _skymap_rows(shuffled) == _skymap_rows(straight)
    assert len(shuffled.results) == len(straight.results)


def test_restart_from_partial_results_finishes_with_the_same_result(event: Event) -> None:
    reference = _drive(SkyScan(event.ref, "dummy", NSIDES, 2), event)  # two seeds: partial pixels happen
    first = SkyScan(event.ref, "dummy", NSIDES, 2)
    kept: list[PixelResult] = []
    for _ in range(2):  # the whole first level, then part of the second
        tasks = first.next_tasks()
        answered = _run(event, tasks[: len(tasks) - 7])  # a few tasks were out when the scanner died
        kept += answered
        for result in answered:
            first.add_result(result)
    restarted = SkyScan.from_results(event.ref, "dummy", NSIDES, 2, kept)
    resent = restarted.next_tasks()
    assert not {t.key for t in resent} & {r.key for r in kept}  # finished work is not redone
    for result in _run(event, resent):
        restarted.add_result(result)
    _drive(restarted, event)
    assert _skymap_rows(restarted) == _skymap_rows(reference)


def test_predictive_scanning_starts_early_and_tops_up(event: Event) -> None:
    scan = SkyScan(event.ref, "dummy", NSIDES, 1, predictive_scanning_threshold=0.5)
    first = scan.next_tasks()
    ra0, dec0 = Dummy(event).minimum
    near_minimum = healpy.ang2pix(8, np.pi / 2 - dec0, ra0)
    # half the sky arrives first, without the pixels around the minimum
    far_first = sorted(first, key=lambda t: -abs(t.pixel - near_minimum))
    for result in _run(event, far_first[: len(first) // 2]):
        scan.add_result(result)
    early = scan.next_tasks()
    assert early and {t.nside for t in early} == {32}  # the next nside started at 50%
    for result in _run(event, far_first[len(first) // 2 :] + early):
        scan.add_result(result)
    _drive(scan, event)
    full = _drive(SkyScan(event.ref, "dummy", NSIDES, 1), event)
    for nside, fits in full.best_fits().items():
        assert set(fits) <= set(scan.best_fits()[nside])  # nothing a full wait would refine is missing


def test_progress_counts_and_estimates(event: Event) -> None:
    now = [0.0]
    scan = SkyScan(event.ref, "dummy", NSIDES, 1, clock=lambda: now[0])
    progress = scan.progress()
    assert [n.expected for n in progress.nsides] == [768, 6 * 16, 10 * 16]
    assert progress.tasks_done == 0 and progress.rate_per_second is None
    tasks = scan.next_tasks()
    for result in _run(event, tasks[:100]):
        scan.add_result(result)
    now[0] = 10.0
    progress = scan.progress()
    assert progress.nsides[0].done == 100 and progress.nsides[0].requested == 768
    assert progress.rate_per_second == pytest.approx(10.0)
    assert progress.eta_seconds == pytest.approx((768 + 96 + 160 - 100) / 10.0)
    assert progress.to_dict()["nsides"]["8"] == {"done": 100, "requested": 768, "expected": 768}


def test_foreign_results_are_refused(event: Event) -> None:
    scan = SkyScan(event.ref, "dummy", NSIDES, 1)
    good = PixelResult(event.ref, 8, 3, 0, 1.0, 0, 0, 0, 0, 0, 0, 0.0)
    assert scan.add_result(good) and not scan.add_result(good)
    for bad in (
        PixelResult("other", 8, 3, 0, 1.0, 0, 0, 0, 0, 0, 0, 0.0),
        PixelResult(event.ref, 16, 3, 0, 1.0, 0, 0, 0, 0, 0, 0, 0.0),
        PixelResult(event.ref, 8, 3, 1, 1.0, 0, 0, 0, 0, 0, 0, 0.0),
    ):
        with pytest.raises(ScanError):
            scan.add_result(bad)
