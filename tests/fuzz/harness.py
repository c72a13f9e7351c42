"""Schemathesis against a live service: every operation of the OpenAPI document the service serves, with a
token for a role the route allows, answers checked against that same document.

The services run in-process on the test's event loop; schemathesis and hypothesis are synchronous, so each
operation is fuzzed in a worker thread (`asyncio.to_thread(fuzz_operation, ...)`) while the loop serves.

What is checked on every answer: no 5xx; a status code the operation documents; the documented content type;
the documented headers; a body that matches the documented schema. Negative cases (data that breaks the
document) must also be rejected (4xx).

Budget and seed come from the environment, so CI and the long run (`bench/fuzz_long.py`) share this code:
`FUZZ_MAX_EXAMPLES` (cases per operation, positive and negative; CI default 12), `FUZZ_SEED` (an integer, or `random`;
default: a fixed seed, so CI is reproducible), `FUZZ_ALL_ROLES` (1: fuzz each route once per allowed role),
`FUZZ_SHRINK` (1: shrink a failing case to a minimal one), `FUZZ_REPORT` (a file each operation's outcome is
appended to, one JSON object a line).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.auths import AuthStorage
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# a missing or broken token is tests/security's subject: here every request carries the route's token
CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
DEFAULT_MAX_EXAMPLES = 12
DEFAULT_SEED = 20261127
REQUEST_TIMEOUT = 30.0


def max_examples() -> int:
    return int(os.environ.get("FUZZ_MAX_EXAMPLES") or DEFAULT_MAX_EXAMPLES)


def seed() -> int:
    """The hypothesis seed: `FUZZ_SEED` (an integer, or `random` for a fresh one), else a fixed one."""
    raw = os.environ.get("FUZZ_SEED") or str(DEFAULT_SEED)
    return random.randrange(2**32) if raw == "random" else int(raw)


def shrink() -> bool:
    """Whether a failing case is shrunk to a minimal one (`FUZZ_SHRINK=1`): slow when requests are, so off in CI."""
    return os.environ.get("FUZZ_SHRINK", "") in ("1", "true", "yes")


def all_roles() -> bool:
    return os.environ.get("FUZZ_ALL_ROLES", "") in ("1", "true", "yes")


@dataclasses.dataclass
class Target:
    """A running service to fuzz: where it is, which tokens it accepts, which ids exist in it."""

    name: str
    base_url: str
    schema_path: str  # where the service serves its OpenAPI document
    tokens: dict[str, str]  # role -> bearer token
    roles: dict[tuple[str, str], tuple[str, ...]]  # (method, route) -> allowed roles
    known_ids: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # path parameter -> existing ids
    # (method, route) -> a function making a generated valid body pass the rules a schema cannot state (a real
    # event, a refinement ladder, ...): applied to a share of the positive cases, so the accepting code runs too
    body_fixers: dict[tuple[str, str], Callable[[Any], Any]] = dataclasses.field(default_factory=dict)
    _schema: Any = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def live_schema(self) -> Any:
        """The document the service serves (fetched once; blocking: call it from a thread)."""
        with self._lock:
            if self._schema is None:
                self._schema = schemathesis.openapi.from_url(self.base_url + self.schema_path, config=CONFIG)
            return self._schema

    def roles_to_fuzz(self, method: str, route: str) -> list[str | None]:
        """The roles to fuzz a route with: the first it allows (every one with FUZZ_ALL_ROLES); None: no token."""
        allowed = self.roles[(method, route)]
        if not allowed:
            return [None]
        return list(allowed) if all_roles() else [allowed[0]]


@dataclasses.dataclass
class Outcome:
    """What fuzzing one operation found."""

    label: str
    cases: int
    statuses: dict[int, int]
    failure: str | None


class BearerToken:
    """A schemathesis auth provider: one bearer token. Schemathesis leaves it out of the negative cases that
    test a missing or broken `Authorization` header (the document's security scheme)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get(self, case: Any, ctx: Any) -> str:
        return self.token

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def auth_storage(token: str | None) -> AuthStorage[str] | None:
    if token is None:
        return None
    storage: AuthStorage[str] = AuthStorage()
    storage.providers.append(BearerToken(token))
    return storage


def _strategies(
    operation: Any,
    known: dict[str, list[str]],
    modes: Sequence[Any],
    token: str | None,
    fixer: Callable[[Any], Any] | None,
) -> Any:
    """Generated cases, and as many again with the path's ids replaced by ones that exist (deeper code runs)."""
    path_names = [p.name for p in operation.path_parameters]
    existing = {name: known[name] for name in path_names if known.get(name)}
    storage = auth_storage(token)
    strategies = []
    for mode in modes:
        generated = [operation.as_strategy(generation_mode=mode, auth_storage=storage)]
        if existing and len(existing) == len(path_names):
            for combination in _combinations(existing):
                generated.append(
                    operation.as_strategy(generation_mode=mode, auth_storage=storage, path_parameters=combination)
                )
        if fixer is not None and mode.is_positive:
            generated += [g.map(functools.partial(_fixed, fixer)) for g in generated]
        strategies += generated
    return st.one_of(strategies)


def _fixed(fixer: Callable[[Any], Any], case: Any) -> Any:
    if isinstance(case.body, dict):
        case.body = fixer(copy.deepcopy(case.body))
    return case


def _combinations(existing: dict[str, list[str]]) -> list[dict[str, str]]:
    combos: list[dict[str, str]] = [{}]
    for name, values in existing.items():
        combos = [{**c, name: v} for c in combos for v in values]
    return combos


def fuzz_operation(
    target: Target,
    method: str,
    route: str,
    role: str | None,
    *,
    examples: int | None = None,
    seed_value: int | None = None,
    checks: list[Callable[..., Any]] | None = None,
) -> Outcome:
    """Fuzz one operation of the live document (blocking). `failure` holds schemathesis's report, if any."""
    schema = target.live_schema()
    operation = schema[route][method.upper()]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    token = target.tokens[role] if role else None
    strategy = _strategies(operation, target.known_ids, modes, token, target.body_fixers.get((method, route)))
    statuses: dict[int, int] = {}
    session = requests.Session()

    @hypothesis.settings(
        max_examples=examples or max_examples(),
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink() else [])],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    @hypothesis.seed(seed_value if seed_value is not None else seed())
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=target.base_url, session=session, timeout=REQUEST_TIMEOUT)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks or CHECKS)

    failure = None
    started = time.monotonic()
    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup is a BaseExceptionGroup
        failure = _describe(exc)
    finally:
        session.close()
    outcome = Outcome(f"{target.name} {method.upper()} {route} as {role}", sum(statuses.values()), statuses, failure)
    _report(outcome, time.monotonic() - started)
    return outcome


def _report(outcome: Outcome, seconds: float) -> None:
    """Append the outcome to `FUZZ_REPORT` (bench/fuzz_long.py reads it)."""
    path = os.environ.get("FUZZ_REPORT")
    if path:
        entry = {**dataclasses.asdict(outcome), "seconds": round(seconds, 2)}
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {text}", *notes])
