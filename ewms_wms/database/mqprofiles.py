"""The `mq_profiles` collection: one per queue, in upstream EWMS MQS's shape, credentials included."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]
NO_ID = {"_id": False}
BOOLEANS = ("is_public", "is_activated")


def _public(doc: Doc) -> Doc:
    """Booleans as booleans: some MongoDB wire servers hand back a `$set` True as 1."""
    return {k: (bool(v) if k in BOOLEANS else v) for k, v in doc.items()}


class MQProfiles:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def insert_many(self, docs: list[Doc]) -> None:
        if docs:  # a workflow may have no queues (pymongo refuses an empty insert_many)
            await self.collection.insert_many([dict(d) for d in docs])

    async def get(self, mqid: str) -> Doc | None:
        doc = await self.collection.find_one({"mqid": mqid}, NO_ID)
        return None if doc is None else _public(doc)

    async def for_workflow(self, workflow_id: str, *, public_only: bool = False) -> list[Doc]:
        query: Doc = {"workflow_id": workflow_id}
        if public_only:
            query["is_public"] = True
        return [_public(d) for d in await self.collection.find(query, NO_ID).sort("_id", 1).to_list()]

    async def by_names(self, mqids: list[str]) -> list[Doc]:
        return [_public(d) for d in await self.collection.find({"mqid": {"$in": mqids}}, NO_ID).to_list()]

    async def activate(self, workflow_id: str) -> None:
        await self.collection.update_many({"workflow_id": workflow_id}, {"$set": {"is_activated": True}})
