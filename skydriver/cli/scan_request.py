"""A scan request (`POST /scan`) from command-line options: one builder for `scan submit`, local-scan, alert-hook.

The event is checked here with the same `Event.from_dict` skydriver uses, so a bad file is named
before anything is sent; everything else (nsides, clusters, options) skydriver checks and names in
its 400.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..event.model import Event, EventFormatError
from ..recos import RECOS
from ..scanner.cli import DEFAULT_NSIDES, nsides_argument
from .errors import CliError, Exit

DEFAULT_RECO = "pandel_track"
Scalar = str | int | float | bool


def key_value(label: str) -> Callable[[str], tuple[str, Scalar]]:
    """An argparse type for `KEY=VALUE`; a VALUE that reads as a JSON number or boolean becomes one."""

    def parse(text: str) -> tuple[str, Scalar]:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{label} {text!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        return key, value if isinstance(value, str | int | float | bool) else raw

    return parse


def cluster(text: str) -> tuple[str, int]:
    """`LOCATION=N_WORKERS` (argparse type)."""
    location, sep, count = text.partition("=")
    if not sep or not location or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"cluster {text!r}: expected LOCATION=N_WORKERS with N_WORKERS >= 1")
    return location, int(count)


def add_request_args(parser: argparse.ArgumentParser, *, priority: int = 0) -> None:
    group = parser.add_argument_group("scan request")
    group.add_argument(
        "--reco", choices=sorted(RECOS), default=DEFAULT_RECO, help=f"reco_algo (default {DEFAULT_RECO})"
    )
    group.add_argument(
        "--nsides",
        type=nsides_argument,
        default=nsides_argument(DEFAULT_NSIDES),
        help=f"NSIDE:REFINE,... ({DEFAULT_NSIDES})",
    )
    group.add_argument("--priority", type=int, default=priority, help=f"higher runs first (default {priority})")
    group.add_argument("--tag", type=key_value("tag"), action="append", default=[], metavar="KEY=VALUE",
                       help="classifier to find the scan by later (repeatable)")  # fmt: skip
    group.add_argument("--cluster", type=cluster, action="append", default=[], metavar="LOCATION=N",
                       help="where to run pilots and how many (repeatable; default: skydriver's)")  # fmt: skip
    group.add_argument("--reco-option", type=key_value("reco option"), action="append", default=[], metavar="K=V")
    group.add_argument("--docker-tag", default="latest", help="scanner and reco image tag (default latest)")
    group.add_argument("--max-pixel-reco-time", type=int, metavar="SECONDS", help="per pixel task (default 1800)")


def load_event(path: Path) -> dict[str, Any]:
    """The event document in `path`, checked; a bad file is a usage error naming the file and the problem."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", Exit.USAGE) from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{path} is not JSON: {exc}", Exit.USAGE) from None
    return checked_event(doc, str(path))


def checked_event(doc: Any, source: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise CliError(f"{source}: an event is a JSON object", Exit.USAGE)
    try:
        Event.from_dict(doc)
    except EventFormatError as exc:
        raise CliError(f"{source}: {exc}", Exit.USAGE) from None
    return doc


def scan_request(
    event: Mapping[str, Any], args: argparse.Namespace, classifiers: Mapping[str, Scalar] | None = None
) -> dict[str, Any]:
    """The POST /scan body for `event` with the options in `args` (see `add_request_args`)."""
    request: dict[str, Any] = {
        "reco_algo": args.reco,
        "event_i3live_json": dict(event),
        "nsides": {str(nside): refine for nside, refine in args.nsides.items()},
        "real_or_simulated_event": "real" if event.get("is_real_event") else "simulated",
        "priority": args.priority,
        "classifiers": {**dict(classifiers or {}), **dict(args.tag)},
        "docker_tag": args.docker_tag,
    }
    if args.cluster:
        request["request_clusters"] = dict(args.cluster)
    if args.reco_option:
        request["reco_options"] = dict(args.reco_option)
    if args.max_pixel_reco_time:
        request["max_pixel_reco_time"] = args.max_pixel_reco_time
    return request
