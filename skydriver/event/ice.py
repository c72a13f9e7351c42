"""The light model shared by the simulator and the reconstruction: one source of truth for both.

A muon track emits Cherenkov light at the angle θc (cos θc = 1/n) and the photons reach an
optical module after scattering in the ice. Three pieces describe what a module sees:

- the *geometric time* `t_geo`: arrival of an unscattered photon (Cherenkov cone, group velocity c/n);
- the *delay* after `t_geo`: the Pandel distribution (a gamma distribution whose shape grows with the
  distance d to the track: k = d/λ, rate b = 1/τ + c_ice/λ_a), smeared by a Gaussian of sigma = 10 ns.
  That convolution (the "convoluted Pandel") is what the simulator draws from and what the likelihood
  evaluates, so the likelihood is the exact model of the simulated data; it also keeps the density
  finite where the bare Pandel density diverges (k < 1 at t → 0). sigma is an *effective* timing
  resolution, wider than a photomultiplier's ~2 ns: with a perfectly known ice model and 2 ns, every
  direct photon pins the track and angular errors come out near 0.05°, which no real detector has;
  10 ns (with the light yield below) gives IceCube-like 0.1-1° errors for TeV tracks;
- the *expected photon count*: proportional to the muon's light yield (∝ its energy loss a + b·E) and
  falling with distance as exp(-d/λ_q) · r0/(d + r0).

Noise hits arrive uniformly in time at a fixed rate per module.

The convolved density has no cheap closed form (it is a parabolic-cylinder function that over- and
underflows for late times), so it is tabulated once per process (~0.5 s) on a (k, u = asinh(t/2sigma))
grid: by quadrature over the gamma CDF for early times, as g + sigma²/2 · g'' (the smearing to second
order) for late ones; the two agree to ~1e-3 at the seam. `delay_density` interpolates it bilinearly
and returns the derivatives of the interpolant, for the fit's gradient.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]

C_VACUUM_M_PER_NS = 0.299792458
N_ICE = 1.32  # phase and group index of refraction (θc ≈ 40.8°, group velocity c/1.32)
COS_CHERENKOV = 1.0 / N_ICE
TAN_CHERENKOV = float(np.sqrt(1.0 - COS_CHERENKOV**2) / COS_CHERENKOV)
C_ICE_M_PER_NS = C_VACUUM_M_PER_NS / N_ICE

# Pandel parameters (Pandel 1996, as used by AMANDA/IceCube track fits)
PANDEL_LAMBDA_M = 33.3  # "scattering" length setting the gamma shape k = d / λ
PANDEL_TAU_NS = 557.0
PANDEL_ABSORPTION_M = 98.0
PANDEL_RATE_PER_NS = 1.0 / PANDEL_TAU_NS + C_ICE_M_PER_NS / PANDEL_ABSORPTION_M
JITTER_NS = 10.0  # effective timing resolution, Gaussian sigma (see module docstring)

# expected photons at distance d: yield · exp(-d / λ_q) · r0 / (d + r0)
LIGHT_ATTENUATION_M = 40.0
LIGHT_NEAR_FIELD_M = 10.0
PHOTONS_PER_MIP = 5.0  # light-yield factor of a minimum-ionising muon: ~1 photon at 20 m
MUON_LOSS_A_GEV_PER_M = 0.24  # ionisation
MUON_LOSS_B_PER_M = 3.3e-4  # radiative losses ∝ energy
MUON_CRITICAL_ENERGY_GEV = MUON_LOSS_A_GEV_PER_M / MUON_LOSS_B_PER_M

NOISE_RATE_PER_NS = 500e-9  # 500 Hz dark rate per optical module

# tabulation of the convolved Pandel density on (k, u), u = asinh(t / 2sigma): fine steps near t = 0 where the
# density changes on the scale of sigma, coarse steps late where it changes on the scale of the gamma's width
_TABLE_U_SCALE_NS = 2.0 * JITTER_NS
_TABLE_T_MIN_NS = -10.0 * JITTER_NS  # earlier than this the density is < 1e-21 / ns: below any noise rate
_TABLE_T_MAX_NS = 25000.0  # beyond any readout window
_TABLE_U_STEP = 0.005
_TABLE_K_MAX = 15.0  # 500 m: farther modules expect < 1e-7 photons per unit yield
_TABLE_K_STEP = 0.02
_CONVOLUTION_T_MAX_NS = 30.0 * JITTER_NS  # later than this the second-order smearing correction is exact to 1e-3


def light_yield(energy_gev: FloatArray | float) -> FloatArray | float:
    """Photon-yield factor of a muon of this energy: ∝ its energy loss per metre (a + b·E)."""
    return PHOTONS_PER_MIP * (1.0 + np.asarray(energy_gev) / MUON_CRITICAL_ENERGY_GEV)


def energy_from_yield(yield_factor: float) -> float:
    """Invert `light_yield`; a yield below a minimum-ionising muon's means 'no measurable energy' (0)."""
    return float(max(yield_factor / PHOTONS_PER_MIP - 1.0, 0.0) * MUON_CRITICAL_ENERGY_GEV)


def expected_photons_per_yield(distance_m: FloatArray) -> FloatArray:
    """Expected photons at a module `distance_m` from the track, per unit light-yield factor."""
    result: FloatArray = np.exp(-distance_m / LIGHT_ATTENUATION_M) * (
        LIGHT_NEAR_FIELD_M / (distance_m + LIGHT_NEAR_FIELD_M)
    )
    return result


def geometric_delay_ns(longitudinal_m: FloatArray, distance_m: FloatArray) -> FloatArray:
    """Arrival time of unscattered Cherenkov light after the muon passed the reference point.

    The photon leaves the track `d / tan θc` before the module's closest-approach point and travels
    `d / sin θc` at c/n; with equal phase and group index this adds up to (l + d·tan θc) / c.
    """
    result: FloatArray = (longitudinal_m + distance_m * TAN_CHERENKOV) / C_VACUUM_M_PER_NS
    return result


def pandel_shape(distance_m: FloatArray) -> FloatArray:
    """Gamma shape parameter k of the Pandel delay distribution at this distance."""
    result: FloatArray = distance_m / PANDEL_LAMBDA_M
    return result


def draw_delays_ns(rng: np.random.Generator, distance_m: FloatArray) -> FloatArray:
    """One delay per entry: Pandel (gamma) scattering delay plus Gaussian jitter."""
    shape = pandel_shape(distance_m)
    scattering = np.where(shape > 0, rng.gamma(np.maximum(shape, 1e-12), 1.0 / PANDEL_RATE_PER_NS), 0.0)
    result: FloatArray = scattering + rng.normal(0.0, JITTER_NS, size=distance_m.shape)
    return result


@dataclass(frozen=True)
class _Table:
    """f on a regular (k, u) grid, flattened for gather-based bilinear interpolation."""

    density: FloatArray  # (n_k, n_u), 1/ns
    n_u: int
    u_min: float


@functools.cache
def _density_table() -> _Table:
    """Tabulate the convolved Pandel density once per process (about 0.3 s)."""
    u_min = float(np.arcsinh(_TABLE_T_MIN_NS / _TABLE_U_SCALE_NS))
    u_grid = np.arange(u_min, np.arcsinh(_TABLE_T_MAX_NS / _TABLE_U_SCALE_NS) + _TABLE_U_STEP, _TABLE_U_STEP)
    times = _TABLE_U_SCALE_NS * np.sinh(u_grid)
    shapes = np.arange(0.0, _TABLE_K_MAX + 2 * _TABLE_K_STEP, _TABLE_K_STEP)
    early = times < _CONVOLUTION_T_MAX_NS
    density = np.empty((shapes.size, times.size))
    density[:, early] = _convolved_density(times[early], shapes)
    late_t, late_k = np.meshgrid(times[~early], shapes)
    density[:, ~early] = _smeared_gamma_density(late_t, late_k)
    return _Table(np.ascontiguousarray(density), times.size, u_min)


def _convolved_density(times: FloatArray, shapes: FloatArray) -> FloatArray:
    """(gamma ⊗ Gaussian)(t) for each shape (rows) and time (columns), by quadrature over the gamma's CDF.

    Integrating through the CDF handles the integrable singularity of k < 1 at t = 0 exactly;
    k = 0 (a module on the track) is the bare Gaussian.
    """
    fine_step = JITTER_NS / 40.0
    edges = np.arange(0.0, times.max() - _TABLE_T_MIN_NS + fine_step, fine_step)
    safe_shapes = np.maximum(shapes, 1e-300)[:, None]
    cdf = special.gammainc(safe_shapes, PANDEL_RATE_PER_NS * edges[None, :])
    cdf[0, :] = 1.0  # k = 0: all delay mass at zero
    mass = np.diff(cdf, axis=1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    # for small k the first bin's mass crowds at s → 0: place it at its conditional mean E[s | bin]
    # (from the k+1 CDF) rather than at the bin centre; later bins are smooth enough for centres
    first_bin_mass = cdf[:, 1]
    first_bin_moment = (
        safe_shapes[:, 0] / PANDEL_RATE_PER_NS * special.gammainc(safe_shapes[:, 0] + 1, PANDEL_RATE_PER_NS * edges[1])
    )
    first_bin_mean = np.where(shapes > 0, first_bin_moment, 0.0) / np.maximum(first_bin_mass, 1e-300)
    mass[:, 0] = 0.0
    density = mass @ _gauss(times[:, None] - centres[None, :]).T
    density += first_bin_mass[:, None] * _gauss(times[None, :] - first_bin_mean[:, None])
    result: FloatArray = density
    return result


def _smeared_gamma_density(delay_ns: FloatArray, shape: FloatArray) -> FloatArray:
    """g + sigma²/2 · g'' for the gamma density g: the Gaussian smearing to second order, for t ≫ sigma."""
    k = np.maximum(shape, 1e-6)
    rate = PANDEL_RATE_PER_NS
    log_gamma = k * np.log(rate) + (k - 1) * np.log(delay_ns) - rate * delay_ns - special.gammaln(k)
    curvature = ((k - 1) / delay_ns - rate) ** 2 - (k - 1) / delay_ns**2
    result: FloatArray = np.exp(log_gamma) * (1.0 + 0.5 * JITTER_NS**2 * curvature)
    return result


def _gauss(offset_ns: FloatArray) -> FloatArray:
    result: FloatArray = np.exp(-0.5 * (offset_ns / JITTER_NS) ** 2) / (JITTER_NS * np.sqrt(2 * np.pi))
    return result


def delay_density(delay_ns: FloatArray, shape: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Convolved Pandel density f of these delays (ns) at these gamma shapes, with ∂f/∂delay and ∂f/∂shape.

    Bilinear interpolation of the table; the derivatives are those of the interpolant itself, so a
    gradient-based fit sees a gradient consistent with the function it minimises. Delays earlier than
    the table clamp to its first column (density < 1e-21/ns), shapes beyond it to its last row.
    """
    table = _density_table()
    scaled = delay_ns / _TABLE_U_SCALE_NS
    u = np.arcsinh(scaled)
    x = np.clip((u - table.u_min) / _TABLE_U_STEP, 0.0, table.n_u - 1.000001)
    y = np.clip(shape / _TABLE_K_STEP, 0.0, _TABLE_K_MAX / _TABLE_K_STEP)
    i = x.astype(np.intp)
    j = y.astype(np.intp)
    fx = x - i
    fy = y - j
    flat = table.density.ravel()
    corner = j * table.n_u + i
    f00, f01 = flat[corner], flat[corner + 1]
    f10, f11 = flat[corner + table.n_u], flat[corner + table.n_u + 1]
    low = f00 + (f01 - f00) * fx
    high = f10 + (f11 - f10) * fx
    density: FloatArray = low + (high - low) * fy
    slope_x = (f01 - f00) + ((f11 - f10) - (f01 - f00)) * fy
    du_ddelay = 1.0 / (_TABLE_U_SCALE_NS * _TABLE_U_STEP * np.sqrt(1.0 + scaled * scaled))
    d_delay: FloatArray = slope_x * du_ddelay
    d_shape: FloatArray = (high - low) / _TABLE_K_STEP
    return density, d_delay, d_shape
