"""User-supplied searches (`POST /v1/query/*`): a vetted MongoDB filter, a projection, pages.

A filter comes from outside, so only plain fields and the comparison/logic operators pass;
anything that runs code or reaches other collections (`$where`, `$function`, `$lookup`,
`$expr`, ...) is refused before the database sees it. Projections are applied here rather
than by the server so that dotted paths behave the same on MongoDB and on the test server.
"""

import dataclasses
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

ALLOWED_OPERATORS = frozenset(
    {
        "$and", "$or", "$nor", "$not",
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$exists", "$all", "$elemMatch", "$size", "$type",
    }
)  # fmt: skip
MAX_DEPTH = 16


class QueryError(ValueError):
    """A search the WMS refuses; the message names the part of the filter at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_filter(value: Any, where: str = "query", depth: int = 0) -> None:
    """Raise `QueryError` unless every operator in the filter is one of `ALLOWED_OPERATORS`."""
    if depth > MAX_DEPTH:
        raise QueryError(where, f"is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.startswith("$") and key not in ALLOWED_OPERATORS:
                allowed = ", ".join(sorted(ALLOWED_OPERATORS))
                raise QueryError(f"{where}.{key}", f"operator not allowed (allowed: {allowed})")
            if not key.startswith("$") and "$" in key:
                raise QueryError(f"{where}.{key}", "a field name may not contain '$'")
            check_filter(inner, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            check_filter(inner, f"{where}[{i}]", depth + 1)


def project(doc: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Only `fields` (dotted paths allowed) of `doc`; everything when `fields` is None."""
    if fields is None:
        return doc
    out: dict[str, Any] = {}
    for path in fields:
        parts = path.split(".")
        value: Any = doc
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
    return out


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
    check_filter(query)
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
