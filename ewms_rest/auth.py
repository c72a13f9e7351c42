"""Who may call what: bearer JWTs (validated by `wipac-rest-tools`) carrying roles.

A request without a valid token is answered 401 and one whose roles may not use the route 403 —
`rest_tools`' own `role_authorization` answers 403 for both, so the check lives here. Each service
names its roles (the WMS: user/tms/admin; skydriver: user/system).
"""

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .errors import ApiError

P = ParamSpec("P")
R = TypeVar("R")

ALLOWED_ROLES_ATTR = "allowed_roles"


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


class Authenticated(Protocol):
    """What `require_roles` needs from a handler."""

    auth_data: dict[str, Any]
    role_claim: str
    roles: set[str]
    subject: str

    @property
    def current_user(self) -> Any: ...


Handler = TypeVar("Handler", bound=Authenticated)


def require_roles(
    *allowed: str,
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
