"""Local-mode tokens: JWTs signed with a service's shared secret, as `rest_tools` validates them.

Production uses an OpenID provider; local mode, tests and the services' own internal callers (a
skydriver minting a token for the scanner it starts) sign with the shared secret instead.
"""

from typing import Any

from rest_tools.utils.auth import Auth


def mint_token(
    secret: str,
    subject: str,
    roles: str | list[str] | None,
    *,
    issuer: str,
    lifetime_seconds: int | None = None,
    algorithm: str = "HS256",
    role_claim: str = "role",
    claims: dict[str, Any] | None = None,
) -> str:
    """A signed JWT for `subject` carrying `roles` at `role_claim` (omitted when None).

    `lifetime_seconds` None takes `rest_tools`' default lifetime.
    """
    payload = dict(claims or {})
    if roles is not None:
        payload[role_claim] = roles
    auth = Auth(secret, issuer=issuer, algorithm=algorithm)  # type: ignore[no-untyped-call]
    return str(auth.create_token(subject, lifetime_seconds, payload=payload))  # type: ignore[no-untyped-call]
