"""The TMS routes: claim, confirm submission/removal/completion, report failures and statuses.

A TMS moves a taskforce only by confirming a fact, and every confirmation is safe to repeat,
so a TMS may crash and restart anywhere. A confirmation that no longer applies (the workflow
was stopped between claim and submission) is refused with 409, telling the TMS to remove the
cluster it just submitted.
"""

import json
import logging
from typing import Any

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError

from ..auth import TMS_ROUTES
from ..database import Outcome, Result
from ..phases import COMPLETE, RM
from .base import BaseHandler

LOGGER = logging.getLogger(__name__)
REDACTED = "***"
SUBMISSION_FIELDS = ("cluster_id", "submit_dict", "submit_description", "job_event_log_fpath", "n_workers")
_MIN_SECRET_LEN = 8  # shorter shared passwords would redact ordinary words


class _TMSHandler(BaseHandler):
    def entity(self) -> str:
        return f"TMS {self.subject}"

    def location(self) -> str:
        """The cluster location from `cluster_location` or upstream's `schedd`."""
        args = self.query()
        location = args.get("cluster_location") or args.get("schedd")
        if not location:
            raise self.bad_field("query argument 'cluster_location'", "is required (or upstream's 'schedd')")
        return str(location)

    def answer(self, taskforce_uuid: str, outcome: Outcome, action: str) -> None:
        if outcome.result is Result.NOT_FOUND:
            raise ApiError(404, f"no taskforce {taskforce_uuid}")
        if outcome.result is Result.CONFLICT:
            raise ApiError(409, f"taskforce {taskforce_uuid} is {outcome.phase}: {action} does not apply")
        self.send({"taskforce_uuid": taskforce_uuid})

    async def known(self, taskforce_uuid: str) -> dict[str, Any]:
        self.check_path(taskforce_uuid=taskforce_uuid)
        taskforce = await self.ctx.db.taskforces.get(taskforce_uuid)
        if taskforce is None:
            raise ApiError(404, f"no taskforce {taskforce_uuid}")
        return taskforce


class PendingStarterHandler(_TMSHandler):
    ROUTE = "/v1/tms/pending-starter/taskforces"

    @require_roles(*TMS_ROUTES)
    async def get(self) -> None:
        """Claim the next taskforce to start here, with what the pilots need to run it."""
        location = self.location()
        claimant = self.query().get("claimant")
        db = self.ctx.db
        taskforce = await db.taskforces.claim(location, claimant, self.now(), self.ctx.config.claim_lease_seconds)
        if taskforce is None:
            self.send({})
            return
        directive = await db.task_directives.get(taskforce["task_id"]) or {}
        queues = [*directive.get("input_queues", []), *directive.get("output_queues", [])]
        LOGGER.info("taskforce %s claimed at %s by %s", taskforce["taskforce_uuid"], location, claimant or self.subject)
        self.send(
            {"taskforce": taskforce, "task_directive": directive, "mqprofiles": await db.mqprofiles.by_names(queues)}
        )


class CondorSubmitHandler(_TMSHandler):
    ROUTE = "/v1/tms/condor-submit/taskforces/{taskforce_uuid}"

    @require_roles(*TMS_ROUTES)
    async def post(self, taskforce_uuid: str) -> None:
        taskforce = await self.known(taskforce_uuid)
        body = self.body()
        fields: dict[str, Any] = {k: body[k] for k in SUBMISSION_FIELDS if k in body}
        fields = await self._without_secrets(taskforce["workflow_id"], fields)
        outcome = await self.ctx.db.taskforces.confirm_submit(taskforce_uuid, fields, self.entity(), self.now())
        if outcome.result is Result.CONFLICT:
            LOGGER.warning(
                "taskforce %s: submission refused in %s; the TMS must remove it", taskforce_uuid, outcome.phase
            )
        self.answer(taskforce_uuid, outcome, "recording a submission (remove the cluster you submitted)")

    async def _without_secrets(self, workflow_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Broker credentials never get stored in a submit description: replace any that slipped in."""
        secrets = [p["auth_token"] for p in await self.ctx.db.mqprofiles.for_workflow(workflow_id)]
        secrets = [s for s in set(secrets) if len(s) >= _MIN_SECRET_LEN]
        text = json.dumps(fields)
        if not any(s in text for s in secrets):
            return fields
        LOGGER.warning("workflow %s: a submission carried broker credentials; they were redacted", workflow_id)
        for secret in secrets:
            text = text.replace(json.dumps(secret)[1:-1], REDACTED)
        cleaned: dict[str, Any] = json.loads(text)
        return cleaned


class SubmitFailedHandler(_TMSHandler):
    ROUTE = "/v1/tms/condor-submit/taskforces/{taskforce_uuid}/failed"

    @require_roles(*TMS_ROUTES)
    async def post(self, taskforce_uuid: str) -> None:
        await self.known(taskforce_uuid)
        error = self.body().get("error") or "unspecified"
        limit = self.ctx.config.submit_max_attempts
        outcome = await self.ctx.db.taskforces.submit_failed(taskforce_uuid, error, limit, self.entity(), self.now())
        self.answer(taskforce_uuid, outcome, "a submission failure")


class PendingStopperHandler(_TMSHandler):
    ROUTE = "/v1/tms/pending-stopper/taskforces"

    @require_roles(*TMS_ROUTES)
    async def get(self) -> None:
        taskforce = await self.ctx.db.taskforces.next_pending_stopper(self.location())
        self.send(taskforce or {})


class CondorRmHandler(_TMSHandler):
    ROUTE = "/v1/tms/condor-rm/taskforces/{taskforce_uuid}"

    @require_roles(*TMS_ROUTES)
    async def post(self, taskforce_uuid: str) -> None:
        await self.known(taskforce_uuid)
        self.body()
        outcome = await self.ctx.db.taskforces.confirm(taskforce_uuid, RM, {}, self.entity(), self.now())
        self.answer(taskforce_uuid, outcome, "condor-rm (only a pending-stopper taskforce is removed)")


class RmFailedHandler(_TMSHandler):
    ROUTE = "/v1/tms/condor-rm/taskforces/{taskforce_uuid}/failed"

    @require_roles(*TMS_ROUTES)
    async def post(self, taskforce_uuid: str) -> None:
        await self.known(taskforce_uuid)
        error = self.body().get("error") or "unspecified"
        outcome = await self.ctx.db.taskforces.rm_failed(taskforce_uuid, error, self.entity(), self.now())
        self.answer(taskforce_uuid, outcome, "a removal failure")


class CondorCompleteHandler(_TMSHandler):
    ROUTE = "/v1/tms/condor-complete/taskforces/{taskforce_uuid}"

    @require_roles(*TMS_ROUTES)
    async def post(self, taskforce_uuid: str) -> None:
        await self.known(taskforce_uuid)
        ended = self.body().get("condor_complete_ts", self.now())
        extra = {"condor_complete_ts": ended}
        outcome = await self.ctx.db.taskforces.confirm(taskforce_uuid, COMPLETE, extra, self.entity(), self.now())
        if outcome.result is Result.DONE:
            self.ctx.janitor.waker.wake()
        self.answer(taskforce_uuid, outcome, "condor-complete (no jobs were ever submitted)")


class StatusesHandler(_TMSHandler):
    ROUTE = "/v1/tms/statuses/taskforces"

    @require_roles(*TMS_ROUTES)
    async def post(self) -> None:
        """Store each taskforce's compound statuses and top errors; 207 when some are unknown."""
        body = self.body()
        statuses = body.get("compound_statuses_by_taskforce", {})
        errors = body.get("top_task_errors_by_taskforce", {})
        results = []
        now = self.now()
        for taskforce_uuid in dict.fromkeys([*statuses, *errors]):
            changes = {}
            if taskforce_uuid in statuses:
                changes["compound_statuses"] = statuses[taskforce_uuid]
            if taskforce_uuid in errors:
                changes["top_task_errors"] = errors[taskforce_uuid]
            if await self.ctx.db.taskforces.record_statuses(taskforce_uuid, changes, now):
                results.append({"uuid": taskforce_uuid, "status": "updated"})
            else:
                results.append({"uuid": taskforce_uuid, "status": "failed", "error": "no such taskforce"})
        self.send({"results": results}, status=207 if any("error" in r for r in results) else 200)
