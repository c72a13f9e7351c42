"""The TMS's configuration: one frozen dataclass, read from `TMS_*` environment variables.

A TMS runs unattended on an access point, so a bad setting must stop it at start-up with a
message naming the variable, not fail later inside a loop. Secrets (the WMS token, the
OAuth client secret) are kept out of `repr`, so logging the config is safe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SCHEDULERS = ("htcondor", "local")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_CLAIMANT = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")  # what the WMS accepts as a claimant name
_LOCATION = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


class ConfigError(ValueError):
    """A `TMS_*` variable is missing or malformed; the message names it."""


def _field(env: str, parse: Callable[[str, str], Any], default: Any = dataclasses.MISSING, secret: bool = False) -> Any:
    metadata = {"env": env, "parse": parse}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


# -- parsers: (variable, raw) -> value, raising ConfigError that names the variable -------------


def _str(_var: str, raw: str) -> str:
    return raw.strip()


def _seconds(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{var}: must be > 0 seconds, got {raw!r}")
    return value


def _count(var: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{var}: must be at least 1, got {value}")
    return value


def _bool(var: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("1", "y", "yes", "t", "true", "on"):
        return True
    if word in ("0", "n", "no", "f", "false", "off"):
        return False
    raise ConfigError(f"{var}: expected a boolean (true/false, yes/no, 1/0), got {raw!r}")


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(var: str, raw: str) -> str:
        for option in allowed:
            if raw.strip().lower() == option.lower():
                return option
        raise ConfigError(f"{var}: expected one of {', '.join(allowed)}, got {raw!r}")

    return parse


def _url(var: str, raw: str) -> str:
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{var}: expected an http(s) URL with a host, got {raw!r}")
    return raw.strip().rstrip("/")


def _env_json(var: str, raw: str) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{var}: not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
        raise ConfigError(f"{var}: expected a JSON object of NAME: value")
    return {k: env_value(v) for k, v in value.items()}


def env_value(value: Any) -> str:
    """An environment value from JSON: booleans as upstream's pilot reads them, the rest as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ewms-tms"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the TMS needs; `Config.from_env()` builds it from the environment."""

    wms_url: str = _field("TMS_WMS_URL", _url)
    cluster_location: str = _field("TMS_CLUSTER_LOCATION", _str)
    # auth at the WMS: a bearer token (local mode), or OAuth client credentials (production)
    wms_token: str = _field("TMS_WMS_TOKEN", _str, "", secret=True)
    wms_token_file: str = _field("TMS_WMS_TOKEN_FILE", _str, "")
    oauth_token_url: str = _field("TMS_OAUTH_TOKEN_URL", _str, "")
    oauth_client_id: str = _field("TMS_OAUTH_CLIENT_ID", _str, "")
    oauth_client_secret: str = _field("TMS_OAUTH_CLIENT_SECRET", _str, "", secret=True)
    wms_timeout: float = _field("TMS_WMS_TIMEOUT", _seconds, 30.0)
    claimant: str = _field("TMS_CLAIMANT", _str, "")
    scheduler: str = _field("TMS_SCHEDULER", _choice(*SCHEDULERS), "htcondor")
    state_dir_setting: str = _field("TMS_STATE_DIR", _str, "")
    # htcondor backend
    pilot_image: str = _field("TMS_PILOT_IMAGE", _str, "")
    pilot_executable: str = _field("TMS_PILOT_EXECUTABLE", _str, "/usr/local/bin/ewms-pilot")
    schedd_name: str = _field("TMS_SCHEDD_NAME", _str, "")
    collector_address: str = _field("TMS_COLLECTOR_ADDRESS", _str, "")
    # local backend
    local_kill_grace: float = _field("TMS_LOCAL_KILL_GRACE", _seconds, 60.0)
    local_stop_pilots_on_exit: bool = _field("TMS_LOCAL_STOP_PILOTS_ON_EXIT", _bool, False)
    # what the pilots get
    host_command_image: str = _field("TMS_HOST_COMMAND_IMAGE", _str, "host")
    pilot_env: Mapping[str, str] = _field("TMS_PILOT_ENV_JSON", _env_json, {})
    # the loops
    starter_interval: float = _field("TMS_STARTER_INTERVAL", _seconds, 10.0)
    watcher_interval: float = _field("TMS_WATCHER_INTERVAL", _seconds, 30.0)
    stopper_interval: float = _field("TMS_STOPPER_INTERVAL", _seconds, 10.0)
    max_backoff: float = _field("TMS_MAX_BACKOFF", _seconds, 300.0)
    status_batch_size: int = _field("TMS_STATUS_BATCH_SIZE", _count, 100)
    log_level: str = _field("TMS_LOG_LEVEL", _choice(*LOG_LEVELS), "INFO")

    def __post_init__(self) -> None:
        if not _LOCATION.match(self.cluster_location):
            raise ConfigError(
                f"TMS_CLUSTER_LOCATION: expected letters, digits and _.:- , got {self.cluster_location!r}"
            )
        if not self.claimant:
            object.__setattr__(self, "claimant", default_claimant(self.cluster_location))
        if not _CLAIMANT.match(self.claimant):
            raise ConfigError(f"TMS_CLAIMANT: expected 1-128 of letters, digits and _.:@- , got {self.claimant!r}")
        self._check_auth()
        if self.scheduler == "htcondor" and not self.pilot_image:
            raise ConfigError("TMS_PILOT_IMAGE is required with TMS_SCHEDULER=htcondor (the pilot's container image)")

    def _check_auth(self) -> None:
        oauth = (self.oauth_token_url, self.oauth_client_id, self.oauth_client_secret)
        ways = [bool(self.wms_token), bool(self.wms_token_file), any(oauth)]
        if sum(ways) != 1:
            raise ConfigError(
                "set exactly one way to authenticate at the WMS: TMS_WMS_TOKEN, TMS_WMS_TOKEN_FILE, or "
                "TMS_OAUTH_TOKEN_URL + TMS_OAUTH_CLIENT_ID + TMS_OAUTH_CLIENT_SECRET"
            )
        if any(oauth) and not all(oauth):
            raise ConfigError("TMS_OAUTH_TOKEN_URL, TMS_OAUTH_CLIENT_ID and TMS_OAUTH_CLIENT_SECRET go together")

    @property
    def state_dir(self) -> Path:
        """Where the TMS keeps its journal and its backend's files (per location by default)."""
        if self.state_dir_setting:
            return Path(self.state_dir_setting).expanduser()
        return _default_state_dir() / self.cluster_location

    def token(self) -> str:
        """The static bearer token (from the variable or the file), '' when OAuth is used."""
        if self.wms_token_file:
            try:
                return Path(self.wms_token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"TMS_WMS_TOKEN_FILE: cannot read {self.wms_token_file}: {exc}") from None
        return self.wms_token

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read every `TMS_*` variable; raises `ConfigError` naming the first bad one."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            var = field.metadata["env"]
            raw = source.get(var, "")
            if raw.strip():
                values[field.name] = field.metadata["parse"](var, raw)
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{var} is required")
        return cls(**values)


def default_claimant(location: str) -> str:
    """`<location>@<host>`: stable across restarts, so a restarted TMS gets its own claims back."""
    host = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname()) or "host"
    return f"{location}@{host}"[:128]
