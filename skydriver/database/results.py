"""The `Results` collection: one skymap per scan, replaced by each newer partial and finally the final one."""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]
NO_ID = {"_id": False}


def _public(doc: Doc) -> Doc:
    """Booleans as booleans: some MongoDB wire servers hand back a `$set` True as 1."""
    return {**doc, "is_final": bool(doc["is_final"])}


class Results:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def put(self, scan_id: str, result: Doc) -> Doc:
        """Store the scan's result (replacing any earlier one); the stored form."""
        doc = {"scan_id": scan_id, **result}
        await self.collection.replace_one({"scan_id": scan_id}, doc, upsert=True)
        return _public(doc)

    async def get(self, scan_id: str) -> Doc | None:
        doc = await self.collection.find_one({"scan_id": scan_id}, NO_ID)
        return None if doc is None else _public(doc)
