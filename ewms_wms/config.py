"""The WMS's configuration: one frozen dataclass, read from `WMS_*` environment variables.

Every mistake is reported with the variable's name and what it should look like, so an
operator fixes a deployment from the first error message. Secrets (the JWT secret, passwords
in URLs) are kept out of `repr`, so logging the config is safe.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import ewms_mq
from ewms_config import ConfigError as ConfigError
from ewms_config import choice, from_env, is_url, parse_bool, parse_str, positive, setting
from ewms_config import mask_url as mask_url
from ewms_rest.settings import check_server_auth, rest_tools_auth

_COUNT = positive(int, allow_zero=True)  # zero passes here; the rules in __post_init__ say more
_SECONDS = positive(float, allow_zero=True)


def _parse_port(variable: str, raw: str) -> int:
    value = _COUNT(variable, raw)
    if not 0 <= value <= 65535:
        raise ConfigError(variable, f"expected a port number 0-65535, got {raw!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the WMS needs; `Config.from_env()` builds it from the environment."""

    mongodb_url: str = setting("WMS_MONGODB_URL", parse_str, secret=True)
    broker_url: str = setting("WMS_BROKER_URL", parse_str, secret=True)
    # REST auth: exactly one of a local shared secret or an OpenID provider
    auth_secret: str | None = setting("WMS_AUTH_SECRET", parse_str, None, secret=True)
    auth_openid_url: str | None = setting("WMS_AUTH_OPENID_URL", parse_str, None)
    auth_issuer: str = setting("WMS_AUTH_ISSUER", parse_str, "ewms-wms")
    auth_algorithm: str = setting("WMS_AUTH_ALGORITHM", choice("HS256", "HS384", "HS512"), "HS256")
    auth_audience: str | None = setting("WMS_AUTH_AUDIENCE", parse_str, None)
    auth_role_claim: str = setting("WMS_AUTH_ROLE_CLAIM", parse_str, "role")
    mongodb_database: str = setting("WMS_MONGODB_DATABASE", parse_str, "ewms_wms")
    # what clients are told to connect to; credentials in it are the shared ones (no per-workflow users)
    broker_public_address: str | None = setting("WMS_BROKER_PUBLIC_ADDRESS", parse_str, None, secret=True)
    rabbitmq_management_url: str | None = setting("WMS_RABBITMQ_MANAGEMENT_URL", parse_str, None, secret=True)
    per_workflow_broker_users: bool = setting("WMS_PER_WORKFLOW_BROKER_USERS", parse_bool, True)
    max_deliveries: int = setting("WMS_MAX_DELIVERIES", _COUNT, 3)
    host: str = setting("WMS_HOST", parse_str, "127.0.0.1")
    port: int = setting("WMS_PORT", _parse_port, 8080)
    claim_lease_seconds: float = setting("WMS_CLAIM_LEASE_SECONDS", _SECONDS, 600.0)
    submit_max_attempts: int = setting("WMS_SUBMIT_MAX_ATTEMPTS", _COUNT, 3)
    provision_poll_seconds: float = setting("WMS_PROVISION_POLL_SECONDS", _SECONDS, 5.0)
    provision_backoff_initial_seconds: float = setting("WMS_PROVISION_BACKOFF_INITIAL_SECONDS", _SECONDS, 2.0)
    provision_backoff_max_seconds: float = setting("WMS_PROVISION_BACKOFF_MAX_SECONDS", _SECONDS, 300.0)
    provision_timeout_seconds: float = setting("WMS_PROVISION_TIMEOUT_SECONDS", _SECONDS, 30.0)
    provision_inline_timeout_seconds: float = setting("WMS_PROVISION_INLINE_TIMEOUT_SECONDS", _SECONDS, 10.0)
    janitor_poll_seconds: float = setting("WMS_JANITOR_POLL_SECONDS", _SECONDS, 30.0)
    dlq_retention_seconds: float = setting("WMS_DLQ_RETENTION_SECONDS", _SECONDS, 7 * 24 * 3600.0)
    query_page_size: int = setting("WMS_QUERY_PAGE_SIZE", _COUNT, 1000)
    max_body_bytes: int = setting("WMS_MAX_BODY_BYTES", _COUNT, 4 * 1024 * 1024)
    log_level: str = setting("WMS_LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
    log_format: str = setting("WMS_LOG_FORMAT", choice("json", "text"), "json")

    def __post_init__(self) -> None:
        check_server_auth("WMS", "the WMS", self.auth_secret, self.auth_openid_url)
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
        return rest_tools_auth(
            self.auth_secret, self.auth_issuer, self.auth_algorithm, self.auth_openid_url, self.auth_audience
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """Read every `WMS_*` variable; raises `ConfigError` naming the first bad one."""
        return from_env(cls, env, trim=True)  # a blank variable counts as unset


def _parse_broker(value: str, var: str) -> None:
    try:
        ewms_mq.parse_address(value)
    except ewms_mq.InvalidAddress as exc:
        raise ConfigError(f"{var}: {exc}") from None


def check_url(value: str, var: str, schemes: tuple[str, ...]) -> None:
    """Raise `ConfigError` unless `value` is a URL with one of `schemes` and a host."""
    if not is_url(value, schemes):
        raise ConfigError(f"{var} must be a {'/'.join(schemes)} URL with a host, got {mask_url(value)!r}")
