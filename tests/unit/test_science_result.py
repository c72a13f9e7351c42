"""Skymaps: icecube-skyreader reads them, contour areas are right, plots are drawn."""

from __future__ import annotations

import json
import math
from pathlib import Path

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest
import skyreader  # type: ignore[import-untyped]

from skydriver.event import Event, TrackSpec, simulate_track
from skydriver.recos import PixelResult
from skydriver.recos.dummy import DUMMY_KAPPA
from skydriver.scanner.executor import ScanConfig, run_scan
from skydriver.scanner.plots import plot_full_sky, plot_zoom
from skydriver.scanner.result import MultiResolutionMap, skymap, wilks_delta_llh

FULL_SKY_SQDEG = 4 * math.pi * (180 / math.pi) ** 2


@pytest.fixture(scope="module")
def event() -> Event:
    return simulate_track(TrackSpec(ra=5.0, dec=-0.7, energy_gev=2000.0), 41)


@pytest.fixture(scope="module")
def fits(event: Event) -> dict[int, dict[int, PixelResult]]:
    return run_scan(event, ScanConfig("dummy", {8: 0, 64: 12, 256: 40})).best_fits()


def test_skyreader_reads_the_skymap(event: Event, fits: dict[int, dict[int, PixelResult]]) -> None:
    doc = json.loads(json.dumps(skymap(fits, event)))  # through JSON, as it is stored and sent
    result = skyreader.SkyScanResult.deserialize(doc)
    ours = MultiResolutionMap(fits).best
    assert result.nsides == [8, 64, 256]
    assert int(result.best_fit["index"]) == ours.pixel and float(result.min_llh) == pytest.approx(ours.llh)
    ra, dec = result.best_dir
    assert (float(ra), float(dec)) == pytest.approx((ours.ra, ours.dec))
    metadata = result.get_event_metadata()
    assert (metadata.run_id, metadata.event_id, metadata.event_type, metadata.is_real_event) == (
        event.run_id,
        event.event_id,
        event.event_type,
        False,
    )
    assert result.get_results_per_nside(64).size == len(fits[64]) >= 12 * 64
    # skyreader's own lookup of the finest pixel agrees with ours
    probe_ra, probe_dec = ours.ra + 0.01, ours.dec - 0.005
    assert float(result.llh(probe_ra, probe_dec)[0]) == pytest.approx(
        float(MultiResolutionMap(fits).llh_at(probe_ra, probe_dec))
    )
    # every row arrives intact (skyreader's serialize() cannot be used for a round trip: version 1.6.3 calls
    # DataFrame.applymap, which pandas 3 removed)
    for key, entry in doc.items():
        rows = result.get_results_per_nside(int(key.split("-")[1]))
        np.testing.assert_allclose([list(row) for row in rows], np.array(entry["data"], dtype=float))


def test_real_event_metadata_passes_skyreader_checks(event: Event, fits: dict[int, dict[int, PixelResult]]) -> None:
    doc = skymap(fits, event)
    for entry in doc.values():
        entry["metadata"].update(run_id=123456, is_real_event=True)
    assert skyreader.SkyScanResult.deserialize(doc).get_event_metadata().run_id == 123456


def test_wilks_thresholds() -> None:
    assert wilks_delta_llh(0.5) == pytest.approx(math.log(2))
    assert 2 * wilks_delta_llh(0.9) == pytest.approx(4.605, abs=1e-3)  # chi-square(2) 90% quantile


def test_dummy_contour_areas_match_the_analytic_caps(fits: dict[int, dict[int, PixelResult]]) -> None:
    summary = MultiResolutionMap(fits).summary()
    for containment, area in ((0.5, summary.area_50_sqdeg), (0.9, summary.area_90_sqdeg)):
        cap = 2 * math.pi * wilks_delta_llh(containment) / DUMMY_KAPPA * (180 / math.pi) ** 2
        assert area == pytest.approx(cap, rel=0.05)


def _fit(nside: int, pixel: int, llh: float) -> PixelResult:
    return PixelResult("ref", nside, pixel, 0, llh, 0, 0, 0, 0, 0, 0, 0.0)


def test_area_counts_each_region_at_its_finest_resolution() -> None:
    coarse = {p: _fit(1, p, 0.0) for p in range(12)}  # the whole sky inside every contour ...
    refined_parent = 4
    sub = healpy.nest2ring(4, healpy.ring2nest(1, refined_parent) * 16 + np.arange(16))
    fine = {int(p): _fit(4, int(p), 0.0 if i < 4 else 10.0) for i, p in enumerate(sub)}  # ... but 12/16 of one pixel
    sky = MultiResolutionMap({1: coarse, 4: fine})
    assert sky.area_below(1.0) == pytest.approx(FULL_SKY_SQDEG * (1 - 12 / 16 / 12))
    assert sky.area_below(20.0) == pytest.approx(FULL_SKY_SQDEG)
    theta, phi = healpy.pix2ang(4, int(sub[10]))
    assert float(sky.llh_at(phi, np.pi / 2 - theta)) == 10.0


def test_plots_are_png_files(event: Event, fits: dict[int, dict[int, PixelResult]], tmp_path: Path) -> None:
    sky = MultiResolutionMap(fits)
    truth = (event.truth.ra, event.truth.dec) if event.truth else None
    for draw, name in ((plot_full_sky, "full.png"), (plot_zoom, "zoom.png")):
        path = draw(sky, tmp_path / name, "test", truth)
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
