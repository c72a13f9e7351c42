"""The MongoDB connection and the indexes skydriver's queries need."""

import logging

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import PyMongoError

from ..config import mask_url
from .checkpoints import Checkpoints
from .events import Events
from .manifests import Manifests
from .mqprofiles import MQProfiles
from .requests import ScanRequests
from .results import Results

LOGGER = logging.getLogger(__name__)


class Database:
    """One client, one database, six stores."""

    def __init__(self, url: str, name: str) -> None:
        self._url = url
        self.client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
        )
        db = self.client[name]
        self.requests = ScanRequests(db["ScanRequests"])
        self.manifests = Manifests(db["Manifests"])
        self.results = Results(db["Results"])
        self.events = Events(db["Events"])
        self.mqprofiles = MQProfiles(db["MQProfiles"])
        self.checkpoints = Checkpoints(db["Checkpoints"])

    async def ensure_indexes(self) -> None:
        """Unique ids, the backlog's order (priority, then age), and the lookups users search by."""
        await self.requests.collection.create_index("scan_id", unique=True)
        manifests = self.manifests.collection
        await manifests.create_index("scan_id", unique=True)
        await manifests.create_index([("is_deleted", ASCENDING), ("timestamp", ASCENDING)])
        # single-field: the dev MongoDB wire server uses no compound index for an equality on its first field
        await manifests.create_index("scan_state")
        await manifests.create_index("cleanup_pending")
        await manifests.create_index([("event_metadata.run_id", ASCENDING), ("event_metadata.event_id", ASCENDING)])
        await self.results.collection.create_index("scan_id", unique=True)
        await self.events.collection.create_index("i3_event_id", unique=True)
        await self.mqprofiles.collection.create_index("scan_id", unique=True)
        await self.checkpoints.collection.create_index([("scan_id", ASCENDING), ("seq", ASCENDING)], unique=True)
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
