"""`skydriver scan ...`: submit, watch, fetch, find, stop and rescan scans over skydriver's REST API.

Machine-readable answers (a scan id, `--json`) go to stdout; progress and remarks to stderr, so
`ID=$(skydriver scan submit event.json)` works in a script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..event.model import Event
from ..scanner.plots import plot_event
from ..scanner.result import MultiResolutionMap, fits_from_skymap
from ..states import FINISHED
from .api import SkyDriverAPI, add_connection_args
from .errors import CliError, Exit
from .progress import ProgressLine, Snapshot, snapshot, watch
from .results import report, summarize
from .scan_request import add_request_args, key_value, load_event, scan_request

Command = Callable[[SkyDriverAPI, argparse.Namespace], Awaitable[int]]


def add_scan_parser(commands: Any) -> None:
    """The `scan` command and its subcommands, each with the connection options."""
    scan = commands.add_parser("scan", help="submit and follow scans on a running skydriver")
    sub = scan.add_subparsers(dest="scan_command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, helptext: str, scan_id: bool = True) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=helptext, description=helptext)
        if scan_id:
            parser.add_argument("scan_id", metavar="ID")
        add_connection_args(parser)
        parser.set_defaults(run=run)
        return parser

    submit = command("submit", submit_scan, "submit a scan of an event; prints its id", scan_id=False)
    submit.add_argument("event", type=Path, metavar="EVENT.json")
    add_request_args(submit)
    command("status", show_status, "the scan's state and progress").add_argument("--json", action="store_true")
    command("wait", wait_scan, "follow the scan until it is over (exit 0: finished, 1: failed or stopped)")
    result = command("result", get_result, "best fit and contour areas; write the skymap and plots")
    result.add_argument("--json", type=Path, metavar="OUT.json", help="write the skymap (icecube-skyreader format)")
    result.add_argument("--plot", type=Path, metavar="OUT.png", help="write the sky plot (and OUT_zoom.png)")
    find = command("find", find_scans, "scans by classifier (--tag) or event", scan_id=False)
    find.add_argument("--tag", type=key_value("tag"), action="append", default=[], metavar="KEY=VALUE")
    find.add_argument("--run-id", type=int, help="event_metadata.run_id")
    find.add_argument("--event-id", type=int, help="event_metadata.event_id")
    find.add_argument("--include-deleted", action="store_true")
    find.add_argument("--json", action="store_true", help="print the manifests as JSON")
    stop = command("stop", stop_scan, "stop (delete) a scan: aborts its workflow and scanner")
    stop.add_argument("--delete-completed", action="store_true", help="also delete a scan that finished")
    rescan = command("rescan", rescan_scan, "scan the same request again; prints the new id")
    rescan.add_argument("--abort-first", action="store_true", help="stop the old scan first")
    rescan.add_argument("--replace", action="store_true", help="mark the old scan as replaced by the new one")


async def submit_scan(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    manifest = await api.submit(scan_request(load_event(args.event), args))
    print(f"submitted scan {manifest['scan_id']} ({manifest.get('scan_state', 'pending')})", file=sys.stderr)
    print(manifest["scan_id"])
    return Exit.OK


async def show_status(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(await api.scan_get(args.scan_id, "/status", include_deleted=True), indent=2))
        return Exit.OK
    snap = await snapshot(api, args.scan_id)
    print(f"{snap.scan_id}: {snap.message or snap.state}")
    print(snap.line())
    return Exit.OK


async def wait_scan(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    return outcome(await watch(api, args.scan_id, ProgressLine(sys.stderr)))


def outcome(snap: Snapshot) -> int:
    """0 when the scan finished (a partial finish is said on stderr), 1 when it failed or was stopped."""
    if snap.state in FINISHED:
        if snap.state != "SCAN_FINISHED_SUCCESSFULLY":
            print(f"scan {snap.scan_id}: {snap.message}", file=sys.stderr)
        return Exit.OK
    print(f"scan {snap.scan_id} did not finish: {snap.message or snap.state}", file=sys.stderr)
    return Exit.SCAN_NOT_FINISHED


async def get_result(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    result = await api.scan_get(args.scan_id, "/result", include_deleted=True)
    if not result:
        status = await api.scan_get(args.scan_id, "/status", include_deleted=True)
        print(f"scan {args.scan_id} has no result yet: {status.get('message', status['scan_state'])}", file=sys.stderr)
        return Exit.SCAN_NOT_FINISHED
    event_doc = await api.scan_get(args.scan_id, "/i3-event", include_deleted=True)
    event = Event.from_dict(_event_object(event_doc["event_i3live_json"]))
    sky = MultiResolutionMap(fits_from_skymap(result["skyscan_result"]))
    files: dict[str, list[Path]] = {}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result["skyscan_result"]))
        files["result"] = [args.json]
    if args.plot:
        files["plots"] = plot_event(
            sky, event, args.plot, args.plot.with_name(f"{args.plot.stem}_zoom{args.plot.suffix}")
        )
    if not result.get("is_final"):
        print(f"scan {args.scan_id}: this result is partial, the scan is still running", file=sys.stderr)
    report(summarize(sky, event), files, sys.stdout)
    return Exit.OK


def _event_object(event: Any) -> dict[str, Any]:
    """skydriver stores the event as it was sent: an object, or a JSON string (upstream's clients send that)."""
    doc = json.loads(event) if isinstance(event, str) else event
    if not isinstance(doc, dict):
        raise CliError("skydriver returned an event that is not a JSON object", Exit.REFUSED)
    return doc


async def find_scans(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    query: dict[str, Any] = {f"classifiers.{key}": value for key, value in args.tag}
    if args.run_id is not None:
        query["event_metadata.run_id"] = args.run_id
    if args.event_id is not None:
        query["event_metadata.event_id"] = args.event_id
    manifests = await api.find(query, include_deleted=args.include_deleted)
    if args.json:
        print(json.dumps(manifests, indent=2))
        return Exit.OK
    for manifest in sorted(manifests, key=lambda m: m.get("timestamp") or 0):
        print(_manifest_line(manifest))
    print(f"{len(manifests)} scan{'' if len(manifests) == 1 else 's'}", file=sys.stderr)
    return Exit.OK


def _manifest_line(manifest: dict[str, Any]) -> str:
    event = manifest.get("event_metadata") or {}
    when = manifest.get("timestamp")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, int | float) else "-"
    tags = ",".join(f"{k}={v}" for k, v in sorted((manifest.get("classifiers") or {}).items()))
    deleted = " (deleted)" if manifest.get("is_deleted") else ""
    return (
        f"{manifest['scan_id']}  {stamp}  run {event.get('run_id')} event {event.get('event_id')}  "
        f"priority {manifest.get('priority', 0)}  {manifest.get('scan_state', '?')}{deleted}  {tags}"
    )


async def stop_scan(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    answer = await api.stop(args.scan_id, delete_completed=args.delete_completed)
    print(f"stopped scan {args.scan_id}: {answer['manifest'].get('scan_state', 'deleted')}", file=sys.stderr)
    return Exit.OK


async def rescan_scan(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    manifest = await api.rescan(args.scan_id, abort_first=args.abort_first, replace_scan=args.replace)
    print(f"scan {manifest['scan_id']} rescans {args.scan_id}", file=sys.stderr)
    print(manifest["scan_id"])
    return Exit.OK
