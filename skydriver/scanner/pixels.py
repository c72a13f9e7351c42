"""HEALPix for the scanner: nside ladders, parent → child pixels, and healpy's pixel functions.

Pixels are numbered in RING order everywhere (what icecube-skyreader and healpy default to);
the NESTED scheme is used only inside `children`, where a pixel's sub-pixels at nside·2^m are
the 4^m consecutive NESTED indices starting at nest·4^m.

This is the scanner's only module that uses healpy, and it imports it on first use: healpy
imports matplotlib and astropy, about a second, and a scanner's first level (the whole sky,
numbered 0 … 12·nside²-1) is published without it; it is needed from the first refinement on.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
MAX_NSIDE = 1 << 29  # healpy's limit


@functools.cache
def _healpy() -> Any:
    import healpy  # type: ignore[import-untyped]

    return healpy


def npix(nside: int) -> int:
    return 12 * nside * nside


def pixel_area(nside: int) -> float:
    """Solid angle of one pixel at `nside`, steradians."""
    return float(_healpy().nside2pixarea(nside))


def pix2ang(nside: int, pixels: npt.ArrayLike) -> tuple[Any, Any]:
    """(theta, phi) of RING pixel centres, radians."""
    theta, phi = _healpy().pix2ang(nside, pixels)
    return theta, phi


def pix2vec(nside: int, pixels: npt.ArrayLike) -> FloatArray:
    """Unit vectors (3, ...) of RING pixel centres."""
    return np.array(_healpy().pix2vec(nside, pixels))


def ang2pix(nside: int, theta: npt.ArrayLike, phi: npt.ArrayLike) -> IntArray:
    """RING pixels containing the directions (theta, phi), radians."""
    return np.asarray(_healpy().ang2pix(nside, theta, phi), dtype=np.int64)


def ring2nest(nside: int, pixels: npt.ArrayLike) -> IntArray:
    return np.asarray(_healpy().ring2nest(nside, pixels), dtype=np.int64)


def nest2ring(nside: int, pixels: npt.ArrayLike) -> IntArray:
    return np.asarray(_healpy().nest2ring(nside, pixels), dtype=np.int64)


def parse_nsides(nsides: Mapping[int | str, int] | Iterable[tuple[int | str, int]]) -> list[tuple[int, int]]:
    """Validated, sorted (nside, n_refine) pairs from e.g. `{8: 0, 64: 12, 512: 24}` (keys may be strings).

    `n_refine` of a level sets how many of the previous level's pixels it subdivides (see
    `SkyScan`: the n nearest the best fit and the n lowest-llh, which mostly overlap); the first level
    is always the whole sky, so its count is ignored.
    """
    pairs = sorted((int(k), int(v)) for k, v in (nsides.items() if isinstance(nsides, Mapping) else nsides))
    if not pairs:
        raise ValueError("nsides: at least one nside is needed")
    for nside, count in pairs:
        if not 0 < nside <= MAX_NSIDE or nside & (nside - 1):  # what healpy.isnsideok(nside, nest=True) accepts
            raise ValueError(f"nsides: {nside} is not a power of two")
        if count < 0:
            raise ValueError(f"nsides: refine count {count} for nside {nside} is negative")
    for (coarse, _), (fine, count) in itertools.pairwise(pairs):
        if fine == coarse:
            raise ValueError(f"nsides: {fine} given twice")
        if count == 0:
            raise ValueError(f"nsides: nside {fine} refines 0 pixels of nside {coarse}; give a positive count")
    return pairs


def children(nside: int, pixels: npt.ArrayLike, child_nside: int) -> IntArray:
    """RING indices at `child_nside` of all sub-pixels of these RING pixels at `nside`, sorted."""
    factor = (child_nside // nside) ** 2
    nested = ring2nest(nside, np.asarray(pixels, dtype=np.int64))
    sub_nested = (nested[:, None] * factor + np.arange(factor)[None, :]).ravel()
    result: IntArray = np.sort(nest2ring(child_nside, sub_nested))
    return result


def expected_pixels(levels: list[tuple[int, int]]) -> list[int]:
    """How many pixels each level scans at least: the whole sky, then n x (ratio)² each (up to twice that)."""
    counts = [npix(levels[0][0])]
    for (coarse, _), (fine, count) in itertools.pairwise(levels):
        counts.append(min(count, counts[-1]) * (fine // coarse) ** 2)
    return counts
