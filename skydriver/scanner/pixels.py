"""HEALPix bookkeeping for refinement: nside ladders and parent → child pixels.

Pixels are numbered in RING order everywhere (what icecube-skyreader and healpy default to);
the NESTED scheme is used only inside `children`, where a pixel's sub-pixels at nside·2^m are
the 4^m consecutive NESTED indices starting at nest·4^m.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import healpy  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


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
        if not healpy.isnsideok(nside, nest=True):
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
    nested = healpy.ring2nest(nside, np.asarray(pixels, dtype=np.int64))
    sub_nested = (nested[:, None] * factor + np.arange(factor)[None, :]).ravel()
    result: IntArray = np.sort(healpy.nest2ring(child_nside, sub_nested))
    return result


def expected_pixels(levels: list[tuple[int, int]]) -> list[int]:
    """How many pixels each level scans at least: the whole sky, then n x (ratio)² each (up to twice that)."""
    counts = [healpy.nside2npix(levels[0][0])]
    for (coarse, _), (fine, count) in itertools.pairwise(levels):
        counts.append(min(count, counts[-1]) * (fine // coarse) ** 2)
    return counts
