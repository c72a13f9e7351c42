"""The starter loop: takes scans from the backlog, requests their workflows, launches their scanners.

Order: highest `priority` first, then oldest; at most `SKYDRIVER_MAX_ACTIVE_SCANS` scanners at
once. A scan is claimed with one atomic update, so two skydriver replicas never start it twice;
the claim is a lease, so a replica that dies mid-start leaves the scan to the next one.

Nothing is submitted twice: the workflow id is recorded as soon as the WMS hands it out, and a
start that was cut short before that finds the workflow at the WMS (`request_workflow` looks for
the scan's workflow before it asks for a new one). The WMS refusing the workflow fails the scan
(`FAILED__WORKFLOW`); the WMS or the launcher not answering puts the scan back with a growing
delay, and ends this pass (the next scan would meet the same outage).
"""

import asyncio
import logging
import os
import socket
import uuid
from typing import Any

from ewms_rest.client import ServiceRefused, ServiceUnavailable
from ewms_rest.loops import run_forever

from .event import Event
from .ewms import WorkflowSpec
from .launchers import LauncherError
from .scans import PENDING_WORKFLOW, Scans
from .states import ScanState

LOGGER = logging.getLogger(__name__)
MAX_RETRY_DELAY = 300.0
PROFILE_KEYS = ("mqid", "broker_type", "broker_address", "auth_token")  # what a scanner needs of a queue
RELEASED = {"starter.claimed_by": None, "starter.claim_expires": None, "starter.attempts": 0}
Doc = dict[str, Any]


class ScanGone(Exception):
    """The scan was stopped or deleted while being started; what was started is left to the cleanup."""


class Starter:
    """Moves scans from `PENDING__PRESTARTUP` to `PENDING__WAITING_ON_SCANNER_SERVER_STARTUP`."""

    name = "starter"

    def __init__(self, scans: Scans) -> None:
        self.scans = scans
        self.db = scans.db
        self.config = scans.config
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # long enough for every WMS call of one start plus the launcher
        self.lease = 4 * self.config.wms_timeout + 60

    async def run(self) -> None:
        await run_forever(self.name, self.run_once, self.scans.wakers.starter, self.config.starter_interval)

    async def run_once(self) -> None:
        """Start backlog scans while there is room and the services answer."""
        while await self.db.manifests.count_running() < self.config.max_active_scans:
            doc = await self.db.manifests.claim_next(self.holder, self.scans.clock(), self.lease)
            if doc is None or not await self.start(doc):
                return

    async def start(self, doc: Doc) -> bool:
        """Start one claimed scan; False when an outage should end this pass."""
        scan_id = doc["scan_id"]
        try:
            workflow_id = await self._workflow(doc)
            handle = await self._launch(scan_id)
            await self._record(scan_id, {"scanner": self.scans.scanner_record(handle, restarts=0)}, started=True)
        except ServiceRefused as exc:
            await self._fail(scan_id, f"the workflow management service refused the workflow: {exc.message}")
            return True
        except (ServiceUnavailable, LauncherError, TimeoutError) as exc:
            await self._retry_later(doc, exc)
            return False
        except ScanGone:
            LOGGER.info("scan %s was stopped or taken over while starting; leaving it", scan_id)
            return True
        LOGGER.info("scan %s started: workflow %s, scanner %s", scan_id, workflow_id, handle)
        return True

    async def _workflow(self, doc: Doc) -> str:
        """The scan's workflow id (found or requested), its queues activated and their credentials stored."""
        scan_id, workflow_id = doc["scan_id"], str(doc["ewms_workflow_id"])
        ewms = self.scans.ewms
        if workflow_id == PENDING_WORKFLOW:  # requesting finds one made before a crash instead of a second
            workflow_id = (await ewms.request_workflow(await self.workflow_spec(scan_id))).workflow_id
            await self._record(scan_id, {"ewms_workflow_id": workflow_id})
            LOGGER.info("scan %s: workflow %s", scan_id, workflow_id)
        profiles = await ewms.wait_activated(workflow_id, self.config.wms_timeout)
        scanner_profiles = {alias: {k: p[k] for k in PROFILE_KEYS} for alias, p in profiles.items()}
        await self.db.mqprofiles.put(scan_id, workflow_id, scanner_profiles)
        return workflow_id

    async def workflow_spec(self, scan_id: str) -> WorkflowSpec:
        """What the WMS is asked for, from the stored request and its event (the pilots get the event)."""
        request = await self.db.requests.get(scan_id)
        assert request is not None, f"scan {scan_id} has no request"
        event = await self.db.events.get(request["i3_event_id"])
        assert event is not None, f"scan {scan_id} has no event"
        return WorkflowSpec(
            scan_id=scan_id,
            reco_algo=request["reco_algo"],
            docker_tag=request["docker_tag"],
            event=await asyncio.to_thread(Event.from_dict, event),
            request_clusters=request["request_clusters"],
            worker_memory_bytes=request["worker_memory_bytes"],
            worker_disk_bytes=request["worker_disk_bytes"],
            max_pixel_reco_time=request["max_pixel_reco_time"],
            max_worker_runtime=request["max_worker_runtime"],
            priority=request["priority"],
        )

    async def _launch(self, scan_id: str) -> str:
        """The scanner's first attempt; starting it again after a crash finds the running one."""
        instance = await self.scans.scanner_instance(scan_id, attempt=0)
        return await self.scans.launcher.start(instance)

    async def _record(self, scan_id: str, facts: Doc, *, started: bool = False) -> None:
        """Record what was done while we hold the claim and the scan still waits to start.

        If it was stopped meanwhile, the facts are kept for the cleanup to undo (abort the workflow,
        stop the scanner); if another replica took it over (our lease ran out), that one carries on.
        """
        manifests, now = self.db.manifests, self.scans.clock()
        changes = dict(facts)
        if started:
            changes.update(RELEASED, scan_state=str(ScanState.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP), error=None)
        where = {
            "starter.claimed_by": self.holder,
            "scan_state": str(ScanState.PENDING__PRESTARTUP),
            "is_deleted": False,
        }
        if await manifests.update(scan_id, changes, now, where=where) is not None:
            return
        doc = await manifests.get(scan_id)
        if doc is None or doc["is_deleted"] or doc["scan_state"] != ScanState.PENDING__PRESTARTUP:
            await self.scans.end(scan_id, facts)
        raise ScanGone(scan_id)

    async def _fail(self, scan_id: str, reason: str) -> None:
        await self.scans.fail(scan_id, ScanState.FAILED__WORKFLOW, reason)
        await self.db.manifests.release(scan_id, self.holder, {}, self.scans.clock())

    async def _retry_later(self, doc: Doc, exc: Exception) -> None:
        """Back in the backlog, due again after a delay that doubles with each failed attempt."""
        attempts = doc["starter"]["attempts"] + 1
        delay = min(self.config.starter_interval * 2 ** (attempts - 1), MAX_RETRY_DELAY)
        reason = f"starting failed ({exc}); attempt {attempts + 1} in {delay:.0f} s"
        LOGGER.warning("scan %s: %s", doc["scan_id"], reason)
        now = self.scans.clock()
        changes = {"starter.attempts": attempts, "starter.next_attempt": now + delay, "error": reason}
        await self.db.manifests.release(doc["scan_id"], self.holder, changes, now)
