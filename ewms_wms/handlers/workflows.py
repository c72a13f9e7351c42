"""Workflows: create (with queues), read, search, abort, finish."""

import logging
from typing import Any

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError
from ewms_rest.search import project
from ewms_rest.validation import FieldError

from .. import model
from ..auth import READ_ROUTES, USER_ROUTES
from ..database import QueryError
from ..phases import Deactivation
from .base import BaseHandler

LOGGER = logging.getLogger(__name__)


class WorkflowsHandler(BaseHandler):
    ROUTE = "/v1/workflows"

    @require_roles(*USER_ROUTES)
    async def post(self) -> None:
        """Store the workflow, its task directives, taskforces and queue profiles; provision the queues."""
        body = self.body()
        if problems := model.workflow_request_problems(body):
            raise ApiError.bad_request([FieldError(field, reason) for field, reason in problems])
        docs = model.build_workflow(body, self.subject, self.now(), self.ctx.broker)
        db = self.ctx.db
        # children first: a workflow document only ever exists with all of its parts
        await db.mqprofiles.insert_many(docs.mqprofiles)
        await db.task_directives.insert_many(docs.task_directives)
        await db.taskforces.insert_many(docs.taskforces)
        await db.workflows.insert(docs.workflow)
        workflow_id = docs.workflow["workflow_id"]
        LOGGER.info(
            "workflow %s created by %s: %d task(s), %d taskforce(s), %d queue(s)",
            workflow_id, self.subject, len(docs.task_directives), len(docs.taskforces), len(docs.mqprofiles),
        )  # fmt: skip
        await self.ctx.provisioner.provision_now(workflow_id, self.ctx.config.provision_inline_timeout_seconds)
        self.send(
            {
                "workflow": await db.workflows.get(workflow_id),
                "task_directives": docs.task_directives,
                "taskforces": await db.taskforces.for_workflow(workflow_id),
                "mqprofiles": await db.mqprofiles.for_workflow(workflow_id, public_only=True),
            }
        )


class WorkflowHandler(BaseHandler):
    ROUTE = "/v1/workflows/{workflow_id}"

    @require_roles(*READ_ROUTES)
    async def get(self, workflow_id: str) -> None:
        self.check_path(workflow_id=workflow_id)
        workflow = await self.ctx.db.workflows.get(workflow_id)
        if not self.visible(workflow):
            raise ApiError(404, f"no workflow {workflow_id}")
        assert workflow is not None
        self.send(workflow)


class _DeactivateHandler(BaseHandler):
    REASON: Deactivation

    @require_roles(*USER_ROUTES)
    async def post(self, workflow_id: str) -> None:
        """Deactivate (the first reason stays), then stop the taskforces; repeating it is harmless."""
        self.check_path(workflow_id=workflow_id)
        self.body()
        db = self.ctx.db
        workflow = await db.workflows.get(workflow_id)
        if not self.may_change(workflow):
            raise ApiError(404, f"no workflow {workflow_id}")
        now = self.now()
        workflow = await db.workflows.deactivate(workflow_id, self.REASON, now)
        assert workflow is not None
        moved = await db.taskforces.stop_workflow(workflow_id, f"workflow {workflow['deactivated']}", now)
        LOGGER.info("workflow %s %s by %s: %d taskforce(s) stopping", workflow_id, self.REASON, self.subject, moved)
        self.ctx.janitor.waker.wake()
        self.send({"workflow_id": workflow_id, "n_taskforces": moved})


class AbortHandler(_DeactivateHandler):
    ROUTE = "/v1/workflows/{workflow_id}/actions/abort"
    REASON = Deactivation.ABORTED


class FinishedHandler(_DeactivateHandler):
    ROUTE = "/v1/workflows/{workflow_id}/actions/finished"
    REASON = Deactivation.FINISHED


class QueryHandler(BaseHandler):
    """`POST /v1/query/<kind>`: a vetted MongoDB filter, a projection, pages."""

    KEY: str

    def store(self) -> Any:
        raise NotImplementedError

    @require_roles(*READ_ROUTES)
    async def post(self) -> None:
        body = self.body()
        try:
            page = await self.store().find(
                body["query"], self.scope(), body.get("after"), self.ctx.config.query_page_size
            )
        except QueryError as exc:
            raise self.bad_field(exc.field, exc.reason) from None
        projection = body.get("projection")
        self.send({self.KEY: [project(d, projection) for d in page.docs], "next_after": page.next_after})


class QueryWorkflowsHandler(QueryHandler):
    ROUTE = "/v1/query/workflows"
    KEY = "workflows"

    def store(self) -> Any:
        return self.ctx.db.workflows
