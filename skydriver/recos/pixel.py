"""Where a pixel task points: the centre of a HEALPix pixel in RING order, without healpy.

A pilot needs nothing else of HEALPix, and importing healpy (which imports matplotlib and
astropy) took about a second of every pilot's start, before its first task could run. The
arithmetic is healpy's own (healpix_cxx's `pix2loc`, then `pix2ang`), operation for
operation in IEEE doubles, so the directions are the same to the bit;
`tests/unit/test_science_recos.py` compares them with healpy's.
"""

from __future__ import annotations

import math

HALF_PI = 1.570796326794896619231321691639751442099  # healpix_cxx's `halfpi`


def ring_pixel_angles(nside: int, pixel: int) -> tuple[float, float]:
    """(theta, phi) in radians of a RING pixel's centre: `healpy.pix2ang(nside, pixel)`."""
    npix = 12 * nside * nside
    if nside < 1 or not 0 <= pixel < npix:
        raise ValueError(f"no pixel {pixel} at nside {nside}")
    ncap = 2 * nside * (nside - 1)  # pixels in each polar cap
    fact2 = 4.0 / npix
    sin_theta: float | None = None  # near the poles, theta from atan2 (acos loses precision there)
    if pixel < ncap:  # north polar cap
        ring = (1 + math.isqrt(1 + 2 * pixel)) >> 1
        in_ring = (pixel + 1) - 2 * ring * (ring - 1)
        tmp = (ring * ring) * fact2
        z = 1.0 - tmp
        if z > 0.99:
            sin_theta = math.sqrt(tmp * (2.0 - tmp))
        phi = (in_ring - 0.5) * HALF_PI / ring
    elif pixel < npix - ncap:  # equatorial belt
        fact1 = (nside << 1) * fact2
        ring_pixels = 4 * nside
        rings_down = (pixel - ncap) // ring_pixels
        ring = rings_down + nside
        in_ring = (pixel - ncap) - ring_pixels * rings_down + 1
        shift = 1.0 if (ring + nside) & 1 else 0.5
        z = (2 * nside - ring) * fact1
        phi = (in_ring - shift) * math.pi * 0.75 * fact1
    else:  # south polar cap
        from_end = npix - pixel
        ring = (1 + math.isqrt(2 * from_end - 1)) >> 1
        in_ring = 4 * ring + 1 - (from_end - 2 * ring * (ring - 1))
        tmp = (ring * ring) * fact2
        z = tmp - 1.0
        if z < -0.99:
            sin_theta = math.sqrt(tmp * (2.0 - tmp))
        phi = (in_ring - 0.5) * HALF_PI / ring
    theta = math.atan2(sin_theta, z) if sin_theta is not None else math.acos(z)
    return theta, phi
