"""`skymap-scan`: scan one event here, in this process or on a process pool, and write the skymap.

    skymap-scan --simulate 7 --reco pandel_track --nsides 8:0,64:12,512:24 --workers 2 -o out/
    skymap-scan --event my_event.json --reco dummy -o out/
    skymap-scan --resume out/            # continue an interrupted scan: finished pixels are not redone

The output directory gets `event.json` (the event scanned), `scan.json` (how), `pixels.jsonl` (every
pixel result as it arrives: what `--resume` reads), `skymap.json` (icecube-skyreader format),
`summary.json` (best fit, contour areas, timing; angular error for simulated events) and, unless
`--no-plots`, `skymap_full.png` and `skymap_zoom.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..event.model import Event
from ..event.simulate import TrackSpec, random_track, simulate_track
from ..recos import RECOS
from ..recos.base import RecoOption
from ..recos.messages import PixelResult
from .executor import DEFAULT_MAX_ATTEMPTS, ScanConfig, TaskFailed, run_scan
from .plots import plot_event
from .result import MultiResolutionMap, skymap, truth_comparison
from .scan import Progress

DEFAULT_NSIDES = "8:0,64:12,512:24"
EVENT_FILE = "event.json"
CONFIG_FILE = "scan.json"
PIXELS_FILE = "pixels.jsonl"

__all__ = ["TaskFailed", "main"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.resume:
        output = Path(args.resume)
        event = Event.from_json((output / EVENT_FILE).read_text())
        config = ScanConfig(**json.loads((output / CONFIG_FILE).read_text()))
        config.workers = args.workers
        config.max_attempts = args.max_attempts
        previous = _read_results(output / PIXELS_FILE)
    else:
        event = load_or_simulate(args)
        config = ScanConfig(
            reco_algo=args.reco,
            nsides=nsides_argument(args.nsides),
            reco_options=dict(args.reco_option),
            predictive_scanning_threshold=args.predictive_scanning_threshold,
            workers=args.workers,
            max_attempts=args.max_attempts,
        )
        output = Path(args.output_dir or f"skymap-{event.ref}")
        output.mkdir(parents=True, exist_ok=True)
        (output / EVENT_FILE).write_text(event.to_json())
        saved = {k: v for k, v in vars(config).items() if k not in ("workers", "max_attempts")}
        (output / CONFIG_FILE).write_text(json.dumps(saved, indent=2))
        (output / PIXELS_FILE).write_text("")
        previous = []
    progress = None if args.quiet else ProgressBar(sys.stderr)
    sky, summary = _scan_and_write(event, config, output, previous, progress)
    if not args.no_plots:
        plot_event(sky, event, output / "skymap_full.png", output / "skymap_zoom.png")
    print(json.dumps(summary, indent=2))
    return 0


def _scan_and_write(
    event: Event, config: ScanConfig, output: Path, previous: list[PixelResult], progress: ProgressBar | None
) -> tuple[MultiResolutionMap, dict[str, Any]]:
    started = time.perf_counter()
    with (output / PIXELS_FILE).open("a") as sink:

        def keep(result: PixelResult) -> None:
            sink.write(result.to_json() + "\n")
            sink.flush()  # a crash loses at most the result being written: --resume picks up from here

        scan = run_scan(
            event,
            config,
            previous_results=previous,
            on_result=keep,
            on_progress=progress.update if progress else None,
        )
    if progress:
        progress.finish(scan.progress())
    wall = time.perf_counter() - started
    fits = scan.best_fits()
    (output / "skymap.json").write_text(json.dumps(skymap(fits, event)))
    sky = MultiResolutionMap(fits)
    summary = sky.summary().to_dict()
    n_pixels = summary["n_pixels"]
    summary.update(
        event_ref=event.ref,
        reco_algo=config.reco_algo,
        nsides={str(k): v for k, v in config.nsides.items()},
        wall_seconds=wall,
        reco_seconds_per_pixel=sum(r.reco_seconds for r in scan.results) / n_pixels,
        new_tasks=len(scan.results) - len(previous),
    )
    summary.update(truth_comparison(event, summary["best_fit"]["ra"], summary["best_fit"]["dec"]))
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return sky, summary


def load_or_simulate(args: argparse.Namespace) -> Event:
    """The event of `--event FILE`, or the track `--simulate SEED` (with the simulation options) draws."""
    if args.event:
        return Event.from_json(Path(args.event).read_text())
    spec = random_track(args.simulate)
    chosen = (args.ra_deg, args.dec_deg, args.energy_gev)
    if any(value is not None for value in chosen) or args.topology != "through-going":
        spec = TrackSpec(
            ra=math.radians(args.ra_deg) if args.ra_deg is not None else spec.ra,
            dec=math.radians(args.dec_deg) if args.dec_deg is not None else spec.dec,
            energy_gev=args.energy_gev if args.energy_gev is not None else spec.energy_gev,
            topology=args.topology,
        )
    return simulate_track(spec, args.simulate)


def _read_results(path: Path) -> list[PixelResult]:
    """Every complete line; a line cut short by a crash is skipped (its task is simply sent again)."""
    results = []
    for line in path.read_text().splitlines():
        try:
            results.append(PixelResult.from_json(line))
        except (json.JSONDecodeError, KeyError):
            continue
    return results


def nsides_argument(text: str) -> dict[int | str, int]:
    """'8:0,64:12,512:24' → {8: 0, 64: 12, 512: 24}."""
    try:
        pairs = (item.split(":") for item in text.split(","))
        return {int(nside): int(count) for nside, count in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"nsides {text!r}: expected NSIDE:COUNT,NSIDE:COUNT,...") from None


def _reco_option(text: str) -> tuple[str, RecoOption]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"reco option {text!r}: expected KEY=VALUE")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    if not isinstance(parsed, float | int | str | bool):
        raise argparse.ArgumentTypeError(f"reco option {text!r}: value must be a number, string or boolean")
    return key, parsed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skymap-scan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--event", help="event JSON file (skydriver event format)")
    source.add_argument("--simulate", type=int, metavar="SEED", help="simulate a track with this seed")
    source.add_argument("--resume", metavar="DIR", help="continue the scan in this output directory")
    simulation = parser.add_argument_group("simulation (with --simulate; unset values are drawn from the seed)")
    simulation.add_argument("--ra-deg", type=float)
    simulation.add_argument("--dec-deg", type=float)
    simulation.add_argument("--energy-gev", type=float)
    simulation.add_argument("--topology", choices=["through-going", "starting"], default="through-going")
    parser.add_argument("--reco", choices=sorted(RECOS), default="pandel_track", help="reconstruction (reco_algo)")
    parser.add_argument("--reco-option", type=_reco_option, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--nsides", default=DEFAULT_NSIDES, help=f"NSIDE:REFINE_COUNT list (default {DEFAULT_NSIDES})")
    parser.add_argument("--predictive-scanning-threshold", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=0, help="processes; 0 runs every task in this process")
    parser.add_argument(
        "--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS, help="tries per task before the scan fails"
    )
    parser.add_argument("-o", "--output-dir")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class ProgressBar:
    """One self-overwriting line on a terminal; an occasional plain line otherwise (logs, CI)."""

    WIDTH = 30
    TERMINAL_INTERVAL_S = 0.2
    LOG_INTERVAL_S = 10.0

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last < (self.TERMINAL_INTERVAL_S if self._tty else self.LOG_INTERVAL_S):
            return
        self._last = now
        self._write(progress)

    def finish(self, progress: Progress) -> None:
        self._write(progress)
        if self._tty:
            self._stream.write("\n")

    def _write(self, progress: Progress) -> None:
        filled = int(self.WIDTH * progress.fraction)
        levels = " ".join(f"{n.nside}:{n.done}/{n.expected}" for n in progress.nsides)
        rate = f"{progress.rate_per_second:.1f} tasks/s" if progress.rate_per_second else "-"
        eta = f"ETA {progress.eta_seconds:.0f}s" if progress.eta_seconds is not None else ""
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {progress.fraction:4.0%} {levels}  {rate} {eta}"
        self._stream.write(("\r" + line) if self._tty else (line + "\n"))
        self._stream.flush()


if __name__ == "__main__":
    sys.exit(main())
