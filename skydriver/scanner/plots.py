"""PNG pictures of a skymap: the whole sky, and a zoom on the contours.

Both show 2Δllh (the Wilks statistic) of the multi-resolution map, the 50% and 90% contours and
the best fit; the truth of a simulated event is marked when given. Right ascension grows to the
left, as on the sky.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed on a server or a pilot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..event.model import Event
from .result import CONTOUR_LEVELS, MultiResolutionMap, wilks_delta_llh

FULL_SKY_GRID = (720, 360)
ZOOM_GRID = 400
MIN_ZOOM_RADIUS_DEG = 1.0
COLOUR_CAP = 50.0  # 2Δllh above this is drawn in one colour: the far sky is uninteresting
CONTOUR_COLOURS = ("black", "red")  # 50%, 90%, as icecube-skyreader draws them


def plot_event(sky: MultiResolutionMap, event: Event, full: Path, zoom: Path) -> list[Path]:
    """The whole sky and the contours, titled by the event, its true direction marked when simulated."""
    truth = (event.truth.ra, event.truth.dec) if event.truth else None
    title = f"run {event.run_id} event {event.event_id} ({event.event_type})"
    return [plot_full_sky(sky, full, title, truth), plot_zoom(sky, zoom, title, truth)]


def _levels() -> list[float]:
    return [2 * wilks_delta_llh(p) for p in CONTOUR_LEVELS]


def plot_full_sky(sky: MultiResolutionMap, path: Path, title: str, truth: tuple[float, float] | None = None) -> Path:
    """Mollweide projection of the whole sky."""
    lon = np.linspace(-np.pi, np.pi, FULL_SKY_GRID[0])
    lat = np.linspace(-np.pi / 2, np.pi / 2, FULL_SKY_GRID[1])
    grid_lon, grid_lat = np.meshgrid(lon, lat)
    ts = 2 * (sky.llh_at(np.mod(-grid_lon, 2 * np.pi), grid_lat) - sky.best.llh)  # lon = -ra: RA grows leftwards
    fig = plt.figure(figsize=(9, 5))
    ax = fig.add_subplot(111, projection="mollweide")
    mesh = ax.pcolormesh(grid_lon, grid_lat, np.minimum(ts, COLOUR_CAP), cmap="viridis_r", shading="auto")
    ax.contour(grid_lon, grid_lat, ts, levels=_levels(), colors=CONTOUR_COLOURS, linewidths=0.8)
    best = sky.best
    ax.plot(_wrap(-best.ra), best.dec, marker="*", color="orange", markersize=10, linestyle="none", label="best fit")
    if truth is not None:
        ax.plot(_wrap(-truth[0]), truth[1], marker="x", color="black", markersize=8, linestyle="none", label="truth")
    ax.set_xticks(np.deg2rad(np.arange(-150, 181, 30)))
    ax.set_xticklabels([f"{int(h)}h" for h in np.mod(-np.arange(-150, 181, 30) / 15, 24)])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(mesh, orientation="horizontal", shrink=0.6, pad=0.08, label="2Δllh")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_zoom(sky: MultiResolutionMap, path: Path, title: str, truth: tuple[float, float] | None = None) -> Path:
    """The region around the best fit, wide enough for the 90% contour (and the truth, if given)."""
    best = sky.best
    radius = _zoom_radius(sky, truth)
    offsets = np.linspace(-radius, radius, ZOOM_GRID)
    east, north = np.meshgrid(offsets, offsets)
    dec = np.clip(best.dec + north, -np.pi / 2, np.pi / 2)
    ra = np.mod(best.ra + east / max(math.cos(best.dec), 1e-3), 2 * np.pi)
    ts = 2 * (sky.llh_at(ra, dec) - best.llh)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    edge = math.degrees(radius)
    extent = (edge, -edge, -edge, edge)  # east on the left
    image = ax.imshow(
        np.minimum(ts, 4 * _levels()[-1]), origin="lower", extent=extent, cmap="viridis_r", aspect="equal"
    )
    degrees = np.degrees(offsets)
    contours = ax.contour(degrees, degrees, ts, levels=_levels(), colors=CONTOUR_COLOURS, linewidths=1.2)
    ax.clabel(contours, fmt={lvl: f"{p:.0%}" for lvl, p in zip(_levels(), CONTOUR_LEVELS, strict=True)}, fontsize=8)
    ax.plot(0, 0, marker="*", color="orange", markersize=12, linestyle="none", label="best fit")
    if truth is not None:
        d_east = _wrap(truth[0] - best.ra) * math.cos(best.dec)
        ax.plot(math.degrees(d_east), math.degrees(truth[1] - best.dec), "kx", markersize=9, label="truth")
    ax.set_xlim(extent[0], extent[1])
    ax.set_xlabel("ΔRA·cos(dec) [deg] (east ←)")
    ax.set_ylabel("Δdec [deg]")
    ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(image, label="2Δllh")
    ax.set_title(f"{title}\nbest fit RA {math.degrees(best.ra):.2f}°, dec {math.degrees(best.dec):.2f}°", fontsize=10)
    return _save(fig, path)


def _zoom_radius(sky: MultiResolutionMap, truth: tuple[float, float] | None) -> float:
    """Radians: twice the radius of a disc as large as the 90% region, at least 1°, the truth inside."""
    area_sr = sky.area_below(wilks_delta_llh(0.9)) / (180 / math.pi) ** 2
    radius = max(2.0 * math.sqrt(area_sr / math.pi), math.radians(MIN_ZOOM_RADIUS_DEG))
    if truth is not None:
        best = sky.best
        apart = math.hypot(_wrap(truth[0] - best.ra) * math.cos(best.dec), truth[1] - best.dec)
        radius = max(radius, 1.3 * apart)
    return min(radius, math.radians(30.0))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
