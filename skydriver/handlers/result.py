"""The skymap: partial results while the scan runs, the final one that completes it."""

import logging

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError

from ..auth import READ_ROUTES, SYSTEM_ROUTES
from ..states import FINISHED, OVER, REPORTED, ScanState, finished
from .base import Doc, SkyDriverHandler

LOGGER = logging.getLogger(__name__)


class ScanResultHandler(SkyDriverHandler):
    ROUTE = "/scan/{scan_id}/result"

    @require_roles(*READ_ROUTES)
    async def get(self, scan_id: str) -> None:
        await self.manifest_for(scan_id, include_deleted=self.include_deleted())
        self.send_json_text(await self.result_json(scan_id))

    @require_roles(*SYSTEM_ROUTES)
    async def put(self, scan_id: str) -> None:
        """Store the result; a final one completes the scan (a repeated final PUT is a harmless retry)."""
        manifest = await self.manifest_for(scan_id)
        body = self.body()
        self._check_accepts(manifest, body["is_final"])
        result = {
            "skyscan_result": body["skyscan_result"],
            "is_final": body["is_final"],
            "summary": body.get("summary"),
        }
        stored = await self.ctx.db.results.put(scan_id, result)
        if body["is_final"]:
            await self._complete(manifest, body)
        else:
            await self.ctx.db.manifests.update(
                scan_id,
                {"scan_state": str(ScanState.IN_PROGRESS__PARTIAL_RESULT_GENERATED)},
                self.now(),
                where={"scan_state": {"$in": [str(ScanState.PENDING__WAITING_ON_SCANNER_SERVER_STARTUP),
                                              *map(str, REPORTED)]}},
            )  # fmt: skip
        self.send(stored)

    @staticmethod
    def _check_accepts(manifest: Doc, is_final: bool) -> None:
        state = manifest["scan_state"]
        if state in FINISHED and is_final:
            return
        if state in OVER:
            raise ApiError(409, f"scan {manifest['scan_id']} is {state}: it takes no more results")

    async def _complete(self, manifest: Doc, body: Doc) -> None:
        """The final state: partial when pixel tasks died (reported as dead_tasks, or counted in the summary)."""
        state = finished(bool(manifest["dead_tasks"] or (body.get("summary") or {}).get("dead_tasks")))
        await self.ctx.scans.end(manifest["scan_id"], {"scan_state": str(state), "complete": True, "error": None})
        LOGGER.info("scan %s: final result stored (%s)", manifest["scan_id"], state)
