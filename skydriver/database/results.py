"""The `Results` collection: one skymap per scan, replaced by each newer partial and finally the final one.

The skymap (`skyscan_result`, a few hundred kB of nested lists) is stored as its JSON text, and a read
hands that text out as it is: clients poll `GET /scan/{id}` (manifest *and* result) for thousands of
scans, and decoding the nested document from the database and encoding it again for every answer was
most of that route's time (bench/rest_latency.py). Documents written before, with the skymap as a
nested `skyscan_result`, read the same.
"""

import json
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

Doc = dict[str, Any]
NO_ID = {"_id": False}
SKYMAP_TEXT = "skyscan_result_json"


def _json(value: Any) -> str:
    """JSON as tornado writes it (`</` escaped, so a document is safe inside HTML too)."""
    return json.dumps(value).replace("</", "<\\/")


def result_json(doc: Doc) -> str:
    """A stored result as clients see it — `{scan_id, skyscan_result, is_final, summary}` — as JSON text."""
    skymap = doc.get(SKYMAP_TEXT)
    if skymap is None:  # written before the skymap was stored as text
        skymap = _json(doc.get("skyscan_result"))
    # booleans as booleans: some MongoDB wire servers hand back a `$set` True as 1
    return (
        f'{{"scan_id": {_json(doc["scan_id"])}, "skyscan_result": {skymap}, '
        f'"is_final": {_json(bool(doc["is_final"]))}, "summary": {_json(doc.get("summary"))}}}'
    )


class Results:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def put(self, scan_id: str, result: Doc) -> Doc:
        """Store the scan's result (replacing any earlier one); the stored form, as `get` answers it."""
        doc = {
            "scan_id": scan_id,
            SKYMAP_TEXT: _json(result["skyscan_result"]),
            "is_final": bool(result["is_final"]),
            "summary": result.get("summary"),
        }
        await self.collection.replace_one({"scan_id": scan_id}, doc, upsert=True)
        return {"scan_id": scan_id, **result, "is_final": bool(result["is_final"])}

    async def get_json(self, scan_id: str) -> str | None:
        """The scan's result as JSON text (see `result_json`), or None."""
        doc = await self.collection.find_one({"scan_id": scan_id}, NO_ID)
        return None if doc is None else result_json(doc)

    async def get(self, scan_id: str) -> Doc | None:
        text = await self.get_json(scan_id)
        return None if text is None else dict(json.loads(text))
