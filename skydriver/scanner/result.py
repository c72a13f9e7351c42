"""The skymap: icecube-skyreader's JSON format, best fit, Wilks contours.

Format (what `skyreader.SkyScanResult.deserialize` reads, version 1):

    {"nside-8": {"columns": ["index", "llh", "E_in", "E_tot", "X", "Y", "Z", "T"],
                 "data": [[pixel, llh, E_in, E_tot, X, Y, Z, T], ...],      # RING pixels, sorted
                 "metadata": {"nside": 8, "run_id": ..., "event_id": ..., "mjd": ...,
                              "event_type": ..., "is_real_event": ..., "version": 1}},
     "nside-64": {...}, ...}

The map is multi-resolution: where a finer nside has a pixel, it replaces the coarser one (as
skyreader's own map extraction does). Contours follow Wilks' theorem for the two free direction
parameters: 2Δllh ~ χ²(2), so the p-contour is Δllh < -ln(1 - p) (0.69 for 50%, 2.30 for 90%).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..event.coords import angular_distance
from ..event.model import Event
from ..recos.messages import PixelResult
from . import pixels as hp
from .pixels import children

SKYMAP_VERSION = 1
COLUMNS = ["index", "llh", "E_in", "E_tot", "X", "Y", "Z", "T"]
SQUARE_DEGREES_PER_STERADIAN = (180.0 / math.pi) ** 2
CONTOUR_LEVELS = (0.5, 0.9)

PixelFits = Mapping[int, Mapping[int, PixelResult]]


def wilks_delta_llh(containment: float) -> float:
    """Δ(-ln L) bounding the `containment` region for 2 parameters: χ²(2) quantile / 2 = -ln(1 - p)."""
    return -math.log(1.0 - containment)


def skymap(fits: PixelFits, event: Event) -> dict[str, Any]:
    """The skyreader document for these per-pixel best fits (nsides without pixels are left out)."""
    metadata = {
        "run_id": event.run_id,
        "event_id": event.event_id,
        "mjd": event.mjd,
        "event_type": event.event_type,
        "is_real_event": event.is_real_event,
        "version": SKYMAP_VERSION,
    }
    return {
        f"nside-{nside}": {
            "columns": list(COLUMNS),
            "data": [_row(pixels[index]) for index in sorted(pixels)],
            "metadata": {"nside": nside, **metadata},
        }
        for nside, pixels in sorted(fits.items())
        if pixels
    }


def fits_from_skymap(document: Mapping[str, Any]) -> dict[int, dict[int, PixelResult]]:
    """The per-pixel fits of a skyreader document (the inverse of `skymap`), e.g. one fetched from skydriver.

    A skymap keeps each pixel's best seed only, without timing: those fields read 0 here.
    """
    fits: dict[int, dict[int, PixelResult]] = {}
    for level in document.values():
        nside = int(level["metadata"]["nside"])
        column = {name: level["columns"].index(name) for name in COLUMNS}
        rows = ({name: row[at] for name, at in column.items()} for row in level["data"])
        fits[nside] = {int(r["index"]): _fit(nside, r) for r in rows}
    return fits


def _fit(nside: int, row: dict[str, Any]) -> PixelResult:
    values = {name: float(row[name]) for name in COLUMNS if name != "index"}
    return PixelResult(event_ref="", nside=nside, pixel=int(row["index"]), seed=0, **values, reco_seconds=0.0)


def truth_comparison(event: Event, best_ra: float, best_dec: float) -> dict[str, Any]:
    """For a simulated event, its true direction and the best fit's distance from it; `{}` for a real one."""
    if event.truth is None:
        return {}
    error = angular_distance(best_ra, best_dec, event.truth.ra, event.truth.dec)
    return {
        "truth": {"ra_deg": math.degrees(event.truth.ra), "dec_deg": math.degrees(event.truth.dec)},
        "angular_error_deg": math.degrees(float(error)),
    }


def _row(result: PixelResult) -> list[float | int]:
    return [result.pixel, result.llh, result.E_in, result.E_tot, result.X, result.Y, result.Z, result.T]


@dataclass(frozen=True)
class BestFit:
    ra: float  # radians
    dec: float  # radians
    nside: int
    pixel: int
    llh: float


@dataclass(frozen=True)
class SkymapSummary:
    """What a person wants first from a skymap."""

    best_fit: BestFit
    area_50_sqdeg: float
    area_90_sqdeg: float
    n_pixels: int

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["best_fit"]["ra_deg"] = math.degrees(self.best_fit.ra)
        doc["best_fit"]["dec_deg"] = math.degrees(self.best_fit.dec)
        return doc


class MultiResolutionMap:
    """The llh landscape of a scan: each direction takes the value of the finest pixel scanned there."""

    def __init__(self, fits: PixelFits) -> None:
        self.levels = sorted((nside, dict(pixels)) for nside, pixels in fits.items() if pixels)
        if not self.levels:
            raise ValueError("no pixels: nothing to map")
        self._llh = {
            nside: (np.array(sorted(pixels)), np.array([pixels[p].llh for p in sorted(pixels)]))
            for nside, pixels in self.levels
        }

    @property
    def best(self) -> BestFit:
        """The pixel with the lowest llh over all nsides (what skyreader's `best_fit` picks)."""
        nside, result = min(
            ((nside, r) for nside, pixels in self.levels for r in pixels.values() if not math.isnan(r.llh)),
            key=lambda item: item[1].llh,
        )
        theta, phi = hp.pix2ang(nside, result.pixel)
        return BestFit(float(phi), float(np.pi / 2 - theta), nside, result.pixel, result.llh)

    def llh_at(self, ra: np.ndarray | float, dec: np.ndarray | float) -> np.ndarray:
        """llh of the finest scanned pixel containing each direction (radians)."""
        ra_array, dec_array = np.broadcast_arrays(np.asarray(ra, dtype=float), np.asarray(dec, dtype=float))
        values = np.full(ra_array.shape, np.nan)
        for nside, (pixels, llhs) in self._llh.items():
            containing = hp.ang2pix(nside, np.pi / 2 - dec_array, ra_array)
            slot = np.clip(np.searchsorted(pixels, containing), 0, pixels.size - 1)
            found = pixels[slot] == containing
            values[found] = llhs[slot[found]]
        return values

    def area_below(self, delta_llh: float) -> float:
        """Solid angle (sq. deg) where llh - min llh < `delta_llh`, each pixel counted where no finer one covers it."""
        threshold = self.best.llh + delta_llh
        area = 0.0
        for index, (nside, pixels) in enumerate(self.levels):
            inside = np.array(sorted(p for p, r in pixels.items() if r.llh < threshold), dtype=np.int64)
            if inside.size == 0:
                continue
            uncovered = np.ones(inside.size)
            if index + 1 < len(self.levels):
                finer_nside, finer = self.levels[index + 1]
                factor = (finer_nside // nside) ** 2
                subpixels = children(nside, inside, finer_nside)
                covered_children = np.isin(subpixels, np.fromiter(finer, dtype=np.int64))
                parent_slot = np.searchsorted(inside, _parents(finer_nside, subpixels, nside))
                covered = np.bincount(parent_slot, weights=covered_children, minlength=inside.size)
                uncovered = 1.0 - covered / factor
            area += float(uncovered.sum()) * hp.pixel_area(nside)
        return area * SQUARE_DEGREES_PER_STERADIAN

    def summary(self) -> SkymapSummary:
        return SkymapSummary(
            best_fit=self.best,
            area_50_sqdeg=self.area_below(wilks_delta_llh(0.5)),
            area_90_sqdeg=self.area_below(wilks_delta_llh(0.9)),
            n_pixels=sum(len(pixels) for _, pixels in self.levels),
        )


def _parents(child_nside: int, pixels: np.ndarray, nside: int) -> np.ndarray:
    factor = (child_nside // nside) ** 2
    return hp.nest2ring(nside, hp.ring2nest(child_nside, pixels) // factor)
