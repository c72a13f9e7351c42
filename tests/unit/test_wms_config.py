"""ewms_wms.config: every variable read, every mistake named, no secret in repr, no run without auth."""

from typing import Any

import pytest

from ewms_wms.config import Config, ConfigError

BASE = {
    "WMS_MONGODB_URL": "mongodb://127.0.0.1:27017",
    "WMS_BROKER_URL": "amqp://admin:s3cret-broker@rabbit:5672/",
    "WMS_AUTH_SECRET": "a" * 32,
}


def env(**changes: Any) -> dict[str, str]:
    out = dict(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_defaults_and_every_variable_read() -> None:
    config = Config.from_env(env())
    assert config.port == 8080 and config.per_workflow_broker_users and config.max_deliveries == 3
    config = Config.from_env(
        env(
            WMS_PORT="9000",
            WMS_HOST="0.0.0.0",
            WMS_PER_WORKFLOW_BROKER_USERS="off",
            WMS_MAX_DELIVERIES="5",
            WMS_DLQ_RETENTION_SECONDS="86400.5",
            WMS_LOG_FORMAT="TEXT",
            WMS_BROKER_PUBLIC_ADDRESS="alice:pw@rabbit.example.org:5671/ewms",
            WMS_RABBITMQ_MANAGEMENT_URL="https://rabbit.example.org:15671",
        )
    )
    assert (config.port, config.host, config.per_workflow_broker_users) == (9000, "0.0.0.0", False)
    assert config.max_deliveries == 5 and config.dlq_retention_seconds == 86400.5 and config.log_format == "text"
    assert config.public_address.host == "rabbit.example.org" and config.public_address.vhost == "ewms"
    assert config.rest_tools_auth() == {"secret": "a" * 32, "issuer": "ewms-wms", "algorithm": "HS256"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"WMS_MONGODB_URL": None}, "WMS_MONGODB_URL is required"),
        ({"WMS_BROKER_URL": "  "}, "WMS_BROKER_URL is required"),
        ({"WMS_MONGODB_URL": "postgres://x"}, "WMS_MONGODB_URL must be a mongodb/mongodb+srv URL"),
        ({"WMS_BROKER_URL": "http://x"}, "WMS_BROKER_URL: unsupported scheme"),
        ({"WMS_PORT": "eighty"}, "WMS_PORT: expected a positive int, got 'eighty'"),
        ({"WMS_PORT": "70000"}, "WMS_PORT: expected a port number"),
        ({"WMS_CLAIM_LEASE_SECONDS": "-1"}, "WMS_CLAIM_LEASE_SECONDS: expected a positive float"),
        ({"WMS_PER_WORKFLOW_BROKER_USERS": "maybe"}, "WMS_PER_WORKFLOW_BROKER_USERS: expected a boolean"),
        ({"WMS_LOG_LEVEL": "LOUD"}, "WMS_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR"),
        ({"WMS_MAX_DELIVERIES": "0"}, "WMS_MAX_DELIVERIES must be at least 1"),
        ({"WMS_AUTH_SECRET": None}, "never runs without auth"),
        ({"WMS_AUTH_SECRET": "short"}, "WMS_AUTH_SECRET must be at least 32 bytes"),
        ({"WMS_AUTH_OPENID_URL": "https://keycloak/realms/x"}, "only one of WMS_AUTH_SECRET and WMS_AUTH_OPENID_URL"),
        ({"WMS_RABBITMQ_MANAGEMENT_URL": "ftp://x"}, "WMS_RABBITMQ_MANAGEMENT_URL must be a http/https URL"),
    ],
)
def test_each_mistake_names_its_variable(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        Config.from_env(env(**changes))


def test_secrets_stay_out_of_repr_and_errors() -> None:
    config = Config.from_env(env(WMS_MONGODB_URL="mongodb://u:mongo-pw@db:27017"))
    text = repr(config)
    assert "s3cret-broker" not in text and "a" * 32 not in text and "mongo-pw" not in text
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(WMS_MONGODB_URL="http://u:mongo-pw@db"))
    assert "mongo-pw" not in str(caught.value) and "u:***@db" in str(caught.value)


def test_openid_mode_for_production() -> None:
    config = Config.from_env(
        env(WMS_AUTH_SECRET=None, WMS_AUTH_OPENID_URL="https://keycloak/realms/x", WMS_AUTH_AUDIENCE="ewms")
    )
    assert config.rest_tools_auth() == {"openid_url": "https://keycloak/realms/x", "audience": "ewms"}
