"""The watchdog loop: restarts a scanner that died or went silent (once), then gives up; cleans up ended scans.

A scanner reports (PATCHes its manifest) every few seconds; each report is its heartbeat. One
that is no longer alive, or silent longer than `SKYDRIVER_WATCHDOG_TIMEOUT`, is restarted once
with a fresh token and the same queues: it resumes from its checkpoints, so nothing done is
redone. If the restarted one fails too, the scan fails (`FAILED__SCANNER`) and its workflow is
aborted. A scan that ended (finished, failed, stopped, deleted) is marked `cleanup_pending` until
its workflow is deactivated at the WMS and its scanner stopped; each pass retries what is left,
so a WMS outage delays the cleanup but never loses it.

A healthy scanner can still wait forever: when every pilot of its workflow has ended (they hit
their idle timeout, retired on failures, or an operator removed them) with pixels left to do.
The watchdog asks the WMS about each running scan's workflow; once it has had no taskforce that
can still run pilots for `SKYDRIVER_NO_PILOTS_TIMEOUT` (time for someone to add workers), the
scan fails (`FAILED__WORKFLOW`) with what the WMS said, instead of waiting on nobody.
"""

import logging
from typing import Any

from ewms_rest.client import ServiceRefused, ServiceUnavailable
from ewms_rest.loops import run_forever

from .launchers import LauncherError
from .scans import PENDING_WORKFLOW, Scans
from .states import RUNNING, ScanState

LOGGER = logging.getLogger(__name__)
MAX_RESTARTS = 1
Doc = dict[str, Any]


class Watchdog:
    name = "watchdog"

    def __init__(self, scans: Scans) -> None:
        self.scans = scans
        self.db = scans.db
        self.config = scans.config

    async def run(self) -> None:
        await run_forever(self.name, self.run_once, self.scans.wakers.watchdog, self.config.watchdog_interval)

    async def run_once(self) -> None:
        for doc in await self.db.manifests.running():
            await self.check(doc)
        for doc in await self.db.manifests.cleanup_pending():
            await self.scans.clean_up(doc)

    async def check(self, doc: Doc) -> None:
        """Leave a healthy scanner alone; restart a failed one once; then fail the scan."""
        problem = await self._problem(doc["scanner"])
        if problem is None:
            await self._check_pilots(doc)
            return
        scan_id = doc["scan_id"]
        if doc["scanner"]["restarts"] < MAX_RESTARTS:
            await self._restart(doc, problem)
        else:
            reason = f"{problem} after {doc['scanner']['restarts']} restart(s)"
            await self.scans.fail(scan_id, ScanState.FAILED__SCANNER, reason)

    async def _problem(self, scanner: Doc) -> str | None:
        """What is wrong with the scanner, or None. A launcher that cannot tell is no reason to act."""
        silent_for = self.scans.clock() - scanner["last_heartbeat"]
        if silent_for > self.config.watchdog_timeout:
            return f"the scanner sent no report for {silent_for:.0f} s"
        try:
            alive = await self.scans.launcher.alive(scanner["handle"])
        except LauncherError as exc:
            LOGGER.warning("scanner %s: cannot tell whether it is alive: %s", scanner["handle"], exc)
            return None
        return None if alive else "the scanner exited"

    async def _check_pilots(self, doc: Doc) -> None:
        """Fail a scan whose workflow has had no pilots to come for `no_pilots_timeout`; see the module doc."""
        scan_id, workflow_id = doc["scan_id"], doc["ewms_workflow_id"]
        if workflow_id == PENDING_WORKFLOW:
            return
        try:
            status = await self.scans.ewms.status(workflow_id)
        except (ServiceUnavailable, ServiceRefused) as exc:
            LOGGER.warning("scan %s: cannot ask the WMS about workflow %s: %s", scan_id, workflow_id, exc)
            return
        now, since = self.scans.clock(), doc.get("pilots_gone_since")
        if status.alive:
            if since is not None:
                await self.db.manifests.update(scan_id, {"pilots_gone_since": None}, now)
            return
        if since is None:
            LOGGER.warning("scan %s: workflow %s has no pilots left or to come", scan_id, workflow_id)
            await self.db.manifests.update(scan_id, {"pilots_gone_since": now}, now)
            return
        if now - since >= self.config.no_pilots_timeout:
            phases = ", ".join(f"{n} {phase}" for phase, n in sorted(status.phases.items())) or "no taskforces"
            why = f"; failed: {'; '.join(status.failed_reasons)}" if status.failed_reasons else ""
            reason = (
                f"workflow {workflow_id} had no pilots left or to come for {now - since:.0f} s with the scan unfinished"
                f" (taskforces: {phases}{why}); add workers sooner with POST /scan/{scan_id}/actions/add-workers,"
                " or rescan"
            )
            await self.scans.fail(scan_id, ScanState.FAILED__WORKFLOW, reason)

    async def _restart(self, doc: Doc, problem: str) -> None:
        """Replace the scanner with a new instance that resumes from the scan's checkpoints."""
        scan_id, old = doc["scan_id"], doc["scanner"]
        restarts = old["restarts"] + 1
        LOGGER.warning("scan %s: %s; restarting it (restart %d of %d)", scan_id, problem, restarts, MAX_RESTARTS)
        try:
            await self.scans.launcher.stop(old["handle"])
            handle = await self.scans.launcher.start(await self.scans.scanner_instance(scan_id, attempt=restarts))
        except LauncherError as exc:
            LOGGER.warning("scan %s: restart failed (%s); trying again next pass", scan_id, exc)
            return
        # only if the scan still runs and no one else (another replica's watchdog) replaced this scanner
        where = {"scanner.handle": old["handle"], "scan_state": {"$in": [str(s) for s in RUNNING]}, "is_deleted": False}
        scanner = self.scans.scanner_record(handle, restarts)
        if await self.db.manifests.update(scan_id, {"scanner": scanner}, self.scans.clock(), where) is None:
            current = await self.db.manifests.get(scan_id)
            if current is None or (current["scanner"] or {}).get("handle") != handle:
                await self.scans.launcher.stop(handle)  # ours is not the one on record: no twin may run
