"""The MQS routes EWMS's own clients call (upstream runs these in a separate service).

Users poll `GET /v1/mqs/workflows/{workflow_id}/mq-profiles/public` until every profile
`is_activated`, then connect with `broker_address` + `auth_token`; the TMS reads single
profiles by queue name. Both answer from the WMS's own records.
"""

from ewms_rest.auth import require_roles
from ewms_rest.errors import ApiError

from ..auth import TMS_ROUTES, USER_ROUTES
from .base import BaseHandler


class PublicMQProfilesHandler(BaseHandler):
    ROUTE = "/v1/mqs/workflows/{workflow_id}/mq-profiles/public"

    @require_roles(*USER_ROUTES)
    async def get(self, workflow_id: str) -> None:
        self.check_path(workflow_id=workflow_id)
        workflow = await self.ctx.db.workflows.get(workflow_id)
        if not self.may_change(workflow):
            raise ApiError(404, f"no workflow {workflow_id}")
        self.send({"mqprofiles": await self.ctx.db.mqprofiles.for_workflow(workflow_id, public_only=True)})


class MQProfileHandler(BaseHandler):
    ROUTE = "/v1/mqs/mq-profiles/{mqid}"

    @require_roles(*TMS_ROUTES)
    async def get(self, mqid: str) -> None:
        self.check_path(mqid=mqid)
        profile = await self.ctx.db.mqprofiles.get(mqid)
        if profile is None:
            raise ApiError(404, f"no mq profile {mqid}")
        self.send(profile)
