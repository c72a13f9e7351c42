"""Taskforces: read (with the phase change log) and search."""

from typing import Any

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError

from ..auth import READ_ROUTES
from .base import BaseHandler
from .workflows import QueryHandler


class TaskforceHandler(BaseHandler):
    ROUTE = "/v1/taskforces/{taskforce_uuid}"

    @require_roles(*READ_ROUTES)
    async def get(self, taskforce_uuid: str) -> None:
        self.check_path(taskforce_uuid=taskforce_uuid)
        taskforce = await self.ctx.db.taskforces.get(taskforce_uuid)
        if not self.visible(taskforce):
            raise ApiError(404, f"no taskforce {taskforce_uuid}")
        assert taskforce is not None
        taskforce["phase_change_log"] = await self.ctx.db.taskforces.phase_log(taskforce_uuid)
        self.send(taskforce)


class QueryTaskforcesHandler(QueryHandler):
    ROUTE = "/v1/query/taskforces"
    KEY = "taskforces"

    def store(self) -> Any:
        return self.ctx.db.taskforces
