"""Who may call what: `user` (people, the CLI, the alert hook) and `system` (scanner instances).

A token may carry both roles. A system token may also carry a `scan_id` claim: skydriver mints
such a token for each scanner it starts, so a scanner that leaks its token (or misbehaves) can
only ever touch its own scan. Without the `user` role that claim is binding on every scan route.
The role check itself is `ewms_rest.auth.require_roles`.
"""

import enum
from typing import Any


class Role(enum.StrEnum):
    USER = "user"
    SYSTEM = "system"


SCAN_ID_CLAIM = "scan_id"
USER_ROUTES = (Role.USER,)
SYSTEM_ROUTES = (Role.SYSTEM,)
READ_ROUTES = (Role.USER, Role.SYSTEM)


def scan_limit(granted: set[str], claims: dict[str, Any]) -> str | None:
    """The one scan a token may reach, or None when it may reach every scan (it has the `user` role or no claim)."""
    if Role.USER in granted:
        return None
    limit = claims.get(SCAN_ID_CLAIM)
    return None if limit is None else str(limit)
