"""skydriver.config: every variable read, every mistake named, no secret in repr, no run without auth."""

import re
from pathlib import Path
from typing import Any

import pytest

from skydriver.config import Config, ConfigError

BASE = {
    "SKYDRIVER_MONGODB_URL": "mongodb://user:db-pass@127.0.0.1:27017",
    "SKYDRIVER_WMS_URL": "http://wms:8080/",
    "SKYDRIVER_WMS_TOKEN": "wms-token-value",
    "SKYDRIVER_AUTH_SECRET": "a" * 32,
}


def env(**changes: Any) -> dict[str, str]:
    out = dict(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_defaults() -> None:
    config = Config.from_env(env(XDG_STATE_HOME="/ignored"))
    assert (config.host, config.port, config.mongodb_database, config.launcher) == (
        "127.0.0.1",
        8000,
        "skydriver",
        "local",
    )
    assert (
        config.wms_url == "http://wms:8080"
        and config.wms_timeout == 30.0
        and config.wms_bearer_token() == "wms-token-value"
    )
    assert config.default_clusters == {"local": 2} and config.reco_image == "host" and config.reco_runner == "command"
    assert (config.starter_interval, config.max_active_scans) == (2.0, 10)
    assert (config.watchdog_interval, config.watchdog_timeout) == (10.0, 120.0)
    assert config.max_body_bytes == 64 * 1024**2 and config.log_format == "json"
    assert config.local_state_dir.endswith("skydriver") and config.k8s_namespace == "default"
    assert config.callback_url(8123) == "http://127.0.0.1:8123"
    assert config.rest_tools_auth() == {"secret": "a" * 32, "issuer": "skydriver", "algorithm": "HS256"}


def test_every_variable_is_read() -> None:
    config = Config.from_env(
        env(
            SKYDRIVER_MONGODB_DATABASE="sd",
            SKYDRIVER_HOST="0.0.0.0",
            SKYDRIVER_PORT="9000",
            SKYDRIVER_PUBLIC_URL="https://skydriver.example.org",
            SKYDRIVER_WMS_TIMEOUT="5",
            SKYDRIVER_LAUNCHER="K8S",
            SKYDRIVER_LOCAL_STATE_DIR="/var/lib/sd",
            SKYDRIVER_K8S_NAMESPACE="scans",
            SKYDRIVER_K8S_SCANNER_IMAGE="registry/scanner",
            SKYDRIVER_K8S_JOB_TTL_SECONDS="60",
            SKYDRIVER_RECO_IMAGE="registry/reco",
            SKYDRIVER_RECO_RUNNER="callable",
            SKYDRIVER_DEFAULT_CLUSTERS='{"sub-2": 100, "sub-3": 5}',
            SKYDRIVER_STARTER_INTERVAL="0.5",
            SKYDRIVER_MAX_ACTIVE_SCANS="3",
            SKYDRIVER_WATCHDOG_INTERVAL="1",
            SKYDRIVER_WATCHDOG_TIMEOUT="30",
            SKYDRIVER_LOG_LEVEL="debug",
            SKYDRIVER_LOG_FORMAT="text",
            SKYDRIVER_MAX_BODY_BYTES="1000",
            SKYDRIVER_AUTH_ROLE_CLAIM="skydriver_role",
        )
    )
    assert (config.mongodb_database, config.host, config.port, config.wms_timeout) == ("sd", "0.0.0.0", 9000, 5.0)
    assert config.callback_url(9000) == "https://skydriver.example.org" and config.launcher == "k8s"
    assert (config.local_state_dir, config.k8s_namespace, config.k8s_scanner_image) == (
        "/var/lib/sd",
        "scans",
        "registry/scanner",
    )
    assert (config.k8s_job_ttl_seconds, config.reco_image, config.reco_runner) == (60, "registry/reco", "callable")
    assert config.default_clusters == {"sub-2": 100, "sub-3": 5}
    assert (config.starter_interval, config.max_active_scans, config.watchdog_interval) == (0.5, 3, 1.0)
    assert (config.watchdog_timeout, config.log_level, config.log_format) == (30.0, "DEBUG", "text")
    assert config.max_body_bytes == 1000 and config.auth_role_claim == "skydriver_role"


def test_openid_mode_and_a_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "wms-token"
    token_file.write_text("from-a-file\n")
    config = Config.from_env(
        env(
            SKYDRIVER_AUTH_SECRET=None,
            SKYDRIVER_AUTH_OPENID_URL="https://keycloak.example.org/auth/realms/IceCube",
            SKYDRIVER_AUTH_AUDIENCE="skydriver",
            SKYDRIVER_SCANNER_TOKEN="scanner-token",
            SKYDRIVER_WMS_TOKEN=None,
            SKYDRIVER_WMS_TOKEN_FILE=str(token_file),
        )
    )
    assert config.rest_tools_auth() == {
        "openid_url": "https://keycloak.example.org/auth/realms/IceCube", "audience": "skydriver",
    }  # fmt: skip
    assert config.wms_bearer_token() == "from-a-file"
    token_file.write_text("  ")
    with pytest.raises(ConfigError, match=r"SKYDRIVER_WMS_TOKEN_FILE: .* is empty"):
        config.wms_bearer_token()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SKYDRIVER_MONGODB_URL": None}, "SKYDRIVER_MONGODB_URL is required"),
        ({"SKYDRIVER_WMS_URL": " "}, "SKYDRIVER_WMS_URL is required"),
        ({"SKYDRIVER_MONGODB_URL": "postgres://x"}, "SKYDRIVER_MONGODB_URL must be a mongodb/mongodb+srv URL"),
        ({"SKYDRIVER_WMS_URL": "wms:8080"}, "SKYDRIVER_WMS_URL: expected a http/https URL"),
        ({"SKYDRIVER_AUTH_SECRET": None}, "never runs without auth"),
        ({"SKYDRIVER_AUTH_OPENID_URL": "https://kc"}, "set only one of SKYDRIVER_AUTH_SECRET"),
        ({"SKYDRIVER_AUTH_SECRET": "short"}, "at least 32 bytes"),
        (
            {"SKYDRIVER_AUTH_SECRET": None, "SKYDRIVER_AUTH_OPENID_URL": "https://kc"},
            "SKYDRIVER_SCANNER_TOKEN is required",
        ),
        ({"SKYDRIVER_WMS_TOKEN": None}, "exactly one of SKYDRIVER_WMS_TOKEN and SKYDRIVER_WMS_TOKEN_FILE"),
        ({"SKYDRIVER_WMS_TOKEN_FILE": "/x"}, "exactly one of SKYDRIVER_WMS_TOKEN and SKYDRIVER_WMS_TOKEN_FILE"),
        ({"SKYDRIVER_PORT": "70000"}, "SKYDRIVER_PORT: expected a port number"),
        ({"SKYDRIVER_LAUNCHER": "slurm"}, "SKYDRIVER_LAUNCHER: expected one of local, k8s"),
        ({"SKYDRIVER_RECO_RUNNER": "thread"}, "SKYDRIVER_RECO_RUNNER: expected one of command, callable"),
        ({"SKYDRIVER_DEFAULT_CLUSTERS": "{sub-2: 1}"}, "SKYDRIVER_DEFAULT_CLUSTERS: not valid JSON"),
        ({"SKYDRIVER_DEFAULT_CLUSTERS": "{}"}, "SKYDRIVER_DEFAULT_CLUSTERS: expected a non-empty JSON object"),
        ({"SKYDRIVER_DEFAULT_CLUSTERS": '{"a": 0}'}, "n_workers of 'a' must be a whole number >= 1"),
        ({"SKYDRIVER_WATCHDOG_TIMEOUT": "0"}, "SKYDRIVER_WATCHDOG_TIMEOUT: expected a positive float"),
        ({"SKYDRIVER_MAX_ACTIVE_SCANS": "0"}, "SKYDRIVER_MAX_ACTIVE_SCANS: expected a positive int"),
    ],
)
def test_mistakes_name_the_variable(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_env(env(**changes))


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Config.from_env(env(SKYDRIVER_SCANNER_TOKEN="scanner-secret")))
    for secret in ("db-pass", "wms-token-value", "a" * 32, "scanner-secret"):
        assert secret not in text
