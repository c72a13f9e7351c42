"""Local-mode tokens: JWTs signed with a service's shared secret, as `rest_tools` validates them.

Production uses an OpenID provider; local mode, tests and the services' own internal callers (a
skydriver minting a token for the scanner it starts) sign with the shared secret instead. Operators
mint tokens with `ewms-token --service WMS|SKYDRIVER SUBJECT ROLE` where the service runs.
"""

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

from rest_tools.utils.auth import Auth

from ewms_config import ConfigError


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


def token_from_env(
    prefix: str, subject: str, roles: list[str], environ: Mapping[str, str], lifetime: int | None
) -> str:
    """A token valid at the service configured by `environ`'s `<prefix>_AUTH_*` variables (its own settings)."""

    def variable(name: str, default: str | None = None) -> str:
        value = environ.get(f"{prefix}_AUTH_{name}", "").strip() or default
        if value is None:
            raise ConfigError(f"{prefix}_AUTH_{name}", "is not set (run this where the service's settings are)")
        return value

    return mint_token(
        variable("SECRET"),
        subject,
        roles[0] if len(roles) == 1 else roles,
        issuer=variable("ISSUER"),
        lifetime_seconds=lifetime,
        algorithm=variable("ALGORITHM", "HS256"),
        role_claim=variable("ROLE_CLAIM", "role"),
    )


def main(argv: list[str] | None = None) -> None:
    """`ewms-token`: print a local-mode token, signed with the service's own secret from the environment."""
    parser = argparse.ArgumentParser(
        prog="ewms-token",
        description="Print a JWT for SUBJECT with ROLE(s), signed with a service's shared secret. Reads "
        "<SERVICE>_AUTH_SECRET, _AUTH_ISSUER, _AUTH_ALGORITHM and _AUTH_ROLE_CLAIM from the environment, so the "
        "token is valid at that service by construction (run it where the service runs, e.g. kubectl exec).",
    )
    parser.add_argument("--service", required=True, choices=["WMS", "SKYDRIVER"], help="whose settings to use")
    parser.add_argument("--lifetime", type=int, default=None, help="seconds the token is valid (default: a year)")
    parser.add_argument("subject", help="who the token is for (the token's sub)")
    parser.add_argument("roles", nargs="+", metavar="role", help="WMS: user, tms, admin; skydriver: user, system")
    args = parser.parse_args(argv)
    try:
        print(token_from_env(args.service, args.subject, args.roles, os.environ, args.lifetime))
    except ConfigError as exc:
        print(f"ewms-token: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
