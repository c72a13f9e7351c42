"""Detector geometry: where the optical modules are.

An event names the geometry its pulses refer to (`"geometry": "icecube-like-86"`), so a pulse's
(string, om) pair means the same module to the simulator, the reconstruction and a reader.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

ICECUBE_LIKE = "icecube-like-86"
STRING_SPACING_M = 125.0
N_GRID_STRINGS = 78
N_DENSE_STRINGS = 8
DENSE_RING_RADIUS_M = 70.0  # the denser central strings sit between the centre and the first grid ring
OMS_PER_STRING = 60
OM_SPACING_M = 17.0


@dataclass(frozen=True)
class Geometry:
    """Module positions, indexed by `om_index = (string - 1) * oms_per_string + (om - 1)`."""

    name: str
    string_xy: FloatArray  # (n_strings, 2), metres
    om_z: FloatArray  # (oms_per_string,), metres, om 1 at the top

    @property
    def n_strings(self) -> int:
        return int(self.string_xy.shape[0])

    @property
    def oms_per_string(self) -> int:
        return int(self.om_z.size)

    @functools.cached_property
    def positions(self) -> FloatArray:
        """(n_oms, 3) positions in metres, in `om_index` order."""
        xy = np.repeat(self.string_xy, self.oms_per_string, axis=0)
        z = np.tile(self.om_z, self.n_strings)
        return np.column_stack((xy, z))

    @property
    def n_oms(self) -> int:
        return self.n_strings * self.oms_per_string

    def om_index(self, string: npt.ArrayLike, om: npt.ArrayLike) -> IntArray:
        """Flat module index of 1-based (string, om) numbers; raises on numbers outside the detector."""
        strings = np.asarray(string, dtype=np.intp)
        oms = np.asarray(om, dtype=np.intp)
        if np.any((strings < 1) | (strings > self.n_strings) | (oms < 1) | (oms > self.oms_per_string)):
            raise ValueError(
                f"(string, om) outside {self.name}: strings 1..{self.n_strings}, oms 1..{self.oms_per_string}"
            )
        result: IntArray = (strings - 1) * self.oms_per_string + (oms - 1)
        return result

    def string_and_om(self, om_index: IntArray) -> tuple[IntArray, IntArray]:
        """Inverse of `om_index`: 1-based (string, om) numbers."""
        strings, oms = np.divmod(np.asarray(om_index, dtype=np.intp), self.oms_per_string)
        return strings + 1, oms + 1

    @functools.cached_property
    def bounding_cylinder(self) -> tuple[float, float]:
        """(radius, half height) of the instrumented volume plus half a string spacing around it."""
        margin = STRING_SPACING_M / 2
        radius = float(np.max(np.hypot(self.string_xy[:, 0], self.string_xy[:, 1]))) + margin
        half_height = float(np.max(np.abs(self.om_z))) + margin
        return radius, half_height


def _hexagonal_grid(count: int, spacing: float) -> FloatArray:
    """The `count` points of a triangular lattice nearest its origin (ties broken by angle, so it is fixed)."""
    rings = int(np.ceil(np.sqrt(count))) + 1
    i, j = np.meshgrid(np.arange(-rings, rings + 1), np.arange(-rings, rings + 1))
    x = spacing * (i + 0.5 * j).ravel()
    y = spacing * (np.sqrt(3) / 2 * j).ravel()
    order = np.lexsort((np.round(np.arctan2(y, x), 9), np.round(np.hypot(x, y), 6)))[:count]
    return np.column_stack((x[order], y[order]))


@functools.cache
def icecube_like() -> Geometry:
    """86 strings like IceCube: 78 on a 125 m triangular grid plus 8 denser central strings.

    60 modules per string, 17 m apart, the whole array centred on (0, 0, 0).
    """
    grid = _hexagonal_grid(N_GRID_STRINGS, STRING_SPACING_M)
    grid -= grid.mean(axis=0)  # the dense ring is symmetric about (0, 0), so the whole array is centred
    angles = np.deg2rad(22.5 + 45.0 * np.arange(N_DENSE_STRINGS))
    dense = DENSE_RING_RADIUS_M * np.column_stack((np.cos(angles), np.sin(angles)))
    strings = np.vstack((grid, dense))
    om_z = OM_SPACING_M * ((OMS_PER_STRING - 1) / 2 - np.arange(OMS_PER_STRING, dtype=np.float64))
    return Geometry(ICECUBE_LIKE, strings, om_z)


GEOMETRIES = {ICECUBE_LIKE: icecube_like}


def get_geometry(name: str) -> Geometry:
    """The named geometry; an event refers to its detector by this name."""
    try:
        return GEOMETRIES[name]()
    except KeyError:
        raise ValueError(f"unknown geometry {name!r}; known: {sorted(GEOMETRIES)}") from None
