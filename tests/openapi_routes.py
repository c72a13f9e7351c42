"""A service's route table for tests: the operations its OpenAPI document names, and the roles its handlers allow
(`ewms_rest.auth.require_roles` records them as `ALLOWED_ROLES_ATTR`). Used by tests/fuzz and tests/security."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ewms_rest.auth import ALLOWED_ROLES_ATTR

METHODS = ("get", "put", "post", "delete", "patch")


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation in an OpenAPI document, in document order."""
    return [(m, path) for path, item in doc["paths"].items() for m in item if m in METHODS]


def route_roles(handlers: Iterable[type[Any]]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, route template) -> the roles `require_roles` lets through (empty: a public route)."""
    table: dict[tuple[str, str], tuple[str, ...]] = {}
    for handler in handlers:
        for method in handler.implemented_methods():
            allowed = getattr(getattr(handler, method), ALLOWED_ROLES_ATTR, ())
            table[(method.lower(), handler.ROUTE)] = tuple(str(r) for r in allowed)
    return table
