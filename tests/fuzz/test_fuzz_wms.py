"""Schemathesis against the live WMS: every operation of `GET /v1/schema/openapi`, with a token for a role the
route allows; no 5xx, every answer as documented, bad input refused (see tests/fuzz/harness.py)."""

from __future__ import annotations

import asyncio

import pytest

from ewms_rest.validation import load_openapi
from tests.fuzz.harness import Target, fuzz_operation
from tests.openapi_routes import operations

pytestmark = pytest.mark.slow  # a live service and dozens of requests per operation
OPERATIONS = operations(load_openapi("ewms_wms"))


@pytest.mark.parametrize(("method", "route"), OPERATIONS, ids=[f"{m.upper()} {r}" for m, r in OPERATIONS])
async def test_fuzz_wms_operation(wms_target: Target, method: str, route: str) -> None:
    for role in wms_target.roles_to_fuzz(method, route):
        outcome = await asyncio.to_thread(fuzz_operation, wms_target, method, route, role)
        print(outcome.label, outcome.cases, sorted(outcome.statuses.items()))
        assert outcome.failure is None, f"{outcome.label}\n{outcome.failure}"
        assert outcome.cases > 0, outcome.label
