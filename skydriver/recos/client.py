"""The reco client: what a pilot runs for each pixel task.

Two ways in, one contract (`skydriver.recos.run_pixel_task`):

    python -m skydriver.recos.client --in IN --out OUT     # a command task: EWMS_PILOT_TASK_ARGS
    skydriver.recos.client:run                             # a callable: EWMS_PILOT_TASK_CALLABLE

`IN` holds one `PixelTask` as JSON, `OUT` gets one `PixelResult` as JSON. A failure (e.g.
crash_dummy's `RecoCrash`) exits 1 with the reason on the last line of stderr, or raises from `run`:
the pilot fails the event and the broker redelivers it, up to the workflow's delivery limit.

The event comes from the environment (`skydriver.recos.transport`), read once per process. A
command task sees the workflow's task environment as its own; an in-process callable runs inside
the pilot, which keeps the task environment in `EWMS_PILOT_TASK_ENV_JSON` instead of exporting it,
so `run` reads it from there too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..event.model import Event
from . import RecoCrash, run_pixel_task
from .transport import event_from_env

PILOT_TASK_ENV = "EWMS_PILOT_TASK_ENV_JSON"
# a reco failing on purpose, a bad task or event file, no event in the environment: the reason is enough
EXPECTED_FAILURES = (RecoCrash, OSError, ValueError)


def task_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with the pilot's task environment (if any) on top."""
    pilot_task_env: dict[str, str] = json.loads(environ.get(PILOT_TASK_ENV) or "{}")
    return {**environ, **pilot_task_env}


@functools.cache
def _event() -> Event:
    """The scan's event, decoded once: a pilot runs thousands of tasks of it."""
    return event_from_env(task_environ(os.environ))


def run(data: Mapping[str, Any]) -> dict[str, Any]:
    """`EWMS_PILOT_TASK_CALLABLE=skydriver.recos.client:run`: a `PixelTask` dict in, a `PixelResult` dict out."""
    return run_pixel_task(data, _event())


def main(argv: list[str] | None = None) -> int:
    """Run one task file to one result file; 1 with the reason on stderr if anything fails."""
    parser = argparse.ArgumentParser(prog="python -m skydriver.recos.client", description=__doc__.split("\n")[0])
    parser.add_argument("--in", dest="infile", type=Path, required=True, help="PixelTask JSON")
    parser.add_argument("--out", dest="outfile", type=Path, required=True, help="where the PixelResult JSON goes")
    args = parser.parse_args(argv)
    try:
        result = run(json.loads(args.infile.read_text()))
        args.outfile.write_text(json.dumps(result))
    except Exception as exc:
        if not isinstance(exc, EXPECTED_FAILURES):
            traceback.print_exc()  # a bug: the traceback, then the reason a person reads first
        print(f"reco failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
