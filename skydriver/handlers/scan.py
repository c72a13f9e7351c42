"""Requesting a scan, reading it whole, deleting it; its stored request and its event."""

import asyncio

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError
from ewms_rest.validation import InvalidRequest

from ..auth import READ_ROUTES, USER_ROUTES
from ..scan_request import normalise, request_answer
from .base import SkyDriverHandler


class ScanLauncherHandler(SkyDriverHandler):
    ROUTE = "/scan"

    @require_roles(*USER_ROUTES)
    async def post(self) -> None:
        """Validate, normalise (in a thread: the event is parsed and a reconstruction built), store, queue."""
        body = self.body()
        try:
            request = await asyncio.to_thread(normalise, body, self.ctx.config.default_clusters)
        except InvalidRequest as exc:
            raise ApiError.bad_request(exc.errors) from None
        self.send(await self.ctx.scans.create(request, self.subject))


class ScanHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        await self.send_scan(await self.manifest_for(scan_id, include_deleted=self.include_deleted()))

    @require_roles(*USER_ROUTES)
    async def delete(self, scan_id: str) -> None:
        """Stop and mark deleted; a completed scan only when the caller says so (upstream's safeguard)."""
        manifest = await self.manifest_for(scan_id)
        body = self.body()
        if manifest["complete"] and not body.get("delete_completed_scan"):
            raise self.bad_field("delete_completed_scan", "the scan is complete: set it to true to delete it")
        await self.send_scan(await self.ctx.scans.stop(manifest, f"deleted by {self.subject}", delete=True))


class ScanRequestHandler(SkyDriverHandler):
    ROUTE = "/scan-request/{scan_id}"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        """The request as stored (deleted scans too: it is what a rescan re-runs)."""
        await self.manifest_for(scan_id, include_deleted=True)
        stored = await self.ctx.db.requests.get(scan_id)
        event = None if stored is None else await self.ctx.db.events.get(stored["i3_event_id"])
        if stored is None or event is None:
            raise ApiError(404, f"scan {scan_id} has no stored request")
        self.send(request_answer(stored, event))


class ScanEventHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/i3-event"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        manifest = await self.manifest_for(scan_id, include_deleted=self.include_deleted())
        event = await self.ctx.db.events.get(manifest["i3_event_id"])
        if event is None:
            raise ApiError(404, f"the event of scan {scan_id} is not stored")
        self.send({"i3_event_id": manifest["i3_event_id"], "event_i3live_json": event})
