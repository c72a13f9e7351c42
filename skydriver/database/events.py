"""The `Events` collection: each event once, by `i3_event_id` (a digest of its canonical JSON).

Rescans and re-posted requests of one event share its document instead of storing it again.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]


class Events:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def put(self, i3_event_id: str, event: Doc) -> None:
        """Store the event unless it is there already (same id, same content)."""
        await self.collection.update_one(
            {"i3_event_id": i3_event_id}, {"$setOnInsert": {"event_i3live_json": event}}, upsert=True
        )

    async def get(self, i3_event_id: str) -> Doc | None:
        doc = await self.collection.find_one({"i3_event_id": i3_event_id}, {"_id": False})
        return None if doc is None else dict(doc["event_i3live_json"])
