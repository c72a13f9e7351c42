"""The `task_directives` collection: what a workflow's tasks run, and on which queues."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from .query import Page, find_page

Doc = dict[str, Any]
NO_ID = {"_id": False}


class TaskDirectives:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def insert_many(self, docs: list[Doc]) -> None:
        await self.collection.insert_many([dict(d) for d in docs])

    async def get(self, task_id: str) -> Doc | None:
        return await self.collection.find_one({"task_id": task_id}, NO_ID)

    async def find(self, query: Doc, scope: Doc, after: str | None, limit: int) -> Page:
        return await find_page(self.collection, query, scope, after, limit)

    async def add_location(self, task_id: str, location: str) -> None:
        """Remember a cluster location that `add-workers` added (the array exists from creation)."""
        await self.collection.update_one({"task_id": task_id}, {"$addToSet": {"cluster_locations": location}})
