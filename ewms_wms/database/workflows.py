"""The `workflows` collection: one document per workflow, including its queues' life cycle.

`mq_state` walks pending -> activated (queues and policies on the broker) -> deleted (queues
gone, dead-letter queues kept for inspection) -> dlqs-deleted. The provisioner and the janitor
read it to know what is left to do, so a restart resumes where the last run stopped.
"""

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from .query import Page, find_page

Doc = dict[str, Any]
NO_ID = {"_id": False}
# null tests spelled `{"$eq": None}`: the same on MongoDB as a bare None, and the bare form is
# unreliable on the MongoDB wire server the tests use (inside $or and in counts)
NULL = {"$eq": None}
DEACTIVATED = {"$in": ["ABORTED", "FINISHED"]}


class Workflows:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def insert(self, doc: Doc) -> None:
        await self.collection.insert_one(dict(doc))

    async def get(self, workflow_id: str) -> Doc | None:
        return await self.collection.find_one({"workflow_id": workflow_id}, NO_ID)

    async def find(self, query: Doc, scope: Doc, after: str | None, limit: int) -> Page:
        return await find_page(self.collection, query, scope, after, limit)

    async def deactivate(self, workflow_id: str, reason: str, now: float) -> Doc | None:
        """Mark the workflow deactivated (the first reason stays); the document after, or None if unknown."""
        await self.collection.update_one(
            {"workflow_id": workflow_id, "deactivated": NULL},
            {"$set": {"deactivated": reason, "deactivated_ts": now}},
        )
        return await self.get(workflow_id)

    async def due_for_provisioning(self, now: float) -> list[str]:
        """Active workflows whose queues are not on the broker yet and whose next attempt is due."""
        cursor = self.collection.find(
            {
                "mq_state": "pending",
                "deactivated": NULL,
                "$or": [{"provision_next_attempt_ts": NULL}, {"provision_next_attempt_ts": {"$lte": now}}],
            },
            {"workflow_id": True, "_id": False},
        )
        return [doc["workflow_id"] async for doc in cursor]

    async def mark_activated(self, workflow_id: str, now: float) -> bool:
        """pending -> activated, unless deactivated meanwhile (the janitor then cleans up)."""
        result = await self.collection.update_one(
            {"workflow_id": workflow_id, "mq_state": "pending", "deactivated": NULL},
            {"$set": {"mq_state": "activated", "mq_activated_ts": now, "provision_error": None}},
        )
        return result.modified_count == 1

    async def provision_failed(self, workflow_id: str, next_attempt: float, error: str) -> Doc | None:
        """Count a failed attempt and schedule the next; the document after."""
        return await self.collection.find_one_and_update(
            {"workflow_id": workflow_id, "mq_state": "pending"},
            {
                "$inc": {"provision_attempts": 1},
                "$set": {"provision_next_attempt_ts": next_attempt, "provision_error": error},
            },
            projection=NO_ID,
            return_document=ReturnDocument.AFTER,
        )

    async def deactivated_with_queues(self) -> list[Doc]:
        """Deactivated workflows whose queues may still exist on the broker."""
        cursor = self.collection.find(
            {"deactivated": DEACTIVATED, "mq_state": {"$in": ["pending", "activated"]}}, NO_ID
        )
        return await cursor.to_list()

    async def mark_queues_deleted(self, workflow_id: str, now: float, dlqs_delete_after: float) -> None:
        await self.collection.update_one(
            {"workflow_id": workflow_id},
            {"$set": {"mq_state": "deleted", "queues_deleted_ts": now, "dlqs_delete_after_ts": dlqs_delete_after}},
        )

    async def dlqs_due(self, now: float) -> list[Doc]:
        """Workflows whose dead-letter queues have been kept long enough."""
        cursor = self.collection.find({"mq_state": "deleted", "dlqs_delete_after_ts": {"$lte": now}}, NO_ID)
        return await cursor.to_list()

    async def mark_dlqs_deleted(self, workflow_id: str) -> None:
        await self.collection.update_one({"workflow_id": workflow_id}, {"$set": {"mq_state": "dlqs-deleted"}})
