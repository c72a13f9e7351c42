"""Configuration rules every REST service and client shares, so each states them once and words them alike.

A service authenticates its callers with exactly one of a shared JWT secret (local mode) or an
OpenID provider (production) and never runs without either; a client shows a bearer token given
directly or read from a file (a mounted Secret).
"""

from pathlib import Path
from typing import Any

from ewms_config import ConfigError

MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its digest (RFC 7518 §3.2)


def check_server_auth(prefix: str, service: str, secret: str | None, openid_url: str | None) -> None:
    """`ConfigError` unless exactly one of `<prefix>_AUTH_SECRET` (long enough) and `_AUTH_OPENID_URL` is set."""
    if not secret and not openid_url:
        raise ConfigError(
            f"no REST authentication configured: set {prefix}_AUTH_SECRET (local mode, a shared JWT secret) or "
            f"{prefix}_AUTH_OPENID_URL (production); {service} never runs without auth"
        )
    if secret and openid_url:
        raise ConfigError(f"set only one of {prefix}_AUTH_SECRET and {prefix}_AUTH_OPENID_URL")
    if secret and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{prefix}_AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes long")


def rest_tools_auth(
    secret: str | None, issuer: str, algorithm: str, openid_url: str | None, audience: str | None
) -> dict[str, Any]:
    """The `auth` section of `rest_tools.server.RestHandlerSetup`'s config."""
    if secret:
        return {"secret": secret, "issuer": issuer, "algorithm": algorithm}
    auth: dict[str, Any] = {"openid_url": openid_url}
    if audience:
        auth["audience"] = audience
    return auth


def read_token_file(variable: str, path: str) -> str:
    """The token in the file `variable` names; `ConfigError` naming the variable if it cannot be read or is empty."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(variable, f"cannot read {path}: {exc}") from None
    if not token:
        raise ConfigError(variable, f"{path} is empty")
    return token
