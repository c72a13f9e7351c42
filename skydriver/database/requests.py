"""The `ScanRequests` collection: each scan's request as sent (normalised), so it can be rescanned or re-posted.

The event itself lives in `Events`; a request names it by `i3_event_id`.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]
NO_ID = {"_id": False}


class ScanRequests:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def insert(self, doc: Doc) -> None:
        await self.collection.insert_one({**doc, "rescan_ids": []})

    async def get(self, scan_id: str) -> Doc | None:
        return await self.collection.find_one({"scan_id": scan_id}, NO_ID)

    async def add_rescan(self, scan_id: str, rescan_id: str) -> None:
        """Remember that `rescan_id` re-ran this request."""
        await self.collection.update_one({"scan_id": scan_id}, {"$addToSet": {"rescan_ids": rescan_id}})
