"""The MongoDB connection and the indexes the WMS's queries need."""

import logging

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import PyMongoError

from ..config import mask_url
from .mqprofiles import MQProfiles
from .task_directives import TaskDirectives
from .taskforces import Taskforces
from .workflows import Workflows

LOGGER = logging.getLogger(__name__)


class Database:
    """One client, one database, four stores."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self.client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
        )
        db = self.client[name]
        self.workflows = Workflows(db["workflows"])
        self.task_directives = TaskDirectives(db["task_directives"])
        self.taskforces = Taskforces(db["taskforces"], db["phase_changes"])
        self.mqprofiles = MQProfiles(db["mq_profiles"])

    async def ensure_indexes(self) -> None:
        """Unique ids, and the lookups the routes and loops make (claims sort by priority, then age)."""
        await self.workflows.collection.create_index("workflow_id", unique=True)
        await self.workflows.collection.create_index([("mq_state", ASCENDING), ("deactivated", ASCENDING)])
        await self.task_directives.collection.create_index("task_id", unique=True)
        await self.task_directives.collection.create_index("workflow_id")
        taskforces = self.taskforces.collection
        await taskforces.create_index("taskforce_uuid", unique=True)
        await taskforces.create_index("workflow_id")
        await taskforces.create_index(
            [("phase", ASCENDING), ("cluster_location", ASCENDING), ("priority", DESCENDING), ("timestamp", ASCENDING)]
        )
        await self.taskforces.log.create_index("taskforce_uuid")
        await self.mqprofiles.collection.create_index("mqid", unique=True)
        await self.mqprofiles.collection.create_index("workflow_id")
        LOGGER.info("database indexes ensured on %s", mask_url(self._url))

    async def ping(self) -> bool:
        """Whether the database answers right now."""
        try:
            await self.client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()
