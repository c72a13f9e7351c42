"""What every skydriver handler shares on top of `ewms_rest.handler`: finding the scan a route is about.

A scan route checks, in this order: the id's form (400), the token's reach (a system token with
a `scan_id` claim may only touch its own scan: 403, before anything about other scans is
revealed), then the scan itself (404, also for a deleted scan unless `include_deleted`).
"""

from typing import Any, ClassVar

import tornado.escape

from ewms_rest.client import ServiceUnavailable
from ewms_rest.errors import ApiError
from ewms_rest.handler import BaseHandler, NotFoundHandler

from ..auth import scan_limit
from ..context import AppContext
from ..database import DatabaseError

TRUE_WORDS = ("true", "1", "yes")
Doc = dict[str, Any]


class SkyDriverHandler(BaseHandler):
    """JSON in and out; the database or the WMS not answering is a 503 the caller may retry."""

    REALM = "skydriver"
    UNAVAILABLE: ClassVar[tuple[type[BaseException], ...]] = (DatabaseError, ServiceUnavailable)
    UNAVAILABLE_MESSAGE = "the database or the workflow management service does not answer; try again later"
    ctx: AppContext

    def include_deleted(self) -> bool:
        """Upstream clients send `include_deleted=True` (capitalised) in the query string."""
        return str(self.query().get("include_deleted", "")).lower() in TRUE_WORDS

    def check_reach(self, scan_id: str) -> None:
        """403 unless the token may touch this scan."""
        limit = scan_limit(self.roles, self.auth_data)
        if limit is not None and limit != scan_id:
            raise ApiError(403, f"this token may only reach scan {limit}")

    async def manifest_for(self, scan_id: str, *, include_deleted: bool = False) -> Doc:
        """The scan's public manifest, after the id, reach and existence checks."""
        self.check_path(scan_id=scan_id)
        self.check_reach(scan_id)
        manifest = await self.ctx.db.manifests.get(scan_id, include_deleted)
        if manifest is None:
            hint = "" if include_deleted else " (a deleted scan is only shown with include_deleted=true)"
            raise ApiError(404, f"no scan {scan_id}{hint}")
        return manifest

    async def result_json(self, scan_id: str) -> str:
        """The scan's result as JSON text (stored so: see `database.results`), or `{}` while there is none."""
        return await self.ctx.db.results.get_json(scan_id) or "{}"

    async def send_scan(self, manifest: Doc) -> None:
        """`{manifest, result}`, the result's JSON spliced in as stored rather than decoded and encoded again."""
        manifest_json = tornado.escape.json_encode(manifest)
        self.send_json_text(f'{{"manifest": {manifest_json}, "result": {await self.result_json(manifest["scan_id"])}}}')

    def send_json_text(self, text: str, status: int = 200) -> None:
        """An answer that is JSON text already (what `send` writes for a dict, without encoding it)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(text)

    def now(self) -> float:
        return self.ctx.scans.clock()


class SkyDriverNotFound(NotFoundHandler, SkyDriverHandler):
    """Every path no route matches: a JSON 404."""
