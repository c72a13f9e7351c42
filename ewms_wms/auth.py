"""The WMS's roles and who sees what.

Roles: `user` creates, reads and stops its own workflows; `tms` drives taskforces through the
TMS routes; `admin` may do everything, on every workflow. Tokens and the 401/403 decision are
`ewms_rest.auth`'s.
"""

import enum


class Role(enum.StrEnum):
    """The roles a token may carry."""

    USER = "user"
    TMS = "tms"
    ADMIN = "admin"


USER_ROUTES = (Role.USER, Role.ADMIN)
READ_ROUTES = (Role.USER, Role.TMS, Role.ADMIN)
TMS_ROUTES = (Role.TMS, Role.ADMIN)


def is_admin(roles: set[str]) -> bool:
    """Admins see and act on every workflow; users only on their own."""
    return Role.ADMIN in roles


def sees_everything(roles: set[str]) -> bool:
    """Admins and TMSs read every workflow; users only their own."""
    return Role.ADMIN in roles or Role.TMS in roles
