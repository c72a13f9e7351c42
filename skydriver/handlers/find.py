"""Searching manifests, and the backlog of scans waiting to start."""

from ewms_rest.auth import require_roles

from ..auth import USER_ROUTES
from ..database import QueryError
from .base import SkyDriverHandler


class ScansFindHandler(SkyDriverHandler):
    ROUTE = "/scans/find"

    @require_roles(*USER_ROUTES)
    async def post(self) -> None:
        """`{"manifests": [...]}` and nothing else at the top level (upstream clients index it directly)."""
        body = self.body()
        try:
            manifests = await self.ctx.db.manifests.find(
                body["filter"], bool(body.get("include_deleted")), body.get("manifest_projection")
            )
        except QueryError as exc:
            raise self.bad_field(exc.field, exc.reason) from None
        self.send({"manifests": manifests})


class ScanBacklogHandler(SkyDriverHandler):
    ROUTE = "/scans/backlog"

    @require_roles(*USER_ROUTES)
    async def get(self) -> None:
        entries = await self.ctx.db.manifests.backlog()
        self.send({"entries": [{**entry, "position": i} for i, entry in enumerate(entries)]})
