"""Cheap reconstructions for tests: a known minimum, and one that fails on purpose.

`dummy`'s llh is a von Mises-Fisher -ln L around the event's line-fit direction:
llh = κ (1 - cos ψ), ψ the angle to that direction. Its best pixel at any nside is the one
whose centre is nearest the line-fit direction, and its Wilks contours are circles of known
area (Δllh < c ⇔ 1 - cos ψ < c/κ ⇔ area 2π c/κ sr), which the tests use.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping

import numpy as np

from ..event.coords import angular_distance, local_to_sky
from ..event.model import Event
from .base import Reco, RecoOption, RecoOutput

DUMMY_KAPPA = 400.0  # sigma ≈ 1/√κ ≈ 2.9°
DEFAULT_FAILURE_RATE = 0.1
ALWAYS_FAIL_NSIDE = 8


class RecoCrash(RuntimeError):
    """`crash_dummy` failed on purpose."""


def linefit_direction(event: Event) -> tuple[float, float]:
    """Source (ra, dec) from the classic line fit: the least-squares velocity of hit positions in time."""
    positions = event.geometry.positions[event.om_index]
    times = event.time_ns - event.time_ns.mean()
    velocity = (positions - positions.mean(axis=0)).T @ times / (times @ times)
    source = -velocity / np.linalg.norm(velocity)
    zenith = float(np.arccos(np.clip(source[2], -1.0, 1.0)))
    azimuth = float(np.arctan2(source[1], source[0]))
    ra, dec = local_to_sky(zenith, azimuth, event.mjd)
    return float(ra), float(dec)


class Dummy(Reco):
    """Deterministic, instant, with a known minimum at the line-fit direction."""

    name = "dummy"

    @functools.cached_property
    def minimum(self) -> tuple[float, float]:
        """(ra, dec) where llh is smallest."""
        return linefit_direction(self.event)

    def fit(self, ra: float, dec: float, seed: int) -> RecoOutput:
        angle = float(angular_distance(ra, dec, *self.minimum))
        charge = float(self.event.charge_pe.sum())
        x, y, z = self.event.geometry.positions[self.event.om_index].mean(axis=0)
        return RecoOutput(
            llh=DUMMY_KAPPA * (1.0 - np.cos(angle)),
            E_in=charge,
            E_tot=charge * (1.0 + angle),
            X=float(x),
            Y=float(y),
            Z=float(z),
            T=float(self.event.time_ns[0]),
        )


class CrashDummy(Dummy):
    """`dummy` that raises `RecoCrash` with probability `failure_rate` per fit (option, default 0.1).

    Option `random_seed` makes the sequence of failures reproducible within one process. Option
    `always_fail_every` (an integer n ≥ 1) makes a known set of directions fail at every attempt, in
    whichever process: those inside the nside-8 (`ALWAYS_FAIL_NSIDE`) RING pixels whose index is a
    multiple of n, at any nside. A test can name in advance the tasks that must be dead-lettered.
    """

    name = "crash_dummy"

    def __init__(self, event: Event, options: Mapping[str, RecoOption] | None = None) -> None:
        super().__init__(event, options)
        self.failure_rate = float(self.options.get("failure_rate", DEFAULT_FAILURE_RATE))
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"crash_dummy: failure_rate {self.failure_rate} is not in [0, 1]")
        seed = self.options.get("random_seed")
        self._random = random.Random(None if seed is None else str(seed))
        every = self.options.get("always_fail_every")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"crash_dummy: always_fail_every {every!r} is not an integer of at least 1")
        self.always_fail_every = every

    def always_fails(self, ra: float, dec: float) -> bool:
        """Whether a fit at (ra, dec) is one of the tasks `always_fail_every` names."""
        if self.always_fail_every is None:
            return False
        # imported here, not with the module: pilots of the other recos start without healpy (see pixel.py)
        import healpy  # type: ignore[import-untyped]

        pixel = int(healpy.ang2pix(ALWAYS_FAIL_NSIDE, np.pi / 2 - dec, ra))
        return pixel % self.always_fail_every == 0

    def fit(self, ra: float, dec: float, seed: int) -> RecoOutput:
        if self.always_fails(ra, dec):
            raise RecoCrash(f"crash_dummy failed on purpose (always_fail_every {self.always_fail_every})")
        if self._random.random() < self.failure_rate:
            raise RecoCrash(f"crash_dummy failed on purpose (rate {self.failure_rate})")
        return super().fit(ra, dec, seed)
