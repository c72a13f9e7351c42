"""Who may call what: bearer JWTs (validated by `wipac-rest-tools`) carrying a role.

Roles: `user` creates, reads and stops its own workflows; `tms` drives taskforces through the
TMS routes; `admin` may do everything, on every workflow. A request without a valid token is
answered 401 and one whose role may not use the route 403 — `rest_tools`'
`role_authorization` answers 403 for both, so the check lives here.
"""

import enum
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .errors import ApiError

P = ParamSpec("P")
R = TypeVar("R")


class Role(enum.StrEnum):
    """The roles a token may carry."""

    USER = "user"
    TMS = "tms"
    ADMIN = "admin"


ALLOWED_ROLES_ATTR = "allowed_roles"
USER_ROUTES = (Role.USER, Role.ADMIN)
READ_ROUTES = (Role.USER, Role.TMS, Role.ADMIN)
TMS_ROUTES = (Role.TMS, Role.ADMIN)


def roles_in(claims: dict[str, Any], claim_path: str) -> set[str]:
    """The roles a token's claims carry at `claim_path` (dotted, e.g. `realm_access.roles`): a string or a list."""
    value: Any = claims
    for part in claim_path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return set(value.split())
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


class _Authenticated(Protocol):
    """What `require_roles` needs from a handler."""

    auth_data: dict[str, Any]
    role_claim: str
    roles: set[str]
    subject: str

    @property
    def current_user(self) -> Any: ...


Handler = TypeVar("Handler", bound=_Authenticated)


def require_roles(
    *allowed: Role,
) -> Callable[[Callable[Concatenate[Handler, P], Awaitable[R]]], Callable[Concatenate[Handler, P], Awaitable[R]]]:
    """Decorate a handler method: 401 without a valid token, 403 unless the token has one of `allowed`."""

    def decorate(
        method: Callable[Concatenate[Handler, P], Awaitable[R]],
    ) -> Callable[Concatenate[Handler, P], Awaitable[R]]:
        async def wrapper(self: Handler, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if not self.current_user:  # rest_tools validated the token (signature, expiry, issuer) here
                raise ApiError(401, "a valid bearer token is required")
            granted = roles_in(self.auth_data, self.role_claim) & {str(r) for r in allowed}
            if not granted:
                needed = ", ".join(str(r) for r in allowed)
                raise ApiError(403, f"this route needs one of the roles: {needed}")
            self.roles = granted
            self.subject = str(self.auth_data.get("sub", ""))
            return await method(self, *args, **kwargs)

        functools.update_wrapper(wrapper, method)
        setattr(wrapper, ALLOWED_ROLES_ATTR, allowed)  # read by the route-table tests
        return wrapper

    return decorate


def is_admin(roles: set[str]) -> bool:
    """Admins see and act on every workflow; users only on their own."""
    return Role.ADMIN in roles


def sees_everything(roles: set[str]) -> bool:
    """Admins and TMSs read every workflow; users only their own."""
    return Role.ADMIN in roles or Role.TMS in roles
