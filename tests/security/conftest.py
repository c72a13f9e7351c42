"""Security checks' fixtures and helpers: the services' route tables read from their OpenAPI documents and their
handlers, tokens of every kind (good, forged, expired, unsigned, for the other service), and the servers from the
integration fixtures (`wms_factory`, `skydriver_factory`)."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
import warnings
from typing import Any

import jwt

from ewms_rest.validation import load_openapi
from ewms_wms.handlers import HANDLERS as WMS_HANDLERS
from skydriver.handlers import HANDLERS as SKYDRIVER_HANDLERS
from tests.integration.conftest import ISSUER as WMS_ISSUER
from tests.integration.conftest import SECRET as WMS_SECRET
from tests.integration.conftest import wms_factory
from tests.integration.skydriver.conftest import ISSUER as SKYDRIVER_ISSUER
from tests.integration.skydriver.conftest import SECRET as SKYDRIVER_SECRET
from tests.integration.skydriver.conftest import skydriver_factory
from tests.openapi_routes import operations, route_roles

__all__ = ["skydriver_factory", "wms_factory"]  # the fixtures, shared with the integration tests


@dataclasses.dataclass(frozen=True)
class Service:
    """What a test needs to know of a service to attack its routes."""

    name: str
    doc: dict[str, Any]
    roles: tuple[str, ...]  # the roles the service knows
    secret: str
    issuer: str
    route_roles: dict[tuple[str, str], tuple[str, ...]]  # (method, route) -> allowed roles, from the handlers

    def operations(self) -> list[tuple[str, str]]:
        """(method, route) of every operation the service documents."""
        return operations(self.doc)

    def is_public(self, method: str, route: str) -> bool:
        """The document says the operation needs no token (an empty `security`)."""
        return bool(self.doc["paths"][route][method].get("security", self.doc.get("security")) == [])

    def token(self, roles: str | list[str] | None, sub: str = "alice", **claims: Any) -> str:
        return make_jwt(self.secret, self.issuer, sub, roles, **claims)


WMS = Service(
    "wms", load_openapi("ewms_wms"), ("user", "tms", "admin"), WMS_SECRET, WMS_ISSUER, route_roles(WMS_HANDLERS)
)
SKYDRIVER = Service(
    "skydriver",
    load_openapi("skydriver"),
    ("user", "system"),
    SKYDRIVER_SECRET,
    SKYDRIVER_ISSUER,
    route_roles(SKYDRIVER_HANDLERS),
)
SERVICES = (WMS, SKYDRIVER)
OTHER = {"wms": SKYDRIVER, "skydriver": WMS}


def make_jwt(
    secret: str,
    issuer: str,
    sub: str,
    roles: str | list[str] | None,
    *,
    algorithm: str = "HS256",
    lifetime: float = 3600,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A JWT as the services' local mode validates them, with each part open to tampering."""
    now = time.time()
    payload: dict[str, Any] = {"sub": sub, "iss": issuer, "iat": now, "exp": now + lifetime, **claims}
    if roles is not None:
        payload["role"] = roles
    for claim in drop:
        payload.pop(claim, None)
    with warnings.catch_warnings():  # HS512 wants a longer key: the services refuse the token anyway
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=algorithm)


def unsigned_jwt(issuer: str, roles: str) -> str:
    """`alg: none`: a token anyone can write."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = time.time()
    payload = {"sub": "mallory", "iss": issuer, "iat": now, "exp": now + 3600, "role": roles}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def bad_credentials(service: Service) -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused with 401 (name -> headers)."""
    admin = "admin" if "admin" in service.roles else "system"
    every_role = list(service.roles)
    other = OTHER[service.name]

    def bearer(raw: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {raw}"}

    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic auth": {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()},
        "not a jwt": bearer("not-a-jwt"),
        "forged": bearer(make_jwt("another-secret-" + "y" * 40, service.issuer, "mallory", every_role)),
        "expired": bearer(make_jwt(service.secret, service.issuer, "alice", every_role, lifetime=-1000)),
        "no expiry": bearer(make_jwt(service.secret, service.issuer, "alice", every_role, drop=("exp",))),
        "wrong issuer": bearer(make_jwt(service.secret, "someone-else", "alice", every_role)),
        "other algorithm": bearer(make_jwt(service.secret, service.issuer, "alice", every_role, algorithm="HS512")),
        "unsigned (alg none)": bearer(unsigned_jwt(service.issuer, admin)),
        "the other service's token": bearer(other.token(list(other.roles))),
        "token in the query string only": {},  # see `request`
    }


def concrete(route: str, ids: dict[str, str]) -> str:
    """The route with its path parameters filled in (`ids` by parameter name)."""
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], route)
