"""`skydriver local-scan`: a whole skymap scan on this machine, through the real services, in one command.

    skydriver local-scan                         # the bundled simulated track, default reco and nsides
    skydriver local-scan --reco dummy --nsides 8:0 --workers 1
    skydriver local-scan --simulate 42 --ra 120 --dec -30
    skydriver local-scan --event my_event.json --output out/
    skydriver local-scan --keep-running          # leave the services up afterwards, for the API and the CLI
    skydriver local-scan --stop                  # stop what --keep-running left

It starts the WMS, one TMS (local pilots) and skydriver as supervised children (logs in
`.local/logs/<service>.log`), submits the scan, shows its progress, writes the skymap and plots
(`.local/scans/<scan_id>/` unless `--output`), prints the best fit and contour areas, and stops
every process it started, also on Ctrl-C. Exit codes: 0 done, 1 the scan failed, 2 bad arguments
or event, 5 a service did not start or died, 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ..event.model import Event
from ..examples import example_event_path
from ..scanner.cli import load_or_simulate
from ..states import FINISHED, OVER
from .api import Connection, SkyDriverAPI
from .deployment import Deployment, ServiceRecord, default_home
from .errors import CliError, Exit, interrupted
from .local_services import (
    LOCATION,
    WITHHELD_PREFIXES,
    Launch,
    LocalSystem,
    add_backend_args,
    backends,
    queues_removed,
)
from .progress import ProgressLine, watch
from .results import report, save
from .scan_request import add_request_args, load_event, scan_request
from .supervisor import Supervisor, carries_marker, sweep, terminate

GRACE_S = 15.0
CLEANUP_TIMEOUT_S = 60.0
INTERRUPT_CLEANUP_TIMEOUT_S = 30.0


def add_local_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "local-scan",
        help="run a whole scan on this machine through the real services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group(
        "what to scan (default: the bundled simulated track)"
    ).add_mutually_exclusive_group()
    source.add_argument("--event", type=Path, metavar="FILE", help="event JSON (docs/science.md)")
    source.add_argument("--simulate", type=int, metavar="SEED", help="simulate a track with this seed")
    simulation = parser.add_argument_group("with --simulate (unset values are drawn from the seed)")
    simulation.add_argument("--ra", "--ra-deg", dest="ra_deg", type=float, help="source right ascension, degrees")
    simulation.add_argument("--dec", "--dec-deg", dest="dec_deg", type=float, help="source declination, degrees")
    simulation.add_argument("--energy-gev", type=float)
    simulation.set_defaults(topology="through-going")
    add_request_args(parser)
    run = parser.add_argument_group("the run")
    run.add_argument("--workers", type=int, default=2, help="pilots (default 2)")
    run.add_argument("--output", type=Path, metavar="DIR", help="where the result goes (.local/scans/<scan_id>/)")
    run.add_argument("--home", type=Path, default=default_home(), help="logs, state, tokens (default .local/)")
    run.add_argument("--keep-running", action="store_true", help="leave the services up afterwards")
    run.add_argument("--no-scan", action="store_true", help="with --keep-running: only start the services")
    run.add_argument("--stop", action="store_true", help="stop the services a --keep-running left up")
    run.add_argument("--reco-runner", choices=["callable", "command"], default="callable",
                     help="pilots run the reco in-process (callable, default) or one process per pixel")  # fmt: skip
    run.add_argument("--grace", type=float, default=GRACE_S, help="seconds from SIGTERM to SIGKILL (default 15)")
    add_backend_args(parser)
    parser.set_defaults(local=run_local_scan)


def run_local_scan(args: argparse.Namespace) -> int:
    if args.stop:
        return stop_deployment(args.home, args.grace)
    if args.no_scan and not args.keep_running:
        raise CliError("--no-scan only makes sense with --keep-running", Exit.USAGE)
    event = _event(args)  # a bad event is reported before anything starts
    with _exclusive(args.home):
        _refuse_running_deployment(args.home)
        for state in ("tms", "scanners"):  # the previous run's: no service of it is running any more
            shutil.rmtree(args.home / "state" / state, ignore_errors=True)
        run_id = uuid.uuid4().hex[:12]
        supervisor = Supervisor(args.home / "logs", run_id, WITHHELD_PREFIXES)
        keep = False
        try:
            code, keep = asyncio.run(_session(args, event, supervisor))
            return code
        finally:
            if not keep:
                _shutdown(supervisor, args.grace)
                Deployment.forget(args.home)


def _event(args: argparse.Namespace) -> Event:
    if args.simulate is not None:
        return load_or_simulate(args)
    return Event.from_dict(load_event(args.event or example_event_path()))


@contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    """One local-scan per home at a time: they would share logs and state."""
    lock_path = home / "run" / "local-scan.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"another local-scan is running with --home {home}", Exit.USAGE) from None
        yield


def _refuse_running_deployment(home: Path) -> None:
    deployment = Deployment.load(home)
    if deployment is None:
        return
    if any(carries_marker(s.pid, deployment.run_id) for s in deployment.services):
        raise CliError(
            f"the services of an earlier local-scan are still up ({deployment.skydriver_url}); "
            f"stop them with `skydriver local-scan --stop` or use another --home",
            Exit.USAGE,
        )
    Deployment.forget(home)  # a record of services long gone


def _say(message: str, out: TextIO = sys.stderr) -> None:
    print(f"local-scan: {message}", file=out, flush=True)


async def _session(args: argparse.Namespace, event: Event, supervisor: Supervisor) -> tuple[int, bool]:
    """Start, scan, report; returns (exit code, whether the services stay up). Ctrl-C/SIGTERM end it early."""
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        received.append(sig)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    run = _Run(args, event, supervisor)
    try:
        return await run.main(), args.keep_running
    except asyncio.CancelledError:
        if not received:
            raise
        task.uncancel()
        _say(f"{signal.Signals(received[0]).name}: stopping the scan and the services (again to hurry)")
        await run.abandon()
        return interrupted(received[0]), False
    finally:
        run.close()


class _Run:
    """The steps of one local scan, with what they learned along the way (for an orderly abandon)."""

    def __init__(self, args: argparse.Namespace, event: Event, supervisor: Supervisor) -> None:
        self.args = args
        self.event = event
        self.supervisor = supervisor
        self.system: LocalSystem | None = None
        self.api: SkyDriverAPI | None = None
        self.scan_id: str | None = None
        self.record: Path | None = None

    async def main(self) -> int:
        started = time.monotonic()
        found = await backends(self.args, self.args.home / "logs")
        launch = Launch(self.args.home, self.supervisor.marker, found, workers=self.args.workers,
                        reco_runner=self.args.reco_runner, grace=self.args.grace)  # fmt: skip
        self.system = await launch.start(self.supervisor)
        self.record = self._record(self.system).save(self.args.home)
        _say(f"services up in {time.monotonic() - started:.1f}s; logs in {self.supervisor.log_dir}/")
        self.api = SkyDriverAPI(Connection(self.system.skydriver_url, self.system.user_token))
        code = Exit.OK if self.args.no_scan else await self._scan(self.api)
        if self.args.keep_running:
            self._keep(self.system)
        elif code == Exit.OK:
            await self._await_cleanup(CLEANUP_TIMEOUT_S)
        return code

    def close(self) -> None:
        if self.api:
            self.api.close()

    async def _scan(self, api: SkyDriverAPI) -> int:
        """Submit the event, follow the scan, and deliver its result."""
        args = self.args
        args.cluster = args.cluster or [(LOCATION, args.workers)]
        manifest = await api.submit(scan_request(self.event.to_dict(), args, {"source": "local-scan"}))
        self.scan_id = scan_id = manifest["scan_id"]
        nsides = ",".join(f"{n}:{r}" for n, r in args.nsides.items())
        _say(f"scan {scan_id}: {args.reco} on run {self.event.run_id} event {self.event.event_id}, nsides {nsides}")
        started = time.monotonic()
        snap = await watch(api, scan_id, ProgressLine(sys.stderr), check=self.supervisor.check)
        if snap.state not in FINISHED:
            _say(f"scan {scan_id} did not finish: {snap.message or snap.state}")
            _say(f"see {self.supervisor.log_dir}/skydriver.log and {args.home / 'state' / 'scanners'}/")
            return Exit.SCAN_NOT_FINISHED
        _say(f"scan finished in {time.monotonic() - started:.1f}s ({snap.message})")
        result = await api.scan_get(scan_id, "/result")
        output = args.output or args.home / "scans" / scan_id
        summary, files = await asyncio.to_thread(save, result["skyscan_result"], self.event, output)
        report(summary, files, sys.stdout)
        return Exit.OK

    async def _await_cleanup(self, within_s: float) -> None:
        """Let the WMS take the scan's queues off the broker before the services go."""
        if not (self.api and self.system and self.scan_id):
            return
        manifest = await self.api.scan_get(self.scan_id, "/manifest", include_deleted=True)
        workflow_id = manifest.get("ewms_workflow_id")
        if not workflow_id or workflow_id == "pending-ewms":
            return
        if not await queues_removed(self.system.wms_url, self.system.wms_admin_token, within_s, [workflow_id]):
            _say(f"the WMS did not confirm removing workflow {workflow_id}'s queues within {within_s:.0f}s")

    async def abandon(self) -> None:
        """After Ctrl-C: stop the scan (its scanner and workflow) and let the WMS clean up, within a bound."""
        if not (self.api and self.scan_id):
            return
        try:
            await self.api.stop(self.scan_id, delete_completed=True)
            await self._await_cleanup(INTERRUPT_CLEANUP_TIMEOUT_S)
        except (CliError, asyncio.CancelledError):
            _say("not waiting for the scan's clean-up")

    def _record(self, system: LocalSystem) -> Deployment:
        return Deployment(
            run_id=self.supervisor.marker,
            skydriver_url=system.skydriver_url,
            wms_url=system.wms_url,
            token_file=str(system.token_file),
            wms_admin_token_file=str(system.wms_admin_token_file),
            services=[ServiceRecord(c.name, c.proc.pid, str(c.log), c.url) for c in self.supervisor.children],
        )

    def _keep(self, system: LocalSystem) -> None:
        home_flag = "" if self.args.home == default_home() else f" --home {self.args.home}"
        lines = [
            f"skydriver  {system.skydriver_url}",
            f"WMS        {system.wms_url}",
            f"token      {system.token_file}",
            f"logs       {self.supervisor.log_dir}/",
            f"record     {self.record} (pids)",
            f"to use     export SKYDRIVER_URL={system.skydriver_url} SKYDRIVER_TOKEN_FILE={system.token_file}",
            "           skydriver scan find    # the scan commands find these services by themselves too",
            f"to stop    skydriver local-scan --stop{home_flag}",
        ]
        _say("the services keep running:\n  " + "\n  ".join(lines), sys.stdout)


def _shutdown(supervisor: Supervisor, grace: float) -> None:
    """Stop every child (a second Ctrl-C/SIGTERM skips the graces) and say so."""
    hurry: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: hurry.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        if supervisor.children:
            _say("stopping the services")
        supervisor.stop_all(grace, give_up=lambda: bool(hurry))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quiesce(deployment: Deployment) -> None:
    """Before the services go: no scan left running, no queue left on the broker."""
    try:
        user_token, wms_admin_token = deployment.read_tokens()
    except OSError as exc:
        _say(f"cannot stop the scans first: {exc}")
        return
    asyncio.run(_stop_scans(deployment, user_token, wms_admin_token))


async def _stop_scans(deployment: Deployment, user_token: str, wms_admin_token: str) -> None:
    """Stop the scans still going, then let the WMS take every workflow's queues off the broker (bounded)."""
    try:
        async with SkyDriverAPI(Connection(deployment.skydriver_url, user_token)) as api:
            for manifest in await api.find({"scan_state": {"$nin": sorted(OVER)}}):
                _say(f"stopping scan {manifest['scan_id']} ({manifest['scan_state']})")
                await api.stop(manifest["scan_id"])
    except CliError as exc:
        _say(f"could not stop the scans still going: {exc.message}")
    if not await queues_removed(deployment.wms_url, wms_admin_token, CLEANUP_TIMEOUT_S, None):
        _say(f"the WMS did not confirm removing every workflow's queues within {CLEANUP_TIMEOUT_S:.0f}s")


def stop_deployment(home: Path, grace: float) -> int:
    """`--stop`: the services a `--keep-running` left, each checked to be ours before it is signalled."""
    deployment = Deployment.load(home)
    if deployment is None:
        _say(f"nothing to stop: no services recorded in {Deployment.path(home)}")
        return Exit.OK
    if all(carries_marker(s.pid, deployment.run_id) for s in deployment.services):
        _quiesce(deployment)
    for service in reversed(deployment.services):
        if carries_marker(service.pid, deployment.run_id):
            _say(f"stopping {service.name} (pid {service.pid})")
            terminate(service.pid, grace)
    left = sweep(deployment.run_id, grace)
    if left:
        _say(f"stopped {len(left)} leftover process{'es' if len(left) > 1 else ''} of the run: {left}")
    Deployment.forget(home)
    _say("stopped")
    return Exit.OK
