"""The TMS's configuration: one frozen dataclass, read from `TMS_*` environment variables.

A TMS runs unattended on an access point, so a bad setting must stop it at start-up with a
message naming the variable, not fail later inside a loop. Secrets (the WMS token, the
OAuth client secret) are kept out of `repr`, so logging the config is safe.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from ewms_config import ConfigError as ConfigError
from ewms_config import (
    choice,
    env_json,
    from_env,
    parse_bool,
    parse_positive_seconds,
    parse_str,
    positive,
    setting,
    url,
)
from ewms_config import env_value as env_value
from ewms_rest.settings import read_token_file

SCHEDULERS = ("htcondor", "local")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_CLAIMANT = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")  # what the WMS accepts as a claimant name
_LOCATION = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ewms-tms"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the TMS needs; `Config.from_env()` builds it from the environment."""

    wms_url: str = setting("TMS_WMS_URL", url("http", "https"))
    cluster_location: str = setting("TMS_CLUSTER_LOCATION", parse_str)
    # auth at the WMS: a bearer token (local mode), or OAuth client credentials (production)
    wms_token: str = setting("TMS_WMS_TOKEN", parse_str, "", secret=True)
    wms_token_file: str = setting("TMS_WMS_TOKEN_FILE", parse_str, "")
    oauth_token_url: str = setting("TMS_OAUTH_TOKEN_URL", parse_str, "")
    oauth_client_id: str = setting("TMS_OAUTH_CLIENT_ID", parse_str, "")
    oauth_client_secret: str = setting("TMS_OAUTH_CLIENT_SECRET", parse_str, "", secret=True)
    wms_timeout: float = setting("TMS_WMS_TIMEOUT", parse_positive_seconds, 30.0)
    claimant: str = setting("TMS_CLAIMANT", parse_str, "")
    scheduler: str = setting("TMS_SCHEDULER", choice(*SCHEDULERS), "htcondor")
    state_dir_setting: str = setting("TMS_STATE_DIR", parse_str, "")
    # htcondor backend
    pilot_image: str = setting("TMS_PILOT_IMAGE", parse_str, "")
    pilot_executable: str = setting("TMS_PILOT_EXECUTABLE", parse_str, "/usr/local/bin/ewms-pilot")
    schedd_name: str = setting("TMS_SCHEDD_NAME", parse_str, "")
    collector_address: str = setting("TMS_COLLECTOR_ADDRESS", parse_str, "")
    # local backend
    local_kill_grace: float = setting("TMS_LOCAL_KILL_GRACE", parse_positive_seconds, 60.0)
    local_stop_pilots_on_exit: bool = setting("TMS_LOCAL_STOP_PILOTS_ON_EXIT", parse_bool, False)
    # what the pilots get
    host_command_image: str = setting("TMS_HOST_COMMAND_IMAGE", parse_str, "host")
    pilot_env: Mapping[str, str] = setting("TMS_PILOT_ENV_JSON", env_json(booleans=True), {})
    # the loops
    starter_interval: float = setting("TMS_STARTER_INTERVAL", parse_positive_seconds, 10.0)
    watcher_interval: float = setting("TMS_WATCHER_INTERVAL", parse_positive_seconds, 30.0)
    stopper_interval: float = setting("TMS_STOPPER_INTERVAL", parse_positive_seconds, 10.0)
    max_backoff: float = setting("TMS_MAX_BACKOFF", parse_positive_seconds, 300.0)
    status_batch_size: int = setting("TMS_STATUS_BATCH_SIZE", positive(int), 100)
    log_level: str = setting("TMS_LOG_LEVEL", choice(*LOG_LEVELS), "INFO")

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
            return read_token_file("TMS_WMS_TOKEN_FILE", self.wms_token_file)
        return self.wms_token

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read every `TMS_*` variable; raises `ConfigError` naming the first bad one."""
        return from_env(cls, env, trim=True)  # a blank variable counts as unset


def default_claimant(location: str) -> str:
    """`<location>@<host>`: stable across restarts, so a restarted TMS gets its own claims back."""
    host = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname()) or "host"
    return f"{location}@{host}"[:128]
