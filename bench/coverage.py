"""Do the skymap contours of `pandel_track` mean what they say? Coverage on simulated tracks.

    python bench/coverage.py [--events 50] [--nsides 8:0,64:5,256:12,1024:8] [--workers 2] [--plot coverage.png]

Simulates seeded through-going muon tracks (isotropic directions, log-uniform 1-10 TeV, crossing a
300 m disc around the detector centre), scans each with `pandel_track` through the local executor
(process pool, the same `run_pixel_task` a pilot runs), and prints: the median angular error of
the best fit, the fraction of true directions inside the 90% and 50% Wilks contours (with a 68%
binomial interval), the median 90% area, and the reconstruction time per pixel. Coverage is
counted twice: for the *skymap*, a true direction is inside the p-contour when the llh of the
finest scanned pixel containing it is within -ln(1 - p) of the best pixel's (what a user of the map
gets, pixelisation included); for the *likelihood*, the reconstruction is run at the exact true
direction instead of at that pixel's centre (what Wilks' theorem is about). One PNG: the
calibration curves (fraction of events whose truth has 2Δllh below x, both ways, against the
chi-square(2) CDF that Wilks' theorem predicts) and the angular errors.

The default nsides start at 8, like a production scan, and refine down to nside 1024 (0.06 deg)
around the best fit: the sharpest 90% contours are ~0.1 deg², and a contour a few pixels wide would
measure the pixelisation, not the likelihood. Fewer refined pixels than production keep the run
near ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from skydriver.event import random_track, simulate_track
from skydriver.event.coords import angular_distance
from skydriver.recos import get_reco_class
from skydriver.scanner.executor import ScanConfig, run_scan
from skydriver.scanner.result import MultiResolutionMap, wilks_delta_llh

RECO = "pandel_track"
CALIBRATION_X_MAX = 15.0  # chi-square(2) CDF is 0.9994 there


def scan_one(seed: int, nsides: dict[int | str, int], workers: int, energies: tuple[float, float]) -> dict[str, float]:
    spec = random_track(seed, energy_range_gev=energies)
    event = simulate_track(spec, seed)
    started = time.perf_counter()
    scan = run_scan(event, ScanConfig(RECO, nsides, workers=workers))
    wall = time.perf_counter() - started
    sky = MultiResolutionMap(scan.best_fits())
    summary = sky.summary()
    delta_at_truth = float(sky.llh_at(spec.ra, spec.dec)) - summary.best_fit.llh
    reco = get_reco_class(RECO)(event)
    llh_truth = min(reco.fit(spec.ra, spec.dec, seed).llh for seed in range(reco.n_seeds))
    return {
        "seed": seed,
        "energy_gev": spec.energy_gev,
        "n_pulses": event.n_pulses,
        "error_deg": math.degrees(
            float(angular_distance(summary.best_fit.ra, summary.best_fit.dec, spec.ra, spec.dec))
        ),
        "delta_llh_at_truth": delta_at_truth,
        "delta_llh_fit_at_truth": llh_truth - summary.best_fit.llh,
        "best_llh": summary.best_fit.llh,
        "area_50_sqdeg": summary.area_50_sqdeg,
        "area_90_sqdeg": summary.area_90_sqdeg,
        "pixels": summary.n_pixels,
        "reco_seconds": sum(r.reco_seconds for r in scan.results),
        "wall_seconds": wall,
    }


def binomial_interval(hits: int, total: int) -> tuple[float, float]:
    """68% Clopper-Pearson interval."""
    low = stats.beta.ppf(0.16, hits, total - hits + 1) if hits else 0.0
    high = stats.beta.ppf(0.84, hits + 1, total - hits) if hits < total else 1.0
    return float(low), float(high)


def report(rows: list[dict[str, float]], nsides: str, energies: tuple[float, float]) -> list[str]:
    n = len(rows)
    n_seeds = get_reco_class(RECO).n_seeds
    lines = [
        f"events: {n} simulated through-going tracks, {energies[0]:.0f}-{energies[1]:.0f} GeV, "
        f"reco {RECO} ({n_seeds} vertex seeds per pixel), nsides {nsides}",
        f"median angular error of the best fit: {statistics.median(r['error_deg'] for r in rows):.3f} deg",
    ]
    for key, what in (("delta_llh_at_truth", "skymap"), ("delta_llh_fit_at_truth", "likelihood")):
        for containment in (0.9, 0.5):
            hits = sum(r[key] < wilks_delta_llh(containment) for r in rows)
            low, high = binomial_interval(hits, n)
            lines.append(
                f"truth inside the {containment:.0%} contour ({what}): {hits / n:.2f} ({hits}/{n}, "
                f"68% CI {low:.2f}-{high:.2f})"
            )
    pixels = sum(r["pixels"] for r in rows)
    reco_per_pixel = sum(r["reco_seconds"] for r in rows) / pixels
    wall = sum(r["wall_seconds"] for r in rows)
    lines += [
        f"median 90% area: {statistics.median(r['area_90_sqdeg'] for r in rows):.2f} sq deg "
        f"(median 50% area {statistics.median(r['area_50_sqdeg'] for r in rows):.2f} sq deg)",
        f"reconstruction seconds per pixel (all {n_seeds} seeds, one core): {reco_per_pixel:.4f} "
        f"({reco_per_pixel / n_seeds * 1000:.1f} ms per fit)",
        f"wall seconds per pixel (process pool): {wall / pixels:.4f} over {pixels} pixels, {wall:.0f} s",
    ]
    return lines


def plot(rows: list[dict[str, float]], path: Path) -> None:
    fig, (calibration, errors) = plt.subplots(1, 2, figsize=(11, 4.5))
    x = np.linspace(0, CALIBRATION_X_MAX, 300)
    for key, label in (("delta_llh_at_truth", "skymap pixel"), ("delta_llh_fit_at_truth", "fit at the truth")):
        statistic = np.sort([2 * max(r[key], 0.0) for r in rows])
        beyond = int((statistic > x[-1]).sum())
        note = f" ({beyond} beyond {x[-1]:g})" if beyond else ""
        fraction = np.arange(1, statistic.size + 1) / statistic.size
        calibration.step(statistic, fraction, where="post", label=f"{label}{note}")
    calibration.plot(x, stats.chi2.cdf(x, 2), "k--", label="Wilks: chi-square, 2 dof")
    for containment, colour in ((0.5, "grey"), (0.9, "red")):
        calibration.axvline(2 * wilks_delta_llh(containment), color=colour, lw=0.8, ls=":")
        calibration.axhline(containment, color=colour, lw=0.8, ls=":")
    calibration.set_xlim(0, x[-1])
    calibration.set_xlabel("2Δllh at the true direction")
    calibration.set_ylabel("fraction of events below")
    calibration.set_title(f"contour calibration ({len(rows)} tracks)")
    calibration.legend(loc="lower right")
    radius90 = np.sqrt(np.array([r["area_90_sqdeg"] for r in rows]) / math.pi)
    error = np.array([r["error_deg"] for r in rows])
    inside = np.array([r["delta_llh_at_truth"] < wilks_delta_llh(0.9) for r in rows])
    errors.scatter(radius90[inside], error[inside], s=14, label="truth inside 90%")
    errors.scatter(radius90[~inside], error[~inside], s=14, marker="x", color="red", label="truth outside 90%")
    top = max(radius90.max(), error.max()) * 1.1
    errors.plot([0, top], [0, top], "k:", lw=0.8)
    errors.set_xlabel("90% contour radius, sqrt(area/π) [deg]")
    errors.set_ylabel("best-fit angular error [deg]")
    errors.set_title("angular error vs contour size")
    errors.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--nsides", default="8:0,64:5,256:12,1024:8")
    parser.add_argument("--energy-gev", default="1000:10000", help="MIN:MAX, log-uniform")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=Path("coverage.png"))
    parser.add_argument("--rows", type=Path, help="also write one JSON line per event here")
    args = parser.parse_args()
    nsides: dict[int | str, int] = {int(n): int(c) for n, c in (item.split(":") for item in args.nsides.split(","))}
    low, high = (float(v) for v in args.energy_gev.split(":"))
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.events):
        rows.append(scan_one(seed, nsides, args.workers, (low, high)))
        row = rows[-1]
        print(
            f"[{len(rows)}/{args.events}] seed {seed}: error {row['error_deg']:.2f} deg, "
            f"2Δllh(truth) {2 * row['delta_llh_at_truth']:.2f}, area90 {row['area_90_sqdeg']:.2f} sq deg, "
            f"{row['wall_seconds']:.0f} s",
            file=sys.stderr,
        )
        if args.rows:
            with args.rows.open("a") as sink:
                sink.write(json.dumps(row) + "\n")
    for line in report(rows, args.nsides, (low, high)):
        print(line)
    plot(rows, args.plot)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
