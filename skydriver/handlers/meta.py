"""Health (with versions) and the OpenAPI document: the two routes that need no token."""

from .base import SkyDriverHandler


class HealthHandler(SkyDriverHandler):
    """For probes and humans: versions, and 503 when the database does not answer."""

    ROUTE = "/"

    async def get(self) -> None:
        if not await self.ctx.db.ping():
            self.send({"code": 503, "error": "the database does not answer"}, status=503)
            return
        versions = self.ctx.versions
        self.send({"service": "skydriver", "version": versions["skydriver"], "database": "ok", "versions": versions})


class OpenAPIHandler(SkyDriverHandler):
    ROUTE = "/schema/openapi"

    async def get(self) -> None:
        self.send(self.ctx.openapi)
