"""`pandel_track`: an infinite muon track with its direction fixed to the pixel.

The likelihood is that of the Poisson process the simulator draws from (`skydriver.event.ice`):
module j sees photons at the rate λ_j(t) = A · y(d_j) · f(t - t_geo,j; d_j) + r, with A the track's
light yield, y the expected photons per unit yield at distance d_j, f the convolved Pandel delay
density and r the noise rate. For pulses t_i on modules j_i:

    -ln L = -Σ_i ln λ_{j_i}(t_i) + Σ_j ∫ λ_j dt = -Σ_i ln(A y f + r) + A Σ_j y(d_j) + r T N_modules

Every pulse counts, each as one photoelectron ("SPE" likelihood extended with the expected charge).
With the direction fixed, the free parameters are where the track crosses the plane through the
hits' centre of gravity (two transverse coordinates), the time it does so, and A. A is profiled
exactly (the mixture's EM fixed point, a few vectorised steps); the other three are fitted with
BFGS and the analytic gradient. The delay density is interpolated from a table and the gradient
is that of the interpolant, so the optimiser sees one consistent function.

The likelihood has several minima in the transverse plane (a track passing on either side of a
string explains the same hits about equally well; they lie ~25 m apart), and a descent from one
start point fell into the wrong one in 11% of fits near the true direction. So each fit first
ranks a 7 x 7 grid of start points, each with its own start time, in one vectorised evaluation, and
descends from the best. Vertex seeds vary that grid: seed s has a step of 15 m · 2^s (seed 0:
±45 m around the centre of gravity, seed 1: ±90 m). The scan sends every seed as its own task and
keeps the best llh per pixel. About 8 ms per fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..event import ice
from ..event.coords import muon_direction
from ..event.model import Event, FloatArray
from .base import Reco, RecoOption, RecoOutput

MIN_DISTANCE_M = 1e-3  # keeps ∂d/∂(a, b) finite when the track runs through a module
YIELD_EM_STEPS = 5
START_TIME_QUANTILE = 0.1
NEAR_HIT_DISTANCE_M = 60.0
GRID_STEP_M = 15.0  # seed 0's; minima on either side of a string lie ~25 m apart
GRID_POINTS = np.array([(i, j) for i in range(-3, 4) for j in range(-3, 4)], dtype=np.float64)  # 7 x 7, in steps
GRID_CHARGE_RADIUS_M = 250.0
GRADIENT_TOLERANCE = 1e-2  # |∂llh/∂param| at the end; leaves an llh error ~ g²/2H far below 1e-3
LLH_TOLERANCE = 1e-5  # stop when an iteration gains less than this
MAX_ITERATIONS = 200
MAX_HALVINGS = 30
ARMIJO = 1e-4
MAX_MOVE = 100.0  # metres / ns: the longest single move; the grid start is within tens of metres of an optimum
FIRST_STEP = 5.0  # metres / ns: the scale of the first move, before any curvature is known
TIME_PER_DISTANCE_NS_PER_M = ice.TAN_CHERENKOV / ice.C_VACUUM_M_PER_NS


@dataclass(frozen=True)
class _Fit:
    offset: FloatArray  # (a, b) in the transverse plane, metres
    time_ns: float
    yield_factor: float
    llh: float


class PandelTrack(Reco):
    """Fit vertex position, time and light yield of an infinite track along a fixed direction."""

    name = "pandel_track"
    n_seeds = 2  # a fine and a wide start grid; see docs/science.md for why two

    def __init__(self, event: Event, options: Mapping[str, RecoOption] | None = None) -> None:
        super().__init__(event, options)
        self.positions = event.geometry.positions
        weights = event.charge_pe
        self.centre = (self.positions[event.om_index] * weights[:, None]).sum(axis=0) / weights.sum()
        window_start, window_end = event.readout_window_ns
        self.noise_total = ice.NOISE_RATE_PER_NS * (window_end - window_start) * event.geometry.n_oms

    def fit(self, ra: float, dec: float, seed: int) -> RecoOutput:
        problem = _Problem(self, muon_direction(ra, dec, self.event.mjd), _grid_step(seed, self.n_seeds))
        fit = problem.fit()
        vertex = self.centre + fit.offset[0] * problem.basis[0] + fit.offset[1] * problem.basis[1]
        deposited = ice.MUON_LOSS_A_GEV_PER_M * fit.yield_factor / ice.PHOTONS_PER_MIP
        length_inside = _length_inside_cylinder(vertex, problem.direction, *self.event.geometry.bounding_cylinder)
        return RecoOutput(
            llh=fit.llh,
            E_in=deposited * length_inside,
            E_tot=ice.energy_from_yield(fit.yield_factor),
            X=float(vertex[0]),
            Y=float(vertex[1]),
            Z=float(vertex[2]),
            T=fit.time_ns,
        )


def _grid_step(seed: int, n_seeds: int) -> float:
    """Seed s searches its start on a grid of step 15 m · 2^s: a fine grid, then ever wider coarse ones."""
    if not 0 <= seed < n_seeds:
        raise ValueError(f"pandel_track: seed {seed} is not in 0..{n_seeds - 1}")
    return float(GRID_STEP_M * 2**seed)


class _Problem:
    """The likelihood along one direction from one seed, with all that does not depend on the vertex precomputed.

    Coordinates: (a, b) is where the track crosses the plane through the centre of gravity
    perpendicular to it, t0 the time it does so.
    """

    def __init__(self, reco: PandelTrack, direction: FloatArray, grid_step: float) -> None:
        self.direction = direction
        self.basis = _transverse_basis(direction)  # (2, 3)
        self.grid_step = grid_step
        # einsum rather than @: small products through BLAS start its thread pool, which then spins on
        # the cores that other fits (other processes, other pilot tasks) need
        relative = reco.positions - reco.centre
        transverse = np.einsum("nk,ik->ni", relative, self.basis)  # (n_oms, 2)
        hit_om = reco.event.om_index
        self._hit_x, self._hit_y = transverse[hit_om].T.copy()
        # pulse time minus the muon's travel to the module's closest approach: what remains is t0 + d·tanθc/c + delay
        longitudinal = np.einsum("nk,k->n", relative, direction)
        self._hit_time = reco.event.time_ns - longitudinal[hit_om] / ice.C_VACUUM_M_PER_NS
        self._om_x, self._om_y = transverse.T.copy()
        close = np.hypot(*transverse.T) < GRID_CHARGE_RADIUS_M
        self._grid_om_x, self._grid_om_y = transverse[close].T.copy()
        self._constant = reco.noise_total

    def fit(self) -> _Fit:
        best = _minimise(self._llh_and_gradient, self._best_start())
        llh, yield_factor, _ = self._evaluate(best, with_gradient=False)
        return _Fit(best[:2], float(best[2]), yield_factor, llh)

    def _llh_and_gradient(self, params: FloatArray) -> tuple[float, FloatArray]:
        llh, _, gradient = self._evaluate(params, with_gradient=True)
        return llh, gradient

    def _best_start(self) -> FloatArray:
        """The best (a, b, t0) on a grid of track positions around the centre of gravity, each with its own time.

        The likelihood has several minima in (a, b): a track can pass on either side of a string
        and explain the same hits. Ranking a grid of start points (all at once, vectorised) finds
        the deepest basin before the gradient descent commits to one.
        """
        a, b = self.grid_step * GRID_POINTS[:, 0], self.grid_step * GRID_POINTS[:, 1]
        distance = np.hypot(self._hit_x[None, :] - a[:, None], self._hit_y[None, :] - b[:, None])
        unscattered = self._hit_time[None, :] - distance * TIME_PER_DISTANCE_NS_PER_M
        near = distance < NEAR_HIT_DISTANCE_M
        # a low quantile of the near hits' unscattered times (all hits' where fewer than 3 are near)
        ranked = np.sort(np.where(near, unscattered, np.inf), axis=1)
        count = near.sum(axis=1)
        enough = count >= 3
        index = np.where(enough, (START_TIME_QUANTILE * (count - 1)).astype(np.intp), 0)
        times = np.take_along_axis(ranked, index[:, None], axis=1)[:, 0]
        fallback = np.quantile(unscattered, START_TIME_QUANTILE, axis=1)
        candidates: FloatArray = np.column_stack((a, b, np.where(enough, times, fallback)))
        best: FloatArray = candidates[int(np.argmin(self._llh_batch(candidates)))]
        return best

    def _llh_batch(self, candidates: FloatArray) -> FloatArray:
        """-ln L at many (a, b, t0) at once (rows), A profiled per row; no gradient.

        For ranking start points only: the charge term counts the modules within
        `GRID_CHARGE_RADIUS_M` of the centre-of-gravity line, which differ little between nearby candidates.
        """
        a, b, t0 = (candidates[:, i : i + 1] for i in range(3))
        distance = np.maximum(np.hypot(self._hit_x - a, self._hit_y - b), MIN_DISTANCE_M)
        delay = self._hit_time - t0 - distance * TIME_PER_DISTANCE_NS_PER_M
        density, _, _ = ice.delay_density(delay, ice.pandel_shape(distance))
        signal = ice.expected_photons_per_yield(distance) * density
        om_distance = np.maximum(np.hypot(self._grid_om_x - a, self._grid_om_y - b), MIN_DISTANCE_M)
        expected = np.maximum(ice.expected_photons_per_yield(om_distance).sum(axis=1, keepdims=True), 1e-300)
        yield_factor = signal.shape[1] / expected
        for _ in range(YIELD_EM_STEPS):
            weighted = yield_factor * signal
            yield_factor = (weighted / (weighted + ice.NOISE_RATE_PER_NS)).sum(axis=1, keepdims=True) / expected
        rate = yield_factor * signal + ice.NOISE_RATE_PER_NS
        result: FloatArray = (-np.log(rate).sum(axis=1, keepdims=True) + yield_factor * expected)[:, 0]
        return result

    def _evaluate(self, params: FloatArray, *, with_gradient: bool) -> tuple[float, float, FloatArray]:
        """(-ln L, light yield A, ∂(-ln L)/∂(a, b, t0)) with A profiled.

        At the profiled A, ∂(-ln L)/∂A = 0, so the gradient is the partial one at fixed A.
        """
        a, b, t0 = params
        dx, dy = self._hit_x - a, self._hit_y - b
        distance = np.maximum(np.hypot(dx, dy), MIN_DISTANCE_M)
        delay = self._hit_time - t0 - distance * TIME_PER_DISTANCE_NS_PER_M
        density, d_delay, d_shape = ice.delay_density(delay, ice.pandel_shape(distance))
        photons = ice.expected_photons_per_yield(distance)
        signal = photons * density
        om_dx, om_dy = self._om_x - a, self._om_y - b
        om_distance = np.maximum(np.hypot(om_dx, om_dy), MIN_DISTANCE_M)
        om_photons = ice.expected_photons_per_yield(om_distance)
        expected = float(om_photons.sum())
        if not expected > 0.0:  # the track left the detector: no likelihood worth having
            return math.inf, 0.0, np.zeros(3)
        yield_factor = _profile_yield(signal, expected)
        rate = yield_factor * signal + ice.NOISE_RATE_PER_NS
        llh = float(-np.log(rate).sum() + yield_factor * expected + self._constant)
        if not with_gradient:
            return llh, yield_factor, np.zeros(3)
        weight = yield_factor / rate
        d_signal_d_distance = _photons_slope(photons, distance) * density + photons * (
            d_shape / ice.PANDEL_LAMBDA_M - d_delay * TIME_PER_DISTANCE_NS_PER_M
        )
        radial = weight * d_signal_d_distance / distance  # ∂d/∂a = -dx/d
        om_radial = yield_factor * _photons_slope(om_photons, om_distance) / om_distance
        gradient = np.array(
            [
                float((radial * dx).sum() - (om_radial * om_dx).sum()),
                float((radial * dy).sum() - (om_radial * om_dy).sum()),
                float((weight * photons * d_delay).sum()),
            ]
        )
        return llh, yield_factor, gradient


def _minimise(function: Callable[[FloatArray], tuple[float, FloatArray]], start: FloatArray) -> FloatArray:
    """BFGS with a backtracking (Armijo) line search, for a handful of parameters.

    Written out rather than taken from scipy because scipy's L-BFGS-B calls BLAS, and OpenBLAS's
    thread pool then spins on the cores that other fits in other processes or pilot tasks need
    (measured: twice the CPU time per fit, seven times the wall time with two pool workers).
    Small arrays and elementwise products keep everything on this thread.
    """
    x = start.astype(np.float64)
    value, gradient = function(x)
    inverse_hessian = np.eye(x.size) * (FIRST_STEP / max(float(np.abs(gradient).max()), 1e-12))
    for _ in range(MAX_ITERATIONS):
        if float(np.abs(gradient).max()) < GRADIENT_TOLERANCE:
            break
        direction = -(inverse_hessian * gradient).sum(axis=1)
        slope = float((gradient * direction).sum())
        if slope >= 0:  # not a descent direction: forget the curvature learnt so far
            inverse_hessian = np.eye(x.size) * (FIRST_STEP / float(np.abs(gradient).max()))
            direction = -(inverse_hessian * gradient).sum(axis=1)
            slope = float((gradient * direction).sum())
        step = min(1.0, MAX_MOVE / float(np.abs(direction).max()))
        for _ in range(MAX_HALVINGS):
            candidate = x + step * direction
            new_value, new_gradient = function(candidate)
            if new_value <= value + ARMIJO * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease along a descent direction: at the optimum to within the function's resolution
        moved, change = candidate - x, new_gradient - gradient
        improvement = value - new_value
        x, value, gradient = candidate, new_value, new_gradient
        if improvement < LLH_TOLERANCE:
            break
        curvature = float((moved * change).sum())
        if curvature > 1e-12:
            rho = 1.0 / curvature
            left = np.eye(x.size) - rho * np.outer(moved, change)
            inverse_hessian = np.einsum("ij,jk,lk->il", left, inverse_hessian, left) + rho * np.outer(moved, moved)
    return x


def _photons_slope(photons: FloatArray, distance: FloatArray) -> FloatArray:
    """d/dd of `ice.expected_photons_per_yield`, from its value."""
    result: FloatArray = -photons * (1.0 / ice.LIGHT_ATTENUATION_M + 1.0 / (distance + ice.LIGHT_NEAR_FIELD_M))
    return result


def _profile_yield(signal: FloatArray, expected_per_yield: float) -> float:
    """Maximise over A: the EM fixed point A = Σ_i w_i / Σ_j y_j, w_i = A s_i / (A s_i + r).

    Without noise A = N / Σ y; each step moves from there towards the root monotonically, at a rate
    set by the noise fraction, so a handful of steps converge.
    """
    yield_factor = signal.size / expected_per_yield
    for _ in range(YIELD_EM_STEPS):
        weighted = yield_factor * signal
        yield_factor = float((weighted / (weighted + ice.NOISE_RATE_PER_NS)).sum()) / expected_per_yield
    return max(yield_factor, 1e-12)


def _transverse_basis(direction: FloatArray) -> FloatArray:
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    first = np.cross(direction, helper)
    first /= np.linalg.norm(first)
    return np.vstack((first, np.cross(direction, first)))


def _length_inside_cylinder(point: FloatArray, direction: FloatArray, radius: float, half_height: float) -> float:
    """Length of the line point + s·direction inside the vertical cylinder |xy| < radius, |z| < half_height."""
    ax = direction[0] ** 2 + direction[1] ** 2
    bx = point[0] * direction[0] + point[1] * direction[1]
    cx = point[0] ** 2 + point[1] ** 2 - radius**2
    if ax < 1e-12:
        side = (-np.inf, np.inf) if cx < 0 else (0.0, 0.0)
    else:
        disc = bx**2 - ax * cx
        if disc <= 0:
            return 0.0
        root = np.sqrt(disc)
        side = ((-bx - root) / ax, (-bx + root) / ax)
    if abs(direction[2]) < 1e-12:
        cap = (-np.inf, np.inf) if abs(point[2]) < half_height else (0.0, 0.0)
    else:
        ends = sorted(((-half_height - point[2]) / direction[2], (half_height - point[2]) / direction[2]))
        cap = (ends[0], ends[1])
    return float(max(0.0, min(side[1], cap[1]) - max(side[0], cap[0])))
