"""SkyDriver's configuration: one frozen dataclass, read from `SKYDRIVER_*` environment variables.

Every mistake is reported with the variable's name and what it should look like, so an operator
fixes a deployment from the first error message. Secrets (the JWT secret, the WMS token, passwords
in URLs) are kept out of `repr`, so logging the config is safe.
"""

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ewms_config import ConfigError as ConfigError
from ewms_config import choice, from_env, is_url, parse_str, positive, setting, url
from ewms_config import mask_url as mask_url
from ewms_rest.settings import check_server_auth, read_token_file, rest_tools_auth

POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_CLUSTERS = {"local": 2}

_COUNT = positive(int, allow_zero=True)
_SECONDS = positive(float)


def _parse_port(variable: str, raw: str) -> int:
    value = _COUNT(variable, raw)
    if not 0 <= value <= 65535:
        raise ConfigError(variable, f"expected a port number 0-65535, got {raw!r}")
    return value


def parse_clusters(variable: str, raw: str) -> dict[str, int]:
    """`{"location": n_workers, ...}`: where a scan's pilots run when its request names no cluster."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(variable, f"not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not value:
        raise ConfigError(variable, 'expected a non-empty JSON object like {"local": 2}')
    for location, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(variable, f"n_workers of {location!r} must be a whole number >= 1")
    return dict(value)


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "skydriver")


def _default_namespace() -> str:
    """In a pod, the namespace it runs in (scanners go next to skydriver); elsewhere `default`."""
    try:
        return POD_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the skydriver service needs; `Config.from_env()` builds it from the environment."""

    mongodb_url: str = setting("SKYDRIVER_MONGODB_URL", parse_str, secret=True)
    wms_url: str = setting("SKYDRIVER_WMS_URL", url("http", "https"))
    mongodb_database: str = setting("SKYDRIVER_MONGODB_DATABASE", parse_str, "skydriver")
    # REST auth: exactly one of a local shared secret or an OpenID provider
    auth_secret: str | None = setting("SKYDRIVER_AUTH_SECRET", parse_str, None, secret=True)
    auth_openid_url: str | None = setting("SKYDRIVER_AUTH_OPENID_URL", url("http", "https"), None)
    auth_issuer: str = setting("SKYDRIVER_AUTH_ISSUER", parse_str, "skydriver")
    auth_algorithm: str = setting("SKYDRIVER_AUTH_ALGORITHM", choice("HS256", "HS384", "HS512"), "HS256")
    auth_audience: str | None = setting("SKYDRIVER_AUTH_AUDIENCE", parse_str, None)
    auth_role_claim: str = setting("SKYDRIVER_AUTH_ROLE_CLAIM", parse_str, "role")
    host: str = setting("SKYDRIVER_HOST", parse_str, "127.0.0.1")
    port: int = setting("SKYDRIVER_PORT", _parse_port, 8000)
    public_url: str | None = setting("SKYDRIVER_PUBLIC_URL", url("http", "https"), None)
    wms_token: str | None = setting("SKYDRIVER_WMS_TOKEN", parse_str, None, secret=True)
    wms_token_file: str | None = setting("SKYDRIVER_WMS_TOKEN_FILE", parse_str, None)
    wms_timeout: float = setting("SKYDRIVER_WMS_TIMEOUT", _SECONDS, 30.0)
    scanner_token: str | None = setting("SKYDRIVER_SCANNER_TOKEN", parse_str, None, secret=True)
    launcher: str = setting("SKYDRIVER_LAUNCHER", choice("local", "k8s"), "local")
    local_state_dir: str = setting("SKYDRIVER_LOCAL_STATE_DIR", parse_str, "")  # "" -> $XDG_STATE_HOME/skydriver
    k8s_namespace: str = setting("SKYDRIVER_K8S_NAMESPACE", parse_str, "")  # "" -> the pod's namespace
    k8s_scanner_image: str = setting("SKYDRIVER_K8S_SCANNER_IMAGE", parse_str, "ghcr.io/skydriver-ewms/scanner")
    k8s_job_ttl_seconds: int = setting("SKYDRIVER_K8S_JOB_TTL_SECONDS", _COUNT, 3600)
    reco_image: str = setting("SKYDRIVER_RECO_IMAGE", parse_str, "host")
    reco_runner: str = setting("SKYDRIVER_RECO_RUNNER", choice("command", "callable"), "command")
    default_clusters: Mapping[str, int] = setting("SKYDRIVER_DEFAULT_CLUSTERS", parse_clusters, DEFAULT_CLUSTERS)
    starter_interval: float = setting("SKYDRIVER_STARTER_INTERVAL", _SECONDS, 2.0)
    max_active_scans: int = setting("SKYDRIVER_MAX_ACTIVE_SCANS", positive(int), 10)
    watchdog_interval: float = setting("SKYDRIVER_WATCHDOG_INTERVAL", _SECONDS, 10.0)
    watchdog_timeout: float = setting("SKYDRIVER_WATCHDOG_TIMEOUT", _SECONDS, 120.0)
    no_pilots_timeout: float = setting("SKYDRIVER_NO_PILOTS_TIMEOUT", _SECONDS, 300.0)
    log_level: str = setting("SKYDRIVER_LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
    log_format: str = setting("SKYDRIVER_LOG_FORMAT", choice("json", "text"), "json")
    max_body_bytes: int = setting("SKYDRIVER_MAX_BODY_BYTES", positive(int), 64 * 1024 * 1024)

    def __post_init__(self) -> None:
        check_server_auth("SKYDRIVER", "skydriver", self.auth_secret, self.auth_openid_url)
        if not is_url(self.mongodb_url, ("mongodb", "mongodb+srv")):
            raise ConfigError(
                "SKYDRIVER_MONGODB_URL must be a mongodb/mongodb+srv URL with a host, "
                f"got {mask_url(self.mongodb_url)!r}"
            )
        if bool(self.wms_token) == bool(self.wms_token_file):
            raise ConfigError("set exactly one of SKYDRIVER_WMS_TOKEN and SKYDRIVER_WMS_TOKEN_FILE")
        if self.auth_openid_url and not self.scanner_token:
            raise ConfigError(
                "SKYDRIVER_SCANNER_TOKEN is required with SKYDRIVER_AUTH_OPENID_URL: skydriver cannot mint "
                "tokens the OpenID provider signs, so scanners need one given"
            )
        # frozen: fill the defaults that depend on where we run
        if not self.local_state_dir:
            object.__setattr__(self, "local_state_dir", _default_state_dir())
        if not self.k8s_namespace:
            object.__setattr__(self, "k8s_namespace", _default_namespace())

    def wms_bearer_token(self) -> str:
        """The token skydriver shows the WMS: given directly, or read from a file (a mounted Secret)."""
        if self.wms_token:
            return self.wms_token
        assert self.wms_token_file is not None  # __post_init__: one of the two is set
        return read_token_file("SKYDRIVER_WMS_TOKEN_FILE", self.wms_token_file)

    def callback_url(self, port: int) -> str:
        """Where scanner instances reach skydriver (`port`: the one actually bound, for port 0)."""
        return self.public_url or f"http://{self.host}:{port}"

    def rest_tools_auth(self) -> dict[str, Any]:
        """The `auth` section of `rest_tools.server.RestHandlerSetup`'s config."""
        return rest_tools_auth(
            self.auth_secret, self.auth_issuer, self.auth_algorithm, self.auth_openid_url, self.auth_audience
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """Read every `SKYDRIVER_*` variable; raises `ConfigError` naming the first bad one."""
        return from_env(cls, env, trim=True)  # a blank variable counts as unset
