"""Health (with versions) and the OpenAPI document: the two routes that need no token."""

import importlib.metadata
import platform

import pymongo
import tornado

from .base import BaseHandler

SERVICE = "ewms_wms"
DISTRIBUTION = "skydriver-ewms"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class HealthHandler(BaseHandler):
    """For probes and humans: versions, and 503 when the database does not answer."""

    ROUTE = "/v1/"

    async def get(self) -> None:
        healthy = await self.ctx.db.ping()
        versions = {
            "python": platform.python_version(),
            "tornado": tornado.version,
            "pymongo": pymongo.__version__,
            "wipac-rest-tools": _version("wipac-rest-tools"),
            "openapi": str(self.ctx.openapi["info"]["version"]),
        }
        if not healthy:
            self.send({"code": 503, "error": "the database does not answer"}, status=503)
            return
        self.send(
            {
                "service": SERVICE,
                "version": _version(DISTRIBUTION),
                "api_version": "1",
                "database": "ok",
                "versions": versions,
            }
        )


class OpenAPIHandler(BaseHandler):
    ROUTE = "/v1/schema/openapi"

    async def get(self) -> None:
        self.send(self.ctx.openapi)
