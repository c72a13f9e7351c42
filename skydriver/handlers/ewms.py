"""The scan's EWMS workflow: its id, and telling the WMS it is finished."""

from ewms_rest.auth import require_roles
from ewms_rest.client import ServiceRefused
from ewms_rest.errors import ApiError

from ..auth import READ_ROUTES, SYSTEM_ROUTES
from ..scans import PENDING_WORKFLOW
from .base import Doc, SkyDriverHandler


def workflow_answer(manifest: Doc) -> Doc:
    workflow_id = manifest["ewms_workflow_id"]
    return {"workflow_id": workflow_id, "requested_ewms_workflow": workflow_id != PENDING_WORKFLOW}


class WorkflowIdHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/ewms/workflow-id"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        self.send(workflow_answer(await self.manifest_for(scan_id, include_deleted=self.include_deleted())))

    @require_roles(*SYSTEM_ROUTES)
    async def post(self, scan_id: str) -> None:
        """Set the id once (upstream's scanners may report it); a different id later is a conflict."""
        await self.manifest_for(scan_id)
        workflow_id = self.body()["workflow_id"]
        manifests = self.ctx.db.manifests
        where = {"ewms_workflow_id": {"$in": [PENDING_WORKFLOW, workflow_id]}}
        manifest = await manifests.update(scan_id, {"ewms_workflow_id": workflow_id}, self.now(), where=where)
        if manifest is None:
            raise ApiError(409, f"scan {scan_id} already has another workflow")
        self.send(workflow_answer(manifest))


class WorkflowFinishedHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/ewms/actions/finished"

    @require_roles(*SYSTEM_ROUTES)
    async def post(self, scan_id: str) -> None:
        """Tell the WMS now (idempotent there too) rather than at the watchdog's next pass."""
        manifest = await self.manifest_for(scan_id)
        self.body()
        workflow_id = manifest["ewms_workflow_id"]
        if workflow_id == PENDING_WORKFLOW:
            raise ApiError(409, f"scan {scan_id} has no workflow yet")
        if manifest["ewms_deactivated"] is None:
            try:
                await self.ctx.scans.ewms.finished(workflow_id)
            except ServiceRefused as exc:
                raise ApiError(422, f"the workflow management service refused: {exc.message}") from None
            manifest = (
                await self.ctx.db.manifests.update(scan_id, {"ewms_deactivated": "FINISHED"}, self.now()) or manifest
            )
        self.send({"workflow_id": workflow_id, "ewms_deactivated": manifest["ewms_deactivated"]})
