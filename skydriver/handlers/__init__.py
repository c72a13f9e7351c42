"""The REST handlers, one class per route (the route is each class's `ROUTE`, an OpenAPI path)."""

from .actions import ScanAddWorkersHandler, ScanRescanHandler
from .base import SkyDriverHandler, SkyDriverNotFound
from .checkpoint import CheckpointHandler
from .ewms import WorkflowFinishedHandler, WorkflowIdHandler
from .find import ScanBacklogHandler, ScansFindHandler
from .manifest import ScanManifestHandler, ScanStatusHandler
from .meta import HealthHandler, OpenAPIHandler
from .result import ScanResultHandler
from .scan import ScanEventHandler, ScanHandler, ScanLauncherHandler, ScanRequestHandler

HANDLERS: tuple[type[SkyDriverHandler], ...] = (
    HealthHandler,
    OpenAPIHandler,
    ScanLauncherHandler,
    ScanHandler,
    ScanManifestHandler,
    ScanResultHandler,
    ScanStatusHandler,
    ScanEventHandler,
    ScanRequestHandler,
    ScanRescanHandler,
    ScanAddWorkersHandler,
    WorkflowIdHandler,
    WorkflowFinishedHandler,
    CheckpointHandler,
    ScansFindHandler,
    ScanBacklogHandler,
)

__all__ = ["HANDLERS", "SkyDriverHandler", "SkyDriverNotFound"]
