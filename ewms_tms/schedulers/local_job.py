"""`python -m ewms_tms.schedulers.local_job [--kill-grace S] [--max-runtime S] JOBDIR -- COMMAND...`

The local backend's stand-in for HTCondor's starter and shadow: it runs one pilot and writes
the job's life to `JOBDIR/events.jsonl` (execute, remove, terminated with the exit code).
Because this record is a file and not the TMS's memory, a TMS that restarts finds out how
its pilots ended, exactly as it would from an HTCondor job event log.

SIGTERM (the TMS's cancel) is passed on to the pilot, which drains; after `--kill-grace`
seconds the pilot is killed. `--max-runtime` plays HTCondor's `periodic_remove`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


def record(jobdir: Path, event: str, **fields: Any) -> None:
    """Append one event (a single small write with O_APPEND: never interleaved with another writer's)."""
    line = json.dumps({"event": event, "ts": time.time(), **fields}) + "\n"
    fd = os.open(jobdir / EVENTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_events(jobdir: Path) -> list[dict[str, Any]]:
    """Every event recorded for the job (a torn last line, from a crash mid-write, is skipped)."""
    try:
        text = (jobdir / EVENTS_FILE).read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


class Job:
    """One pilot process and the rules for stopping it."""

    def __init__(self, jobdir: Path, command: list[str], kill_grace: float) -> None:
        self.jobdir = jobdir
        self.kill_grace = kill_grace
        self.child = subprocess.Popen(command)
        self._stopping = threading.Event()

    def stop(self, reason: str | None) -> None:
        """Ask the pilot to drain; kill it if it is still there after the grace period."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if reason:
            record(self.jobdir, "remove", reason=reason)
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        timer = threading.Timer(self.kill_grace, self._kill)
        timer.daemon = True
        timer.start()

    def _kill(self) -> None:
        if self.child.poll() is None:
            self.child.kill()

    def wait(self) -> int:
        return self.child.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Our options before `--`, the pilot's command line after it (left untouched)."""
    parser = argparse.ArgumentParser(prog="local_job", description=__doc__)
    parser.add_argument("--kill-grace", type=float, default=30.0)
    parser.add_argument("--max-runtime", type=float, default=0.0, help="0: no limit")
    parser.add_argument("jobdir", type=Path)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1 :]
    if not args.command:
        parser.error("no command given after --")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        job = Job(args.jobdir, args.command, args.kill_grace)
    except OSError as exc:
        print(f"local_job: cannot start {args.command[0]}: {exc}", file=sys.stderr, flush=True)
        record(args.jobdir, "terminated", exit_code=127)
        return 127
    record(args.jobdir, "execute", pid=os.getpid(), pilot_pid=job.child.pid)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: job.stop(None))
    if args.max_runtime > 0:
        limit = threading.Timer(args.max_runtime, job.stop, [f"max_worker_runtime of {args.max_runtime:g}s reached"])
        limit.daemon = True
        limit.start()
    code = job.wait()
    if code >= 0:
        record(args.jobdir, "terminated", exit_code=code)
        return code
    record(args.jobdir, "terminated", exit_code=None, signal=-code)
    return 128 - code


if __name__ == "__main__":
    sys.exit(main())
