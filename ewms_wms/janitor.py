"""The janitor: removes what a finished workflow left on the broker, in two steps.

1. Once a workflow is deactivated and every one of its taskforces is condor-complete (or
   failed), no pilot can still need its queues: delete them and their policies, and narrow
   its broker user to reading the dead-letter queues.
2. After the retention period (`WMS_DLQ_RETENTION_SECONDS`), delete the DLQs and the user.

A workflow deactivated before its queues were ever activated has nothing worth keeping: both
steps happen at once. Failures are logged and retried at the next pass.
"""

import logging
from typing import Any

from ewms_mq import MQError

from .loops import WorkflowLoop

LOGGER = logging.getLogger(__name__)


class Janitor(WorkflowLoop):
    name = "janitor"

    @property
    def interval(self) -> float:
        return self.config.janitor_poll_seconds

    async def run_once(self) -> None:
        """One pass over finished workflows (queues) and expired retention periods (DLQs)."""
        for workflow in await self.db.workflows.deactivated_with_queues():
            if await self.db.taskforces.count_unfinished(workflow["workflow_id"]) == 0:
                await self._remove_queues(workflow)
        for workflow in await self.db.workflows.dlqs_due(self.clock()):
            await self._remove_dlqs(workflow)

    async def _queues(self, workflow_id: str) -> list[str]:
        return [p["mqid"] for p in await self.db.mqprofiles.for_workflow(workflow_id)]

    async def _remove_queues(self, workflow: dict[str, Any]) -> None:
        workflow_id = workflow["workflow_id"]
        async with self.locks.hold(workflow_id):
            queues = await self._queues(workflow_id)
            never_activated = workflow["mq_state"] == "pending"
            try:
                if never_activated:
                    await self.admin.delete_queues(queues, None)
                    await self.admin.delete_dlqs(queues, workflow["broker_user"])
                else:
                    await self.admin.delete_queues(queues, workflow["broker_user"])
            except MQError as exc:
                LOGGER.warning("workflow %s: removing its queues failed (%s); next pass tries again", workflow_id, exc)
                return
            now = self.clock()
            keep_until = now if never_activated else now + self.config.dlq_retention_seconds
            await self.db.workflows.mark_queues_deleted(workflow_id, now, keep_until)
            if never_activated:
                await self.db.workflows.mark_dlqs_deleted(workflow_id)
            LOGGER.info("workflow %s: %d queue(s) deleted; DLQs kept until %.0f", workflow_id, len(queues), keep_until)

    async def _remove_dlqs(self, workflow: dict[str, Any]) -> None:
        workflow_id = workflow["workflow_id"]
        async with self.locks.hold(workflow_id):
            queues = await self._queues(workflow_id)
            try:
                await self.admin.delete_dlqs(queues, workflow["broker_user"])
            except MQError as exc:
                LOGGER.warning("workflow %s: removing its DLQs failed (%s); next pass tries again", workflow_id, exc)
                return
            await self.db.workflows.mark_dlqs_deleted(workflow_id)
            LOGGER.info("workflow %s: DLQs and broker user removed after the retention period", workflow_id)
