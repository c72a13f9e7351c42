"""User-supplied searches (`POST /v1/query/*`) a page at a time; filters vetted by `ewms_rest.search`."""

import dataclasses
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from ewms_rest.search import QueryError, check_filter


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of results and where the next one starts (None: no more)."""

    docs: list[dict[str, Any]]
    next_after: str | None


async def find_page(
    collection: AsyncCollection[dict[str, Any]],
    query: dict[str, Any],
    scope: dict[str, Any],
    after: str | None,
    limit: int,
) -> Page:
    """The documents matching `query` within `scope`, in insertion order, `limit` at a time."""
    check_filter(query, "query")
    clauses = [c for c in (query, scope) if c]
    if after is not None:
        try:
            clauses.append({"_id": {"$gt": ObjectId(after)}})
        except InvalidId:
            raise QueryError("after", "is not a value given as 'next_after'") from None
    mongo_filter = {"$and": clauses} if clauses else {}
    try:
        docs = await collection.find(mongo_filter).sort("_id", 1).limit(limit + 1).to_list()
    except OperationFailure as exc:
        raise QueryError("query", f"the database refused the filter: {str(exc.details or exc)[:300]}") from None
    more = len(docs) > limit
    docs = docs[:limit]
    next_after = str(docs[-1]["_id"]) if more else None
    return Page([{k: v for k, v in d.items() if k != "_id"} for d in docs], next_after)
