"""The WMS's configuration: one frozen dataclass, read from `WMS_*` environment variables.

Every mistake is reported with the variable's name and what it should look like, so an
operator fixes a deployment from the first error message. Secrets (the JWT secret, passwords
in URLs) are kept out of `repr`, so logging the config is safe.
"""

import dataclasses
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import ewms_mq

T = TypeVar("T")

MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its digest (RFC 7518 §3.2)


class ConfigError(ValueError):
    """A `WMS_*` variable is missing or malformed; the message names it."""


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***` (for logs and errors)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the WMS needs; `Config.from_env()` builds it from the environment."""

    mongodb_url: str = dataclasses.field(repr=False)
    broker_url: str = dataclasses.field(repr=False)
    # REST auth: exactly one of a local shared secret or an OpenID provider
    auth_secret: str | None = dataclasses.field(default=None, repr=False)
    auth_openid_url: str | None = None
    auth_issuer: str = "ewms-wms"
    auth_algorithm: str = "HS256"
    auth_audience: str | None = None
    auth_role_claim: str = "role"
    mongodb_database: str = "ewms_wms"
    # what clients are told to connect to; credentials in it are the shared ones (no per-workflow users)
    broker_public_address: str | None = dataclasses.field(default=None, repr=False)
    rabbitmq_management_url: str | None = dataclasses.field(default=None, repr=False)
    per_workflow_broker_users: bool = True
    max_deliveries: int = 3
    host: str = "127.0.0.1"
    port: int = 8080
    claim_lease_seconds: float = 600.0
    submit_max_attempts: int = 3
    provision_poll_seconds: float = 5.0
    provision_backoff_initial_seconds: float = 2.0
    provision_backoff_max_seconds: float = 300.0
    provision_timeout_seconds: float = 30.0
    provision_inline_timeout_seconds: float = 10.0
    janitor_poll_seconds: float = 30.0
    dlq_retention_seconds: float = 7 * 24 * 3600.0
    query_page_size: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    log_level: str = "INFO"
    log_format: str = "json"

    def __post_init__(self) -> None:
        self._check_auth()
        check_url(self.mongodb_url, "WMS_MONGODB_URL", ("mongodb", "mongodb+srv"))
        for name in ("broker_url", "broker_public_address"):
            value = getattr(self, name)
            if value is not None:
                _parse_broker(value, f"WMS_{name.upper()}")
        if self.rabbitmq_management_url is not None:
            check_url(self.rabbitmq_management_url, "WMS_RABBITMQ_MANAGEMENT_URL", ("http", "https"))
        if self.auth_openid_url is not None:
            check_url(self.auth_openid_url, "WMS_AUTH_OPENID_URL", ("http", "https"))
        if self.max_deliveries < 1:
            raise ConfigError(f"WMS_MAX_DELIVERIES must be at least 1, got {self.max_deliveries}")
        if self.submit_max_attempts < 1:
            raise ConfigError(f"WMS_SUBMIT_MAX_ATTEMPTS must be at least 1, got {self.submit_max_attempts}")
        if self.query_page_size < 1:
            raise ConfigError(f"WMS_QUERY_PAGE_SIZE must be at least 1, got {self.query_page_size}")

    def _check_auth(self) -> None:
        if not self.auth_secret and not self.auth_openid_url:
            raise ConfigError(
                "no REST authentication configured: set WMS_AUTH_SECRET (local mode, a shared JWT secret) or "
                "WMS_AUTH_OPENID_URL (production); the WMS never runs without auth"
            )
        if self.auth_secret and self.auth_openid_url:
            raise ConfigError("set only one of WMS_AUTH_SECRET and WMS_AUTH_OPENID_URL")
        if self.auth_secret and len(self.auth_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"WMS_AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes long")

    @property
    def broker_address(self) -> ewms_mq.BrokerAddress:
        """The broker the WMS itself administers (declares queues, sets policies)."""
        return ewms_mq.parse_address(self.broker_url)

    @property
    def public_address(self) -> ewms_mq.BrokerAddress:
        """The broker as clients reach it; its credentials are the shared ones."""
        return ewms_mq.parse_address(self.broker_public_address or self.broker_url)

    def rest_tools_auth(self) -> dict[str, Any]:
        """The `auth` section of `rest_tools.server.RestHandlerSetup`'s config."""
        if self.auth_secret:
            return {"secret": self.auth_secret, "issuer": self.auth_issuer, "algorithm": self.auth_algorithm}
        auth: dict[str, Any] = {"openid_url": self.auth_openid_url}
        if self.auth_audience:
            auth["audience"] = self.auth_audience
        return auth

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """Read every `WMS_*` variable; raises `ConfigError` naming the first bad one."""
        reader = _EnvReader(os.environ if env is None else env)
        defaults = cls.__dataclass_fields__
        kwargs: dict[str, Any] = {
            "mongodb_url": reader.required("WMS_MONGODB_URL"),
            "broker_url": reader.required("WMS_BROKER_URL"),
        }
        for field_name, field in defaults.items():
            if field_name in kwargs:
                continue
            var = f"WMS_{field_name.upper()}"
            parser = _FIELD_PARSERS.get(field_name) or _TYPE_PARSERS[_type_key(field.type)]
            kwargs[field_name] = reader.typed(var, parser, field.default)
        return cls(**kwargs)


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def required(self, var: str) -> str:
        value = self.env.get(var, "").strip()
        if not value:
            raise ConfigError(f"{var} is required")
        return value

    def typed(self, var: str, parser: Callable[[str], Any], default: Any) -> Any:
        raw = self.env.get(var)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parser(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{var}: {exc}") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "y", "yes", "t", "true", "on"):
        return True
    if lowered in ("0", "n", "no", "f", "false", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false, yes/no, 1/0), got {raw!r}")


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected a positive {kind.__name__}, got {raw!r}") from None
        if value < 0:  # type: ignore[operator]
            raise ValueError(f"expected a positive {kind.__name__}, got {raw!r}")
        return value

    return parse


def _parse_port(raw: str) -> int:
    value = _positive(int)(raw)
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port number 0-65535, got {raw!r}")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        for option in allowed:
            if raw.lower() == option.lower():
                return option
        raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")

    return parse


def _type_key(annotation: Any) -> str:
    """'str', 'bool', 'int', 'float' for the dataclass field annotations used above."""
    return "str" if annotation == (str | None) else getattr(annotation, "__name__", str(annotation))


_TYPE_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "bool": _parse_bool,
    "int": _positive(int),
    "float": _positive(float),
}
_FIELD_PARSERS: dict[str, Callable[[str], Any]] = {
    "port": _parse_port,
    "log_format": _choice("json", "text"),
    "log_level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
    "auth_algorithm": _choice("HS256", "HS384", "HS512"),
}


def _parse_broker(value: str, var: str) -> None:
    try:
        ewms_mq.parse_address(value)
    except ewms_mq.InvalidAddress as exc:
        raise ConfigError(f"{var}: {exc}") from None


def check_url(value: str, var: str, schemes: tuple[str, ...]) -> None:
    """Raise `ConfigError` unless `value` is a URL with one of `schemes` and a host."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{var} must be a {'/'.join(schemes)} URL with a host, got {mask_url(value)!r}")
