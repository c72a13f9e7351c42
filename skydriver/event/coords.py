"""Sky ↔ detector directions, for a detector at the geographic South Pole.

At the pole the local vertical is the celestial axis, so the transform is exact and simple:
declination = zenith - 90°, right ascension = GMST - azimuth (detector x axis along the
Greenwich meridian, z up). A skymap pixel is a *source* direction on the sky; the muon travels
away from the source, i.e. along minus the unit vector pointing at it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MJD_J2000 = 51544.5


def gmst_rad(mjd: float) -> float:
    """Greenwich mean sidereal time (IAU 1982, linear term) in radians."""
    degrees = 280.46061837 + 360.98564736629 * (mjd - MJD_J2000)
    return float(np.deg2rad(degrees % 360.0))


def sky_to_local(ra: npt.ArrayLike, dec: npt.ArrayLike, mjd: float) -> tuple[FloatArray, FloatArray]:
    """(zenith, azimuth) in radians of sky positions (ra, dec) in radians, at this time."""
    zenith = np.asarray(dec, dtype=np.float64) + np.pi / 2
    azimuth = np.mod(gmst_rad(mjd) - np.asarray(ra, dtype=np.float64), 2 * np.pi)
    return zenith, azimuth


def local_to_sky(zenith: npt.ArrayLike, azimuth: npt.ArrayLike, mjd: float) -> tuple[FloatArray, FloatArray]:
    """(ra, dec) in radians of local directions (zenith, azimuth), inverse of `sky_to_local`."""
    dec = np.asarray(zenith, dtype=np.float64) - np.pi / 2
    ra = np.mod(gmst_rad(mjd) - np.asarray(azimuth, dtype=np.float64), 2 * np.pi)
    return ra, dec


def source_vector(zenith: npt.ArrayLike, azimuth: npt.ArrayLike) -> FloatArray:
    """Unit vector(s) (..., 3) from the detector towards the source."""
    zen = np.asarray(zenith, dtype=np.float64)
    azi = np.asarray(azimuth, dtype=np.float64)
    return np.stack((np.sin(zen) * np.cos(azi), np.sin(zen) * np.sin(azi), np.cos(zen)), axis=-1)


def muon_direction(ra: float, dec: float, mjd: float) -> FloatArray:
    """Unit vector of travel of a muon coming from sky position (ra, dec)."""
    zenith, azimuth = sky_to_local(ra, dec, mjd)
    return -source_vector(zenith, azimuth)


def angular_distance(ra1: npt.ArrayLike, dec1: npt.ArrayLike, ra2: npt.ArrayLike, dec2: npt.ArrayLike) -> FloatArray:
    """Great-circle distance in radians (haversine form, accurate at small angles)."""
    ra1, dec1, ra2, dec2 = (np.asarray(v, dtype=np.float64) for v in (ra1, dec1, ra2, dec2))
    half = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    result: FloatArray = 2 * np.arcsin(np.sqrt(np.clip(half, 0.0, 1.0)))
    return result
