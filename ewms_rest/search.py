"""User-supplied MongoDB searches in REST routes (the WMS's `POST /v1/query/*`, skydriver's `POST /scans/find`).

A filter comes from outside, so only plain (dotted) field names and the comparison/logic
operators pass; anything that runs code or reaches other collections (`$where`, `$function`,
`$lookup`, `$expr`, ...) is refused before the database sees it. Projections are applied here
rather than by the server so that dotted paths behave the same on MongoDB and on the test server.
"""

from collections.abc import Iterable
from typing import Any

ALLOWED_OPERATORS = frozenset(
    {
        "$and", "$or", "$nor", "$not",
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
        "$exists", "$all", "$elemMatch", "$size", "$type",
    }
)  # fmt: skip
MAX_DEPTH = 16
EVERYTHING = "*"  # a projection of everything (upstream SkyDriver's clients send it)


class QueryError(ValueError):
    """A search the service refuses; `field` names the part of the filter at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_filter(value: Any, where: str, depth: int = 0) -> None:
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


def project(doc: dict[str, Any], fields: Iterable[str] | None) -> dict[str, Any]:
    """Only `fields` (dotted paths allowed) of `doc`; everything when `fields` is None or has `*`."""
    if fields is None or EVERYTHING in fields:
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
