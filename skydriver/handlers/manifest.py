"""The manifest (read by users, reported to by the scanner) and the status clients poll."""

import logging
from typing import Any

from ewms_rest.auth import require_roles
from ewms_rest.client import ServiceRefused, ServiceUnavailable
from ewms_rest.errors import ApiError

from ..auth import READ_ROUTES, SYSTEM_ROUTES
from ..launchers import LauncherError
from ..scans import PENDING_WORKFLOW
from ..states import OVER, ScanState, describe
from .base import Doc, SkyDriverHandler

LOGGER = logging.getLogger(__name__)


def dead_task_union(known: list[Doc], new: list[Doc]) -> list[Doc]:
    """Dead tasks reported so far, each once: a scanner may report the whole list or just the latest."""
    merged = {(t["nside"], t["pixel"], t["seed"]): t for t in [*known, *new]}
    return list(merged.values())


class ScanManifestHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/manifest"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        self.send(await self.manifest_for(scan_id, include_deleted=self.include_deleted()))

    @require_roles(*SYSTEM_ROUTES)
    async def patch(self, scan_id: str) -> None:
        """A report from the scanner, and its heartbeat; a fatal `scanner_error` fails the scan."""
        manifest = await self.manifest_for(scan_id)
        body = self.body()
        self._refuse_if_over(manifest)
        updated = await self.ctx.db.manifests.update(
            scan_id, self._changes(manifest, body), self.now(), where={"scan_state": {"$nin": [str(s) for s in OVER]}}
        )
        if updated is None:  # it ended meanwhile
            self._refuse_if_over(await self.manifest_for(scan_id))
        starting = str(ScanState.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP)
        first_report = {"scan_state": str(ScanState.PENDING__WAITING_ON_FIRST_PIXEL_RECO)}
        await self.ctx.db.manifests.update(scan_id, first_report, self.now(), where={"scan_state": starting})
        if "scanner_error" in body:
            await self.ctx.scans.fail(scan_id, ScanState.FAILED__SCANNER, f"scanner: {body['scanner_error']}")
        self.send(await self.manifest_for(scan_id))

    def _changes(self, manifest: Doc, body: Doc) -> Doc:
        changes: Doc = {k: body[k] for k in ("progress", "scan_metadata") if k in body}
        if "dead_tasks" in body:
            changes["dead_tasks"] = dead_task_union(manifest["dead_tasks"], body["dead_tasks"])
        if manifest["scanner"] is not None:  # every report is a sign of life
            changes["scanner.last_heartbeat"] = self.now()
        return changes

    @staticmethod
    def _refuse_if_over(manifest: Doc) -> None:
        """A scan that ended takes no more reports: the 409 tells a stray scanner to stop."""
        if manifest["scan_state"] in OVER:
            raise ApiError(409, f"scan {manifest['scan_id']} is {manifest['scan_state']}: it takes no more reports")


class ScanStatusHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/status"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        """Never fails for a WMS or launcher that does not answer: the answer says so instead."""
        manifest = await self.manifest_for(scan_id, include_deleted=True)
        scanner = manifest["scanner"] or {}
        self.send(
            {
                "scan_state": manifest["scan_state"],
                "message": describe(manifest),
                "is_deleted": manifest["is_deleted"],
                "ewms_deactivated": manifest["ewms_deactivated"],
                "scan_complete": manifest["complete"],
                "scanner": {
                    "alive": await self._scanner_alive(scanner),
                    "restarts": scanner.get("restarts", 0),
                    "last_heartbeat": scanner.get("last_heartbeat"),
                },
                "ewms": await self._workflow(manifest["ewms_workflow_id"]),
            }
        )

    async def _scanner_alive(self, scanner: Doc) -> bool | None:
        if not scanner:
            return None
        if scanner.get("stopped_at") is not None:
            return False
        try:
            return await self.ctx.scans.launcher.alive(scanner["handle"])
        except LauncherError as exc:
            LOGGER.warning("scanner %s: cannot tell whether it is alive: %s", scanner["handle"], exc)
            return None

    async def _workflow(self, workflow_id: str) -> dict[str, Any]:
        if workflow_id == PENDING_WORKFLOW:
            return {"workflow_id": None, "alive": None, "deactivated": None, "pilots": None}
        try:
            status = await self.ctx.scans.ewms.status(workflow_id)
        except (ServiceUnavailable, ServiceRefused) as exc:
            error = f"the workflow management service did not answer: {exc}"
            return {"workflow_id": workflow_id, "alive": None, "deactivated": None, "pilots": None, "error": error}
        return {
            "workflow_id": workflow_id,
            "alive": status.alive,
            "deactivated": status.deactivated,
            "pilots": status.pilots,
        }
