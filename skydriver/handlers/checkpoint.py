"""The scanner's checkpoint: tasks once the broker confirmed them, results before it acknowledges them."""

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError

from ..auth import SYSTEM_ROUTES
from ..states import OVER
from .base import SkyDriverHandler


class CheckpointHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/checkpoint"

    @require_roles(*SYSTEM_ROUTES)
    async def get(self, scan_id: str) -> None:
        """Everything recorded so far, each task and result once: what a restarted scanner resumes from."""
        await self.manifest_for(scan_id)
        self.send(await self.ctx.db.checkpoints.union(scan_id))

    @require_roles(*SYSTEM_ROUTES)
    async def post(self, scan_id: str) -> None:
        manifest = await self.manifest_for(scan_id)
        body = self.body()
        if manifest["scan_state"] in OVER:
            raise ApiError(409, f"scan {scan_id} is {manifest['scan_state']}: it takes no more checkpoints")
        seq = await self.ctx.db.manifests.next_checkpoint_seq(scan_id)
        if seq is None:
            raise ApiError(404, f"no scan {scan_id}")
        await self.ctx.db.checkpoints.add(scan_id, seq, body.get("published", []), body.get("results", []))
        self.send({"seq": seq})
