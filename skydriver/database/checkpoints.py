"""The `Checkpoints` collection: the scanner's write-ahead record, one document per POST.

A scanner records the tasks it is about to publish and the results it is about to acknowledge;
a restarted scanner reads the union back and resumes without redoing or losing work. Documents
are only ever added (appending to one array is not reliable on every MongoDB wire server), and
the union is taken on read, deduplicated by each item's key.
"""

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]


def _result_key(result: Doc) -> tuple[int, int, int]:
    return int(result["nside"]), int(result["pixel"]), int(result["seed"])


class Checkpoints:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def add(self, scan_id: str, seq: int, published: list[list[int]], results: list[Doc]) -> None:
        await self.collection.insert_one({"scan_id": scan_id, "seq": seq, "published": published, "results": results})

    async def union(self, scan_id: str) -> Doc:
        """Every published task and result recorded for the scan, each once (a later duplicate wins)."""
        published: dict[tuple[int, ...], list[int]] = {}
        results: dict[tuple[int, int, int], Doc] = {}
        cursor = self.collection.find({"scan_id": scan_id}, {"_id": False}).sort("seq", 1)
        async for doc in cursor:
            published.update((tuple(task), list(task)) for task in doc["published"])
            results.update((_result_key(r), r) for r in doc["results"])
        return {"published": list(published.values()), "results": list(results.values())}
