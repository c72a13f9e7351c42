"""The REST handlers, one class per route (the route is each class's `ROUTE`, an OpenAPI path)."""

from .base import BaseHandler, NotFoundHandler
from .meta import HealthHandler, OpenAPIHandler
from .mqs import MQProfileHandler, PublicMQProfilesHandler
from .task_directives import AddWorkersHandler, QueryTaskDirectivesHandler, TaskDirectiveHandler
from .taskforces import QueryTaskforcesHandler, TaskforceHandler
from .tms import (
    CondorCompleteHandler,
    CondorRmHandler,
    CondorSubmitHandler,
    PendingStarterHandler,
    PendingStopperHandler,
    RmFailedHandler,
    StatusesHandler,
    SubmitFailedHandler,
)
from .workflows import (
    AbortHandler,
    FinishedHandler,
    QueryWorkflowsHandler,
    WorkflowHandler,
    WorkflowsHandler,
)

HANDLERS: tuple[type[BaseHandler], ...] = (
    HealthHandler,
    OpenAPIHandler,
    WorkflowsHandler,
    WorkflowHandler,
    AbortHandler,
    FinishedHandler,
    QueryWorkflowsHandler,
    TaskDirectiveHandler,
    QueryTaskDirectivesHandler,
    AddWorkersHandler,
    TaskforceHandler,
    QueryTaskforcesHandler,
    PendingStarterHandler,
    CondorSubmitHandler,
    SubmitFailedHandler,
    PendingStopperHandler,
    CondorRmHandler,
    RmFailedHandler,
    CondorCompleteHandler,
    StatusesHandler,
    PublicMQProfilesHandler,
    MQProfileHandler,
)

__all__ = ["HANDLERS", "BaseHandler", "NotFoundHandler"]
