"""The `MQProfiles` collection: the credentials of each scan's queues, for the scanner's environment only.

They never appear in any API answer; the starter and the watchdog read them to (re)start a scanner.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]


class MQProfiles:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def put(self, scan_id: str, workflow_id: str, profiles: dict[str, Doc]) -> None:
        """The profiles by queue alias (`to-clients`, `from-clients`), replacing what was there."""
        doc = {"scan_id": scan_id, "workflow_id": workflow_id, "profiles": profiles}
        await self.collection.replace_one({"scan_id": scan_id}, doc, upsert=True)

    async def get(self, scan_id: str) -> dict[str, Doc] | None:
        doc = await self.collection.find_one({"scan_id": scan_id}, {"_id": False})
        return None if doc is None else dict(doc["profiles"])
