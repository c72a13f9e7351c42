"""A finished scan's result on disk and on screen: the skyreader JSON, a summary, the two PNGs.

The numbers come from the skymap itself through the science core (`MultiResolutionMap`: best fit,
Wilks contour areas) and the pictures from `scanner/plots.py`, so a skymap fetched from skydriver
reads exactly like one `skymap-scan` made on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ..event.model import Event
from ..scanner.plots import plot_event
from ..scanner.result import MultiResolutionMap, fits_from_skymap, truth_comparison

SKYMAP_FILE = "skymap.json"
SUMMARY_FILE = "summary.json"
FULL_PLOT = "skymap_full.png"
ZOOM_PLOT = "skymap_zoom.png"


def summarize(sky: MultiResolutionMap, event: Event) -> dict[str, Any]:
    """Best fit and contour areas; for a simulated event also the truth and how far the best fit is from it."""
    summary = sky.summary().to_dict()
    summary["event"] = {"run_id": event.run_id, "event_id": event.event_id, "event_type": event.event_type}
    summary.update(truth_comparison(event, sky.best.ra, sky.best.dec))
    return summary


def save(skyscan_result: Mapping[str, Any], event: Event, output: Path) -> tuple[dict[str, Any], dict[str, list[Path]]]:
    """Write `skymap.json` (icecube-skyreader format), `summary.json` and the PNGs into `output`.

    Returns the summary and the files by what they are, as `report` prints them.
    """
    output.mkdir(parents=True, exist_ok=True)
    sky = MultiResolutionMap(fits_from_skymap(skyscan_result))
    summary = summarize(sky, event)
    (output / SKYMAP_FILE).write_text(json.dumps(skyscan_result))
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    pngs = plot_event(sky, event, output / FULL_PLOT, output / ZOOM_PLOT)
    return summary, {"result": [output / SKYMAP_FILE], "summary": [output / SUMMARY_FILE], "plots": pngs}


def report(summary: Mapping[str, Any], files: Mapping[str, list[Path]], out: TextIO) -> None:
    """The lines a person reads first: where the neutrino came from, how sure we are, where the files are."""
    best = summary["best_fit"]
    print(f"best fit    RA {best['ra_deg']:.2f}°  Dec {best['dec_deg']:+.2f}°", file=out)
    print(
        f"contours    50%: {summary['area_50_sqdeg']:.3g} sq deg   90%: {summary['area_90_sqdeg']:.3g} sq deg", file=out
    )
    if "truth" in summary:
        truth = summary["truth"]
        print(
            f"truth       RA {truth['ra_deg']:.2f}°  Dec {truth['dec_deg']:+.2f}°  "
            f"({summary['angular_error_deg']:.2f}° from the best fit)",
            file=out,
        )
    for label, paths in files.items():
        if paths:
            print(f"{label:<11} {'  '.join(str(p) for p in paths)}", file=out)
