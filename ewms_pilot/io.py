"""Event data <-> task files, with upstream's rules.

A string event is written verbatim whatever the extension (a task may expect YAML, CSV or
a JSON document sent as text); any other JSON value can only go to a `.json` infile, since
writing e.g. a dict to `infile.in` would force the task to guess a serialisation. A `.json`
outfile is parsed; any other outfile is sent as its text. A task that exits 0 without an
outfile has nothing to say about this event: that is success with nothing to publish.

These are blocking functions; the pilot calls them in a thread.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .errors import InvalidDataForInfileException, InvalidDataFromOutfileException


@dataclasses.dataclass(frozen=True)
class TaskOutput:
    """What a task produced: `present` is False when there is nothing to publish."""

    data: Any = None
    present: bool = True


NO_OUTPUT = TaskOutput(None, present=False)


def write_infile(data: Any, path: Path) -> None:
    """Write an event's data to `path` (see module docstring for the rules)."""
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    elif isinstance(data, bytes | bytearray):
        path.write_bytes(bytes(data))
    elif path.suffix == ".json":
        try:
            path.write_text(json.dumps(data), encoding="utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidDataForInfileException(f"event data is not JSON-serialisable: {exc}", path) from None
    else:
        raise InvalidDataForInfileException(
            f"event data of type {type(data).__name__} must be a string, or go to an infile with a "
            "'.json' extension (set EWMS_PILOT_INFILE_EXT=.json)",
            path,
        )


def read_outfile(path: Path) -> TaskOutput:
    """Read a task's outfile; a missing outfile means nothing to publish."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return NO_OUTPUT
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDataFromOutfileException(
            "outfile is not UTF-8 text, and events are JSON (binary output cannot be published)", path
        ) from None
    if path.suffix != ".json":
        return TaskOutput(text)
    try:
        return TaskOutput(json.loads(text))
    except json.JSONDecodeError as exc:
        raise InvalidDataFromOutfileException(f"outfile is not valid JSON: {exc}", path) from None
