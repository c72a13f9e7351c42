"""What every reconstruction is: (event, pixel direction, vertex seed) → (llh, energy, vertex).

A reconstruction is built once per event (the expensive preparation: geometry lookups, hit
arrays) and then fitted once per (pixel direction, seed). `llh` is -ln L (smaller is better), so
a skymap's Δllh is directly the Wilks statistic divided by two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ..event.model import Event

RecoOption = float | int | str | bool


@dataclass(frozen=True)
class RecoOutput:
    """A fit with the direction fixed: -ln L, deposited and total energy (GeV), the vertex (m) and its time (ns)."""

    llh: float
    E_in: float
    E_tot: float
    X: float
    Y: float
    Z: float
    T: float


class Reco(ABC):
    """A reconstruction plugin. Subclasses set `name` and `n_seeds` and implement `fit`."""

    name: ClassVar[str]
    n_seeds: ClassVar[int] = 1  # how many vertex seeds the scan sends per pixel; the scan keeps the best

    def __init__(self, event: Event, options: Mapping[str, RecoOption] | None = None) -> None:
        self.event = event
        self.options = dict(options or {})

    @abstractmethod
    def fit(self, ra: float, dec: float, seed: int) -> RecoOutput:
        """Fit with the source direction fixed at (ra, dec) (radians), starting from vertex seed `seed`."""
