"""Events: geometry, the JSON format and its schema, the light model, the simulator."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from scipy import special, stats  # type: ignore[import-untyped]

from skydriver.event import Event, EventFormatError, TrackSpec, event_schema, ice, icecube_like, simulate_track
from skydriver.event.coords import angular_distance, local_to_sky, muon_direction, sky_to_local


def test_geometry_is_icecube_like() -> None:
    geometry = icecube_like()
    assert geometry.n_strings == 86 and geometry.oms_per_string == 60 and geometry.n_oms == 5160
    np.testing.assert_allclose(geometry.positions.mean(axis=0), 0.0, atol=1e-9)  # centred
    grid, dense = geometry.string_xy[:78], geometry.string_xy[78:]
    distances = np.hypot(*(grid[:, None, :] - grid[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distances, np.inf)
    np.testing.assert_allclose(distances.min(axis=1), 125.0)  # every grid string has a neighbour at 125 m
    assert dense.shape == (8, 2) and np.hypot(*dense.T).max() < 125.0  # the dense strings are central ...
    all_distances = np.hypot(*(dense[:, None, :] - geometry.string_xy[None, :, :]).transpose(2, 0, 1))
    all_distances[all_distances == 0] = np.inf
    assert all_distances.min() < 125.0  # ... and denser than the grid
    np.testing.assert_allclose(-np.diff(geometry.om_z), 17.0)
    string, om = geometry.string_and_om(np.arange(geometry.n_oms))
    np.testing.assert_array_equal(geometry.om_index(string, om), np.arange(geometry.n_oms))
    with pytest.raises(ValueError, match="outside"):
        geometry.om_index([87], [1])


def test_sky_and_detector_directions_round_trip() -> None:
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 2 * np.pi, 100), np.arcsin(rng.uniform(-1, 1, 100))
    zenith, azimuth = sky_to_local(ra, dec, 60123.4)
    back_ra, back_dec = local_to_sky(zenith, azimuth, 60123.4)
    np.testing.assert_allclose(angular_distance(ra, dec, back_ra, back_dec), 0.0, atol=1e-9)
    # at the South Pole a source at dec = -90 deg is overhead: its muon goes straight down
    np.testing.assert_allclose(muon_direction(1.0, -np.pi / 2, 60000.0), [0, 0, -1], atol=1e-12)


def test_simulator_is_reproducible_by_seed() -> None:
    spec = TrackSpec(ra=1.0, dec=-0.3, energy_gev=3000.0, vertex_m=(10.0, -20.0, 30.0))
    first, again, other = simulate_track(spec, 11), simulate_track(spec, 11), simulate_track(spec, 12)
    assert first.to_json() == again.to_json()
    assert first.ref == again.ref != other.ref
    assert first.n_pulses > 50  # a 3 TeV track through the centre lights up the detector


def test_event_json_round_trip_and_schema() -> None:
    event = simulate_track(TrackSpec(ra=2.0, dec=0.4, energy_gev=2000.0), 3)
    doc = json.loads(event.to_json())
    again = Event.from_dict(doc)
    assert again.ref == event.ref and again.truth == event.truth
    np.testing.assert_array_equal(again.om_index, event.om_index)
    assert event_schema()["properties"]["format_version"]["const"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("mjd"), "mjd"),
        (lambda d: d["pulses"]["charge_pe"].append(1.0), "differ in length"),
        (lambda d: d["pulses"]["string"].__setitem__(0, 99), "outside"),
        (lambda d: d.__setitem__("geometry", "km3net"), "geometry"),
        (lambda d: d.__setitem__("readout_window_ns", [5.0, 1.0]), "not after"),
        (lambda d: d["truth"].__setitem__("topology", "cascade"), "truth/topology"),
        (lambda d: d["pulses"]["charge_pe"].__setitem__(0, 0.0), "pulses/charge_pe/0: 0.0 is less than or equal"),
        (lambda d: d["pulses"]["om"].__setitem__(1, True), "pulses/om/1: True is not of type 'integer'"),
        (lambda d: d["pulses"]["string"].__setitem__(2, 0), "pulses/string/2: 0 is less than the minimum of 1"),
        (lambda d: d["pulses"]["time_ns"].__setitem__(3, "7"), "pulses/time_ns/3: '7' is not of type 'number'"),
    ],
)
def test_invalid_events_are_refused_with_a_reason(change: object, message: str) -> None:
    doc = json.loads(simulate_track(TrackSpec(ra=2.0, dec=0.4, energy_gev=1000.0), 4).to_json())
    broken = copy.deepcopy(doc)
    change(broken)  # type: ignore[operator]
    with pytest.raises(EventFormatError, match=message):
        Event.from_dict(broken)


def test_pulse_columns_follow_json_schema_number_rules() -> None:
    """Columns are checked whole, not number by number; what JSON Schema accepts still loads (1.0 is an integer)."""
    doc = json.loads(simulate_track(TrackSpec(ra=2.0, dec=0.4, energy_gev=1000.0), 4).to_json())
    doc["pulses"]["string"][0] = float(doc["pulses"]["string"][0])
    doc["pulses"]["time_ns"][0] = int(doc["pulses"]["time_ns"][0])
    event = Event.from_dict(doc)
    assert event.n_pulses == len(doc["pulses"]["om"])


def _convolved_pandel_reference(delay: float, shape: float) -> float:
    """The Pandel (gamma) density smeared by a Gaussian, in closed form via the parabolic-cylinder function."""
    rate, sigma = ice.PANDEL_RATE_PER_NS, ice.JITTER_NS
    eta = rate * sigma - delay / sigma
    cylinder, _ = special.pbdv(-shape, eta)
    log_density = (
        shape * np.log(rate)
        + (shape - 1) * np.log(sigma)
        - delay**2 / (2 * sigma**2)
        - 0.5 * np.log(2 * np.pi)
        + eta**2 / 4
        + np.log(cylinder)
    )
    return float(np.exp(log_density))


@pytest.mark.parametrize("shape", [0.1, 0.5, 1.0, 2.5, 6.0])
def test_tabulated_delay_density_matches_the_closed_form(shape: float) -> None:
    delays = np.array([-20.0, -5.0, 0.0, 4.0, 15.0, 60.0, 150.0, 290.0])  # |eta| small enough for pbdv
    density, _, _ = ice.delay_density(delays, np.full(delays.shape, shape))
    expected = [_convolved_pandel_reference(t, shape) for t in delays]
    np.testing.assert_allclose(density, expected, rtol=5e-3)


def test_delay_density_gradient_is_that_of_the_interpolant() -> None:
    rng = np.random.default_rng(5)
    delays, shapes = rng.uniform(-30, 3000, 50), rng.uniform(0, 8, 50)
    _, d_delay, d_shape = ice.delay_density(delays, shapes)
    step = 1e-5
    numeric_delay = (ice.delay_density(delays + step, shapes)[0] - ice.delay_density(delays - step, shapes)[0]) / (
        2 * step
    )
    numeric_shape = (ice.delay_density(delays, shapes + step)[0] - ice.delay_density(delays, shapes - step)[0]) / (
        2 * step
    )
    np.testing.assert_allclose(d_delay, numeric_delay, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(d_shape, numeric_shape, rtol=1e-4, atol=1e-12)


def test_simulated_delays_follow_the_density_the_likelihood_uses() -> None:
    """Draw delays at one distance and compare their histogram with the tabulated density (chi-square)."""
    rng = np.random.default_rng(8)
    distance = 25.0
    delays = ice.draw_delays_ns(rng, np.full(20000, distance))
    edges = np.concatenate((np.linspace(-30, 300, 34), [600.0, 1500.0, 10000.0]))
    observed, _ = np.histogram(delays, edges)
    fine = np.linspace(edges[0], edges[-1], 400001)
    density, _, _ = ice.delay_density(fine, np.full(fine.shape, ice.pandel_shape(np.array(distance))))
    cumulative = np.concatenate(([0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(fine))))
    expected = np.diff(np.interp(edges, fine, cumulative)) * delays.size
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(statistic, edges.size - 2) > 1e-3


def test_charge_falls_with_distance() -> None:
    event = simulate_track(TrackSpec(ra=0.5, dec=-1.2, energy_gev=5000.0), 21)
    direction = muon_direction(0.5, -1.2, event.mjd)
    positions = event.geometry.positions
    along = positions @ direction
    distance = np.linalg.norm(positions - np.outer(along, direction), axis=1)
    charge = np.bincount(event.om_index, weights=event.charge_pe, minlength=event.geometry.n_oms)
    near, far = charge[distance < 40].mean(), charge[(distance > 100) & (distance < 200)].mean()
    assert near > 10 * far > 0
