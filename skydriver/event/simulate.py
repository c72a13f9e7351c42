"""Simulate muon-track events from the same light model the reconstruction fits (`ice.py`).

Because simulation and likelihood share one model, the true direction of a simulated event is
known exactly and a skymap's contours can be checked for coverage (`bench/coverage.py`).

Everything random comes from one `numpy.random.Generator` seeded by the caller: the same seed
gives the same event, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ice
from .coords import muon_direction
from .geometry import Geometry, icecube_like
from .model import Event, FloatArray, IntArray, Topology, Truth

READOUT_WINDOW_NS = (0.0, 20000.0)
TRACK_TIME_NS = 10000.0  # when the muon is at its vertex: mid-window, so all its light is read out
SPE_CHARGE_SHAPE = 10.0  # single-photoelectron charge ~ Gamma(10, 0.1): mean 1 pe, spread 0.32 pe
SIMULATED_EVENT_TYPE = "simulated-track"


@dataclass(frozen=True)
class TrackSpec:
    """What to simulate: the source direction on the sky and the muon."""

    ra: float
    dec: float
    energy_gev: float
    vertex_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    topology: Topology = "through-going"
    mjd: float = 60000.0


def simulate_track(
    spec: TrackSpec,
    seed: int,
    *,
    run_id: int = 1,
    event_id: int | None = None,
    geometry: Geometry | None = None,
) -> Event:
    """Draw the pulses of one muon track: Poisson photons per module, Pandel delays, noise hits."""
    geometry = geometry or icecube_like()
    rng = np.random.default_rng(seed)
    direction = muon_direction(spec.ra, spec.dec, spec.mjd)
    offsets = geometry.positions - np.asarray(spec.vertex_m)
    longitudinal = offsets @ direction
    distance = np.linalg.norm(offsets - np.outer(longitudinal, direction), axis=1)
    expected = ice.light_yield(spec.energy_gev) * ice.expected_photons_per_yield(distance)
    if spec.topology == "starting":  # no light from before the start: the emission point must be on the track
        expected = np.where(longitudinal - distance / ice.TAN_CHERENKOV >= 0, expected, 0.0)
    photons = rng.poisson(expected)
    signal_om = np.repeat(np.arange(geometry.n_oms), photons)
    signal_time = (
        TRACK_TIME_NS
        + ice.geometric_delay_ns(longitudinal[signal_om], distance[signal_om])
        + ice.draw_delays_ns(rng, distance[signal_om])
    )
    noise_om, noise_time = _noise_hits(rng, geometry.n_oms)
    om_index: IntArray = np.concatenate((signal_om, noise_om))
    time_ns = np.concatenate((signal_time, noise_time))
    inside = (time_ns >= READOUT_WINDOW_NS[0]) & (time_ns < READOUT_WINDOW_NS[1])
    order = np.argsort(time_ns[inside], kind="stable")
    charge = rng.gamma(SPE_CHARGE_SHAPE, 1.0 / SPE_CHARGE_SHAPE, size=order.size)
    return Event(
        run_id=run_id,
        event_id=seed if event_id is None else event_id,
        mjd=spec.mjd,
        event_type=SIMULATED_EVENT_TYPE,
        is_real_event=False,
        geometry_name=geometry.name,
        readout_window_ns=READOUT_WINDOW_NS,
        om_index=om_index[inside][order],
        time_ns=np.round(time_ns[inside][order], 2),
        charge_pe=np.round(charge, 3),
        truth=Truth(spec.ra, spec.dec, spec.vertex_m, TRACK_TIME_NS, spec.energy_gev, spec.topology, seed),
    )


def _noise_hits(rng: np.random.Generator, n_oms: int) -> tuple[IntArray, FloatArray]:
    start, end = READOUT_WINDOW_NS
    count = rng.poisson(ice.NOISE_RATE_PER_NS * (end - start) * n_oms)
    return rng.integers(0, n_oms, size=count), rng.uniform(start, end, size=count)


def random_track(
    seed: int,
    *,
    energy_range_gev: tuple[float, float] = (1e3, 1e4),
    impact_radius_m: float = 300.0,
    mjd: float = 60000.0,
) -> TrackSpec:
    """A through-going track from an isotropic direction, log-uniform energy, crossing the detector.

    The track passes a point drawn uniformly on a disc of `impact_radius_m` around the detector
    centre, in the plane perpendicular to the track: the usual way to illuminate a detector evenly.
    """
    rng = np.random.default_rng([seed, 1])  # a stream of its own, apart from the pulses' stream
    ra = float(rng.uniform(0.0, 2 * np.pi))
    dec = float(np.arcsin(rng.uniform(-1.0, 1.0)))
    energy = float(np.exp(rng.uniform(*np.log(energy_range_gev))))
    direction = muon_direction(ra, dec, mjd)
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    first = np.cross(direction, helper)
    first /= np.linalg.norm(first)
    second = np.cross(direction, first)
    radius = impact_radius_m * np.sqrt(rng.uniform())
    angle = rng.uniform(0.0, 2 * np.pi)
    x, y, z = radius * (np.cos(angle) * first + np.sin(angle) * second)
    return TrackSpec(ra, dec, energy, (float(x), float(y), float(z)), "through-going", mjd)
