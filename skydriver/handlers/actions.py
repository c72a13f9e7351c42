"""Acting on a scan: scan it again, or give its workflow more pilots."""

import asyncio
import logging

from ewms_rest.auth import require_roles
from ewms_rest.client import ServiceRefused
from ewms_rest.errors import ApiError

from ..auth import USER_ROUTES
from ..event import Event
from ..scan_request import ScanRequest, from_stored
from ..scans import PENDING_WORKFLOW
from ..states import OVER
from .base import SkyDriverHandler

LOGGER = logging.getLogger(__name__)


class ScanRescanHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/actions/rescan"

    @require_roles(*USER_ROUTES)
    async def post(self, scan_id: str) -> None:
        """A new scan of the stored request (deleted scans too); linked both ways to the old one."""
        old = await self.manifest_for(scan_id, include_deleted=True)
        body = self.body()
        request = await self._stored_request(scan_id)
        scans = self.ctx.scans
        if body.get("abort_first") and old["scan_state"] not in OVER:
            await scans.stop(old, f"stopped by {self.subject} to rescan it", delete=False)
        new = await scans.create(request, self.subject, rescan_of=scan_id)
        await self.ctx.db.requests.add_rescan(scan_id, new["scan_id"])
        if body.get("replace_scan"):
            await self.ctx.db.manifests.update(scan_id, {"replaced_by_scan_id": new["scan_id"]}, self.now())
        self.send(new)

    async def _stored_request(self, scan_id: str) -> ScanRequest:
        stored = await self.ctx.db.requests.get(scan_id)
        event = None if stored is None else await self.ctx.db.events.get(stored["i3_event_id"])
        if stored is None or event is None:
            raise ApiError(404, f"scan {scan_id} has no stored request to rescan")
        return from_stored(stored, await asyncio.to_thread(Event.from_dict, event))


class ScanAddWorkersHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/actions/add-workers"

    @require_roles(*USER_ROUTES)
    async def post(self, scan_id: str) -> None:
        manifest = await self.manifest_for(scan_id)
        body = self.body()
        workflow_id = manifest["ewms_workflow_id"]
        if workflow_id == PENDING_WORKFLOW:
            raise ApiError(409, f"scan {scan_id} has no workflow yet: it is still in the backlog")
        location, n_workers = body["cluster_location"], body["n_workers"]
        try:
            taskforce_uuid = await self.ctx.scans.ewms.add_workers(workflow_id, location, n_workers)
        except ServiceRefused as exc:
            raise ApiError(422, f"the workflow management service refused: {exc.message}") from None
        LOGGER.info("scan %s: %d workers added at %s by %s", scan_id, n_workers, location, self.subject)
        self.send({"taskforce_uuid": taskforce_uuid, "n_workers": n_workers})
