"""Task directives: read, search, and add workers (a new taskforce)."""

import logging
from typing import Any

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError

from .. import model
from ..auth import READ_ROUTES, USER_ROUTES
from ..phases import Phase
from .base import BaseHandler
from .workflows import QueryHandler

LOGGER = logging.getLogger(__name__)


class TaskDirectiveHandler(BaseHandler):
    ROUTE = "/v1/task-directives/{task_id}"

    @require_roles(*READ_ROUTES)
    async def get(self, task_id: str) -> None:
        self.check_path(task_id=task_id)
        directive = await self.ctx.db.task_directives.get(task_id)
        if not self.visible(directive):
            raise ApiError(404, f"no task directive {task_id}")
        assert directive is not None
        self.send(directive)


class QueryTaskDirectivesHandler(QueryHandler):
    ROUTE = "/v1/query/task-directives"
    KEY = "task_directives"

    def store(self) -> Any:
        return self.ctx.db.task_directives


class AddWorkersHandler(BaseHandler):
    ROUTE = "/v1/task-directives/{task_id}/actions/add-workers"

    @require_roles(*USER_ROUTES)
    async def post(self, task_id: str) -> None:
        """A new taskforce for the task at `cluster_location`, with the task's worker config."""
        self.check_path(task_id=task_id)
        body = self.body()
        db = self.ctx.db
        directive = await db.task_directives.get(task_id)
        if not self.may_change(directive):
            raise ApiError(404, f"no task directive {task_id}")
        assert directive is not None
        workflow = await db.workflows.get(directive["workflow_id"])
        if workflow is None or workflow["deactivated"]:
            raise ApiError(422, f"workflow {directive['workflow_id']} is deactivated: no workers can be added")
        template = await db.taskforces.any_for_task(task_id)
        task = (
            {"worker_config": template["worker_config"], "pilot_config": template["pilot_config"]} if template else {}
        )
        phase = Phase.PENDING_STARTER if workflow["mq_state"] == "activated" else Phase.PRE_MQ_ACTIVATION
        now = self.now()
        taskforce = model.taskforce(directive, workflow, body["cluster_location"], body["n_workers"], task, now, phase)
        await db.taskforces.insert_many([taskforce])
        await db.task_directives.add_location(task_id, body["cluster_location"])
        if (await db.workflows.get(workflow["workflow_id"]) or {}).get("deactivated"):
            # deactivated while we were adding: stop it like its siblings
            await db.taskforces.stop_workflow(workflow["workflow_id"], "workflow deactivated", now)
        LOGGER.info("task %s: taskforce %s added at %s", task_id, taskforce["taskforce_uuid"], body["cluster_location"])
        self.send(await db.taskforces.get(taskforce["taskforce_uuid"]) or taskforce)
