"""The scanner instance's configuration: one frozen dataclass read from `SKYSCAN_*` variables.

skydriver's launcher sets them when it starts the scanner of a scan (a Kubernetes Job or a local
process). The token and the queue profiles are secrets: they stay out of the dataclass's repr,
so logging the configuration is safe.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from ewms_config import ConfigError, choice, from_env, parse_positive_seconds, parse_str, setting, url

TO_CLIENTS = "to-clients"  # scanner → pilots: pixel tasks
FROM_CLIENTS = "from-clients"  # pilots → scanner: pixel results
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclasses.dataclass(frozen=True)
class MQProfile:
    """One queue of the scan's workflow and how to reach it, as the WMS hands it out."""

    mqid: str  # the queue's name on the broker
    broker_address: str = dataclasses.field(repr=False)
    auth_token: str = dataclasses.field(default="", repr=False)
    broker_type: str = "rabbitmq"


def parse_mq_profiles(variable: str, raw: str) -> dict[str, MQProfile]:
    """`{"to-clients": {mqid, broker_type, broker_address, auth_token}, "from-clients": {...}}`."""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(variable, f"not valid JSON: {exc.msg}") from None  # never echo the value: it has tokens
    if not isinstance(doc, dict):
        raise ConfigError(variable, "expected a JSON object of queue alias: profile")
    return {alias: _profile(variable, alias, doc.get(alias)) for alias in (TO_CLIENTS, FROM_CLIENTS)}


def _profile(variable: str, alias: str, doc: object) -> MQProfile:
    if not isinstance(doc, Mapping):
        raise ConfigError(variable, f"no profile for queue alias {alias!r}")
    for key in ("mqid", "broker_address"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(variable, f"{alias}.{key} must be a non-empty string")
    return MQProfile(
        mqid=doc["mqid"],
        broker_address=doc["broker_address"],
        auth_token=str(doc.get("auth_token") or ""),
        broker_type=str(doc.get("broker_type") or "rabbitmq"),
    )


@dataclasses.dataclass(frozen=True)
class ScannerConfig:
    """Everything a scanner instance needs; `from_env` builds it from the environment."""

    scan_id: str = setting("SKYSCAN_SCAN_ID", parse_str)
    skydriver_url: str = setting("SKYSCAN_SKYDRIVER_URL", url("http", "https"))
    skydriver_token: str = setting("SKYSCAN_SKYDRIVER_TOKEN", parse_str, secret=True)
    mq_profiles: Mapping[str, MQProfile] = setting("SKYSCAN_MQ_PROFILES", parse_mq_profiles, secret=True)
    progress_interval: float = setting("SKYSCAN_PROGRESS_INTERVAL", parse_positive_seconds, 5.0)
    result_interval: float = setting("SKYSCAN_RESULT_INTERVAL", parse_positive_seconds, 30.0)
    # how long skydriver may be unreachable (a restart, a deploy) before the scanner gives up
    skydriver_retry_timeout: float = setting("SKYSCAN_SKYDRIVER_RETRY_TIMEOUT", parse_positive_seconds, 600.0)
    log_level: str = setting("SKYSCAN_LOG_LEVEL", choice(*LOG_LEVELS), "INFO")
    log_format: str = setting("SKYSCAN_LOG_FORMAT", choice("json", "text"), "json")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScannerConfig:
        """Raises `ConfigError` naming the first missing or malformed variable."""
        return from_env(cls, environ, trim=True)
