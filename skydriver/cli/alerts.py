"""`skydriver alert-hook`: realtime alerts in, high-priority scans out, one scan per run/event.

An alert is our event JSON (docs/science.md), bare or wrapped with facts about the alert:

    {"alert": {"alert_type": "gold", "alert_id": "IceCube-250101A", ...}, "event": {<event>}}

Alerts arrive on stdin (one per line, or simply concatenated), in files, or as new `*.json` files
in a watched directory. Each alert gets exactly one log line: the scan it started, or why none
(a duplicate of scan X, an invalid alert and the reason, or skydriver could not be reached).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from .api import SkyDriverAPI, add_connection_args
from .errors import CliError, Exit
from .scan_request import Scalar, add_request_args, checked_event, scan_request

LOGGER = logging.getLogger("skydriver.alert-hook")
T = TypeVar("T")
ALERT_PRIORITY = 10
WATCH_INTERVAL_S = 2.0
SUBMIT_ATTEMPTS = 3
RETRY_DELAY_S = 2.0


class Outcome(enum.Enum):
    """How one alert went; the hook exits with the highest `exit_code` of its alerts."""

    STARTED = Exit.OK, "started"
    DUPLICATE = Exit.OK, "duplicate"
    INVALID = Exit.USAGE, "invalid"
    UNREACHABLE = Exit.UNREACHABLE, "unreachable"
    REFUSED = Exit.REFUSED, "refused"

    @property
    def exit_code(self) -> Exit:
        return self.value[0]


class InvalidAlert(ValueError):
    """The document is not an alert this hook can scan; the message says why."""


@dataclasses.dataclass(frozen=True)
class Alert:
    source: str
    event: dict[str, Any]
    meta: dict[str, Any]

    @property
    def run_id(self) -> int:
        return int(self.event["run_id"])

    @property
    def event_id(self) -> int:
        return int(self.event["event_id"])

    def classifiers(self) -> dict[str, Scalar]:
        """The alert's own scalar facts, plus where the scan came from and which event it is: what `scan find` uses."""
        facts = {k: v for k, v in self.meta.items() if isinstance(v, str | int | float | bool)}
        return {**facts, "source": "alert-hook", "run_id": self.run_id, "event_id": self.event_id}


def parse_alert(text: str, source: str) -> Alert:
    """An `Alert` from one JSON text; `InvalidAlert` names what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidAlert(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise InvalidAlert("an alert is a JSON object")
    meta: Any = {}
    if "event" in doc:
        meta, doc = doc.get("alert", {}), doc["event"]
        if not isinstance(meta, dict):
            raise InvalidAlert('"alert" must be an object of facts about the alert')
    try:
        event = checked_event(doc, "event")
    except CliError as exc:
        raise InvalidAlert(exc.message) from None
    for key in ("run_id", "event_id"):
        if key in meta and meta[key] != event[key]:
            raise InvalidAlert(f"alert.{key} {meta[key]!r} differs from the event's {event[key]!r}")
    return Alert(source, event, meta)


class JSONTexts:
    """Cuts a stream into top-level JSON texts, one per line or concatenated, fed in pieces of any size.

    It tracks only bracket depth and strings; each text is then parsed properly. Text outside any
    object or array (a stray line) is handed out up to the end of its line, so it is reported as an
    invalid alert instead of blocking the stream.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._scanned = 0  # characters of the buffer already looked at
        self._start: int | None = None  # where the current text began
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        texts: list[str] = []
        i = self._scanned
        while i < len(self._buffer):
            if self._start is None:
                i, stray = self._begin(i)
                if stray is None:
                    break
                if stray:
                    texts.append(stray)
                continue
            if self._step(self._buffer[i]):
                texts.append(self._buffer[self._start : i + 1])
                self._start = None
            i += 1
        self._compact(i)
        return texts

    def close(self) -> list[str]:
        """What is left when the stream ends: an unfinished text, to be reported as invalid."""
        rest, self._buffer, self._start = self._buffer.strip(), "", None
        return [rest] if rest else []

    def _begin(self, i: int) -> tuple[int, str | None]:
        """Skip blanks to the next text: (next index, "" to go on | a stray line | None to wait for more input)."""
        char = self._buffer[i]
        if char.isspace():
            return i + 1, ""
        if char in "{[":
            self._start, self._depth, self._in_string, self._escaped = i, 0, False, False
            return i, ""
        end = self._buffer.find("\n", i)
        return (i, None) if end < 0 else (end + 1, self._buffer[i:end].strip())

    def _step(self, char: str) -> bool:
        """Advance over one character of a text; True when it closed the text."""
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = False
        elif char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]":
            self._depth -= 1
            return self._depth == 0
        return False

    def _compact(self, scanned: int) -> None:
        cut = self._start if self._start is not None else scanned
        self._buffer = self._buffer[cut:]
        self._scanned = scanned - cut
        if self._start is not None:
            self._start = 0


class AlertHook:
    """Turns alerts into scan requests, asking skydriver first whether the run/event is already scanned."""

    def __init__(self, api: SkyDriverAPI, args: argparse.Namespace) -> None:
        self.api = api
        self.args = args
        self.exit_code = Exit.OK
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)

    async def handle(self, text: str, source: str) -> Outcome:
        outcome = await self._handle(text, source)
        self.counts[outcome] += 1
        self.exit_code = max(self.exit_code, outcome.exit_code)
        return outcome

    async def _handle(self, text: str, source: str) -> Outcome:
        try:
            alert = parse_alert(text, source)
        except InvalidAlert as exc:
            LOGGER.warning("%s: invalid alert: %s", source, exc)
            return Outcome.INVALID
        what = f"{source}: run {alert.run_id} event {alert.event_id}"
        try:
            existed, manifest = await self._retrying(self._scan_once, alert)
        except CliError as exc:
            LOGGER.error("%s: no scan started: %s", what, exc.message)
            return Outcome.UNREACHABLE if exc.code == Exit.UNREACHABLE else Outcome.REFUSED
        if existed:
            LOGGER.info("%s: duplicate of scan %s (%s); no new scan", what, manifest["scan_id"], manifest["scan_state"])
            return Outcome.DUPLICATE
        LOGGER.info("%s: started scan %s (priority %s)", what, manifest["scan_id"], self.args.priority)
        return Outcome.STARTED

    async def _scan_once(self, alert: Alert) -> tuple[bool, dict[str, Any]]:
        """(True, the event's first scan) or (False, the new scan), the check and the submission as one step.

        One step, so that a retry after a lost answer to the submission finds the scan it had started.
        """
        if not self.args.allow_duplicates:
            query = {"event_metadata.run_id": alert.run_id, "event_metadata.event_id": alert.event_id}
            if existing := await self.api.find(query):
                return True, min(existing, key=lambda m: m.get("timestamp") or 0)
        return False, await self.api.submit(scan_request(alert.event, self.args, alert.classifiers()))

    async def _retrying(self, step: Callable[[Alert], Awaitable[T]], alert: Alert) -> T:
        """A few tries when skydriver is unreachable (a restart, a blip); a refusal is final at once."""
        attempt = 1
        while True:
            try:
                return await step(alert)
            except CliError as exc:
                if exc.code != Exit.UNREACHABLE or attempt == SUBMIT_ATTEMPTS:
                    raise
            await asyncio.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
            attempt += 1


def add_alert_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "alert-hook",
        help="turn realtime alerts (stdin, files, a watched directory) into high-priority scans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="alert files ('-' or none: stdin)")
    parser.add_argument(
        "--watch", type=Path, metavar="DIR", help="scan every new *.json file in DIR (runs until stopped)"
    )
    parser.add_argument("--interval", type=float, default=WATCH_INTERVAL_S, help="seconds between looks at DIR")
    parser.add_argument("--allow-duplicates", action="store_true", help="scan an event even if it has a scan already")
    add_request_args(parser, priority=ALERT_PRIORITY)
    add_connection_args(parser)
    parser.set_defaults(run=run_alert_hook)


async def run_alert_hook(api: SkyDriverAPI, args: argparse.Namespace) -> int:
    _log_to_stderr()
    hook = AlertHook(api, args)
    async for text, source in _alerts(args):
        await hook.handle(text, source)
    counts = ", ".join(f"{n} {o.value[1]}" for o, n in hook.counts.items() if n)
    LOGGER.info("done: %s", counts or "no alerts")
    return int(hook.exit_code)


async def _alerts(args: argparse.Namespace) -> AsyncIterator[tuple[str, str]]:
    if args.watch:
        async for item in _watched(args.watch, args.interval):
            yield item
        return
    for path in args.files or [Path("-")]:
        if str(path) == "-":
            async for item in _stdin():
                yield item
        else:
            for item in _file(path):
                yield item


def _file(path: Path) -> Iterable[tuple[str, str]]:
    try:
        text = path.read_text()
    except OSError as exc:
        LOGGER.warning("%s: invalid alert: cannot read it: %s", path, exc.strerror)
        return []
    splitter = JSONTexts()
    texts = splitter.feed(text) + splitter.close()
    return [(t, str(path) if len(texts) == 1 else f"{path}#{n}") for n, t in enumerate(texts, 1)]


async def _stdin() -> AsyncIterator[tuple[str, str]]:
    """Alerts as they arrive on stdin (a pipe from an alert stream stays open for days)."""
    splitter = JSONTexts()
    count = 0
    while line := await asyncio.to_thread(sys.stdin.readline):
        for text in splitter.feed(line):
            count += 1
            yield text, f"stdin#{count}"
    for text in splitter.close():
        yield text, f"stdin#{count + 1}"


async def _watched(directory: Path, interval: float) -> AsyncIterator[tuple[str, str]]:
    """New `*.json` files in `directory` until SIGINT/SIGTERM; writers should write elsewhere and rename."""
    if not await asyncio.to_thread(directory.is_dir):
        raise CliError(f"--watch {directory}: not a directory", Exit.USAGE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    LOGGER.info("watching %s for *.json alerts every %ss", directory, interval)
    seen: set[Path] = set()
    while not stop.is_set():
        for path in sorted(set(await asyncio.to_thread(directory.glob, "*.json")) - seen):
            seen.add(path)
            for item in _file(path):
                yield item
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s alert-hook: %(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
