"""Reconstructions: the registry, the pilot contract, dummy, crash_dummy and pandel_track."""

from __future__ import annotations

import math

import healpy  # type: ignore[import-untyped]
import numpy as np
import pytest

from skydriver.event import TrackSpec, simulate_track
from skydriver.event.coords import angular_distance, muon_direction
from skydriver.recos import (
    RECOS,
    EventMismatch,
    PixelResult,
    PixelTask,
    RecoCrash,
    get_reco_class,
    pixel_direction,
    run_pixel_task,
)
from skydriver.recos.dummy import DUMMY_KAPPA, CrashDummy, Dummy
from skydriver.recos.pandel_track import PandelTrack
from skydriver.recos.pixel import ring_pixel_angles

SPEC = TrackSpec(ra=1.2, dec=-0.4, energy_gev=4000.0, vertex_m=(30.0, -40.0, 20.0))


@pytest.fixture(scope="module")
def event():  # type: ignore[no-untyped-def]
    return simulate_track(SPEC, 7)


def test_registry_selects_by_reco_algo() -> None:
    assert set(RECOS) == {"dummy", "crash_dummy", "pandel_track"}
    assert get_reco_class("pandel_track") is PandelTrack
    with pytest.raises(ValueError, match="unknown reco_algo"):
        get_reco_class("millipede")


def test_messages_round_trip_as_small_json() -> None:
    task = PixelTask("run1.evt2.abc", "crash_dummy", 64, 1234, 2, {"failure_rate": 0.5})
    assert PixelTask.from_json(task.to_json()) == task
    assert len(task.to_json()) < 200
    plain = PixelTask("run1.evt2.abc", "dummy", 8, 5, 0)
    assert "reco_options" not in plain.to_dict() and PixelTask.from_dict(plain.to_dict()) == plain
    result = PixelResult("run1.evt2.abc", 8, 5, 0, 12.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.01)
    assert PixelResult.from_json(result.to_json()) == result


def test_run_pixel_task_is_the_pilot_contract(event) -> None:  # type: ignore[no-untyped-def]
    task = PixelTask(event.ref, "dummy", 8, 100, 0).to_dict()
    result = run_pixel_task(task, event.to_dict())
    assert (result["nside"], result["pixel"], result["seed"], result["event_ref"]) == (8, 100, 0, event.ref)
    ra, dec = pixel_direction(8, 100)
    assert result["llh"] == pytest.approx(Dummy(event).fit(ra, dec, 0).llh)
    other = simulate_track(SPEC, 8)
    with pytest.raises(EventMismatch):
        run_pixel_task(PixelTask(other.ref, "dummy", 8, 100, 0).to_dict(), event.to_dict())


def test_pixel_direction_is_healpy_ring_centre() -> None:
    ra, dec = pixel_direction(64, 20000)
    assert healpy.ang2pix(64, math.pi / 2 - dec, ra) == 20000


@pytest.mark.parametrize("nside", [1, 2, 4, 8, 32, 64, 512, 3, 12, 2**13, 2**29])
def test_ring_pixel_angles_are_healpys_to_the_bit(nside: int) -> None:
    """Without healpy in the pilot, a task's direction is still exactly healpy's (caps, belt, both poles)."""
    npix = 12 * nside * nside
    rng = np.random.default_rng(nside)
    edges = [0, 1, 2 * nside * (nside - 1) - 1, 2 * nside * (nside - 1), npix // 2, npix - 2 * nside * (nside - 1)]
    pixels = np.unique(np.concatenate([np.arange(min(npix, 3000)), rng.integers(0, npix, 3000), edges, [npix - 1]]))
    pixels = pixels[(pixels >= 0) & (pixels < npix)]
    theta, phi = healpy.pix2ang(nside, pixels)
    ours = np.array([ring_pixel_angles(nside, int(p)) for p in pixels])
    np.testing.assert_array_equal(ours[:, 0], theta)
    np.testing.assert_array_equal(ours[:, 1], phi)
    with pytest.raises(ValueError, match=f"no pixel {npix} at nside {nside}"):
        ring_pixel_angles(nside, npix)


def test_dummy_minimum_and_shape(event) -> None:  # type: ignore[no-untyped-def]
    dummy = Dummy(event)
    ra0, dec0 = dummy.minimum
    assert dummy.fit(ra0, dec0, 0).llh == pytest.approx(0.0, abs=1e-9)
    off = dummy.fit(ra0, dec0 + 0.1, 0).llh
    assert off == pytest.approx(DUMMY_KAPPA * (1 - math.cos(0.1)))
    # the line fit is a crude estimate of the true direction, but not a random one
    assert angular_distance(ra0, dec0, SPEC.ra, SPEC.dec) < math.radians(45)


def test_crash_dummy_fails_at_its_rate(event) -> None:  # type: ignore[no-untyped-def]
    reco = CrashDummy(event, {"failure_rate": 0.3, "random_seed": 1})
    failures = 0
    for _ in range(2000):
        try:
            reco.fit(1.0, 0.0, 0)
        except RecoCrash:
            failures += 1
    assert 0.25 < failures / 2000 < 0.35  # binomial sd 0.01
    assert all(CrashDummy(event, {"failure_rate": 0.0}).fit(1.0, 0.0, 0) for _ in range(100))
    with pytest.raises(ValueError, match="failure_rate"):
        CrashDummy(event, {"failure_rate": 2})


def test_crash_dummy_always_fails_a_known_set_of_directions(event) -> None:  # type: ignore[no-untyped-def]
    reco = CrashDummy(event, {"failure_rate": 0.0, "always_fail_every": 97})
    for nside, pixel in [(8, 0), (8, 97), (8, 679), (32, 16 * 97 + 5)]:  # nside-8 pixels 0, 97, 679 and a child
        ra, dec = pixel_direction(nside, pixel)
        ring8 = healpy.ang2pix(8, math.pi / 2 - dec, ra)
        for _ in range(3):  # every attempt
            if ring8 % 97 == 0:
                with pytest.raises(RecoCrash, match="always_fail_every"):
                    reco.fit(ra, dec, 0)
            else:
                assert reco.fit(ra, dec, 0)
    assert reco.fit(*pixel_direction(8, 1), 0)
    for bad in (0, -3, 1.5, True, "7"):
        with pytest.raises(ValueError, match="always_fail_every"):
            CrashDummy(event, {"always_fail_every": bad})


def test_pandel_track_fits_the_simulated_track(event) -> None:  # type: ignore[no-untyped-def]
    reco = PandelTrack(event)
    truth = [reco.fit(SPEC.ra, SPEC.dec, seed) for seed in range(reco.n_seeds)]
    best = min(truth, key=lambda out: out.llh)
    # the fitted track passes near the true one: distance of the true vertex from the fitted line
    direction = muon_direction(SPEC.ra, SPEC.dec, event.mjd)
    offset = np.array(SPEC.vertex_m) - np.array([best.X, best.Y, best.Z])
    assert np.linalg.norm(offset - (offset @ direction) * direction) < 10.0
    assert 0.5 < best.E_tot / SPEC.energy_gev < 2.0
    assert 0 < best.E_in < best.E_tot
    # directions away from the truth are worse, more so further away
    far = [min(reco.fit(SPEC.ra, SPEC.dec + math.radians(d), s).llh for s in range(reco.n_seeds)) for d in (2.0, 10.0)]
    assert best.llh < far[0] < far[1]


def test_pandel_track_is_deterministic_and_checks_its_seed(event) -> None:  # type: ignore[no-untyped-def]
    reco = PandelTrack(event)
    assert reco.fit(1.0, 0.2, 1) == reco.fit(1.0, 0.2, 1)
    with pytest.raises(ValueError, match="seed"):
        reco.fit(1.0, 0.2, reco.n_seeds)
