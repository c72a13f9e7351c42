"""The pilot's configuration: one frozen dataclass read from `EWMS_PILOT_*` variables.

The TMS configures a pilot only through its job environment, and tasks written for the
upstream EWMS pilot (`ewms-pilot` v1.x) must run unchanged, so every upstream variable is
read here with upstream's name, meaning and default. Variables of our own come last.

A bad value is reported as a `ConfigError` that names the variable, so a user reading a
held job's stderr knows which line of the submit description to fix.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
from collections.abc import Mapping

from ewms_config import ConfigError as ConfigError
from ewms_config import (
    choice,
    parse_bool,
    parse_env_json,
    parse_int,
    parse_optional_seconds,
    parse_seconds,
    parse_str,
    read_env,
    setting,
)

ENV_PREFIX = "EWMS_PILOT_"
HTCHIRP_DESTS = ("JOB_EVENT_LOG", "JOB_ATTR")
CONTAINER_PLATFORMS = ("", "apptainer", "docker")
BROKER_TYPES = ("", "rabbitmq")
LEGACY_TASK_TIMEOUT = "EWMS_PILOT_SUBPROC_TIMEOUT"

LOGGER = logging.getLogger(__name__)


# -- the pilot's own parsers: (variable name, raw string) -> typed value -----------------


def parse_words(_variable: str, raw: str) -> tuple[str, ...]:
    """Split a whitespace-separated list (upstream's collection format)."""
    return tuple(raw.split())


def parse_comma_list(_variable: str, raw: str) -> tuple[str, ...]:
    """Split a comma-separated list, skipping blanks (upstream's EXTERNAL_DIRECTORIES)."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_log_level(variable: str, raw: str) -> str:
    """Accept a `logging` level name; a typo would otherwise silence the logs we need."""
    level = raw.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(variable, f"unknown log level {raw!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level


# -- the configuration ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PilotConfig:
    """Everything a pilot reads from its environment, typed and validated."""

    # task
    task_image: str = setting("EWMS_PILOT_TASK_IMAGE", parse_str, "")
    task_args: str = setting("EWMS_PILOT_TASK_ARGS", parse_str, "")
    task_env: Mapping[str, str] = setting("EWMS_PILOT_TASK_ENV_JSON", parse_env_json, {}, secret=True)
    # init
    init_image: str = setting("EWMS_PILOT_INIT_IMAGE", parse_str, "")
    init_args: str = setting("EWMS_PILOT_INIT_ARGS", parse_str, "")
    init_env: Mapping[str, str] = setting("EWMS_PILOT_INIT_ENV_JSON", parse_env_json, {}, secret=True)
    # incoming queue
    queue_incoming: str = setting("EWMS_PILOT_QUEUE_INCOMING", parse_str, "")
    queue_incoming_auth_token: str = setting("EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN", parse_str, "", secret=True)
    queue_incoming_broker_type: str = setting("EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE", choice(*BROKER_TYPES), "")
    queue_incoming_broker_address: str = setting("EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS", parse_str, "", secret=True)
    # outgoing queue
    queue_outgoing: str = setting("EWMS_PILOT_QUEUE_OUTGOING", parse_str, "")
    queue_outgoing_auth_token: str = setting("EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN", parse_str, "", secret=True)
    queue_outgoing_broker_type: str = setting("EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE", choice(*BROKER_TYPES), "")
    queue_outgoing_broker_address: str = setting("EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS", parse_str, "", secret=True)
    # files
    data_dir_parent_path_on_host: str = setting("EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST", parse_str, "")
    infile_ext: str = setting("EWMS_PILOT_INFILE_EXT", parse_str, ".in")
    outfile_ext: str = setting("EWMS_PILOT_OUTFILE_EXT", parse_str, ".out")
    external_directories: tuple[str, ...] = setting("EWMS_PILOT_EXTERNAL_DIRECTORIES", parse_comma_list, ())
    # incoming queue settings
    prefetch: int = setting("EWMS_PILOT_PREFETCH", parse_int, 1)
    timeout_queue_wait_for_first_message: float | None = setting(
        "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE", parse_optional_seconds, None
    )
    timeout_queue_incoming: float = setting("EWMS_PILOT_TIMEOUT_QUEUE_INCOMING", parse_seconds, 1.0)
    # logging
    cl_log: str = setting("EWMS_PILOT_CL_LOG", parse_log_level, "INFO")
    cl_log_third_party: str = setting("EWMS_PILOT_CL_LOG_THIRD_PARTY", parse_log_level, "WARNING")
    # chirp
    htchirp: bool = setting("EWMS_PILOT_HTCHIRP", parse_bool, False)
    htchirp_dest: str = setting("EWMS_PILOT_HTCHIRP_DEST", choice(*HTCHIRP_DESTS), "JOB_ATTR")
    htchirp_ratelimit_interval: float = setting("EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL", parse_seconds, 60.0)
    # timeouts
    init_timeout: float | None = setting("EWMS_PILOT_INIT_TIMEOUT", parse_optional_seconds, None)
    task_timeout: float | None = setting("EWMS_PILOT_TASK_TIMEOUT", parse_optional_seconds, None)
    # task handling
    stop_listening_on_task_error: bool = setting("EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR", parse_bool, True)
    okay_errors: tuple[str, ...] = setting("EWMS_PILOT_OKAY_ERRORS", parse_words, ())
    max_concurrent_tasks: int = setting("EWMS_PILOT_MAX_CONCURRENT_TASKS", parse_int, 1)
    # misc
    keep_all_task_files: bool = setting("EWMS_PILOT_KEEP_ALL_TASK_FILES", parse_bool, False)
    dump_task_output: bool = setting("EWMS_PILOT_DUMP_TASK_OUTPUT", parse_bool, False)
    quarantine_time: float = setting("EWMS_PILOT_QUARANTINE_TIME", parse_seconds, 0.0)
    container_debug: bool = setting("EWMS_PILOT_CONTAINER_DEBUG", parse_bool, False)
    # upstream's "non-user" settings
    container_platform: str = setting("_EWMS_PILOT_CONTAINER_PLATFORM", choice(*CONTAINER_PLATFORMS), "")
    apptainer_build_workdir: str = setting("_EWMS_PILOT_APPTAINER_BUILD_WORKDIR", parse_str, "/var/tmp")
    apptainer_image_directory_must_be_present: bool = setting(
        "_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT", parse_bool, True
    )
    docker_shm_size: str = setting("_EWMS_PILOT_DOCKER_SHM_SIZE", parse_str, "")
    ci: bool = setting("CI", parse_bool, False)
    # ours: upstream has no such variable (`ours=True`, for the docs and the compat table)
    task_callable: str = setting("EWMS_PILOT_TASK_CALLABLE", parse_str, "", ours=True)
    max_runtime: float | None = setting("EWMS_PILOT_MAX_RUNTIME", parse_optional_seconds, None, ours=True)
    summary_path: str = setting("EWMS_PILOT_SUMMARY_PATH", parse_str, "", ours=True)
    max_consecutive_failures: int = setting("EWMS_PILOT_MAX_CONSECUTIVE_FAILURES", parse_int, 5, ours=True)
    drain_timeout: float = setting("EWMS_PILOT_DRAIN_TIMEOUT", parse_seconds, 30.0, ours=True)
    task_kill_grace: float = setting("EWMS_PILOT_TASK_KILL_GRACE", parse_seconds, 5.0, ours=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PilotConfig:
        """Read, parse and validate; raises `ConfigError` naming the first bad variable."""
        env = os.environ if environ is None else environ
        values = read_env(cls, env, trim=False)  # '' is a value here: "no limit", or an error
        if "task_timeout" not in values and env.get(LEGACY_TASK_TIMEOUT, "").strip():
            LOGGER.warning("using %s; EWMS_PILOT_TASK_TIMEOUT is preferred", LEGACY_TASK_TIMEOUT)
            values["task_timeout"] = parse_optional_seconds(LEGACY_TASK_TIMEOUT, env[LEGACY_TASK_TIMEOUT])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Check the rules that involve more than one variable, or a range."""
        self._validate_queues()
        self._validate_task()
        self._validate_numbers()
        if self.quarantine_time and not self.stop_listening_on_task_error:
            # upstream's rule: quarantine exists to keep a broken node from eating events
            raise ConfigError(
                "EWMS_PILOT_QUARANTINE_TIME",
                "cannot be set while EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR is false",
            )

    def _validate_queues(self) -> None:
        for direction in ("incoming", "outgoing"):
            if not getattr(self, f"queue_{direction}").strip():
                raise ConfigError(f"EWMS_PILOT_QUEUE_{direction.upper()}", "missing: name of the queue")
            if not getattr(self, f"queue_{direction}_broker_address").strip():
                raise ConfigError(
                    f"EWMS_PILOT_QUEUE_{direction.upper()}_BROKER_ADDRESS",
                    "missing: broker address ([USER[:PASS]@]HOST[:PORT][/VHOST] or amqp:// URL)",
                )

    def _validate_task(self) -> None:
        if self.task_callable:
            if self.task_image or self.task_args:
                raise ConfigError(
                    "EWMS_PILOT_TASK_CALLABLE",
                    "cannot be combined with EWMS_PILOT_TASK_IMAGE or EWMS_PILOT_TASK_ARGS",
                )
            module, sep, func = self.task_callable.partition(":")
            if not sep or not module.strip() or not func.strip():
                raise ConfigError("EWMS_PILOT_TASK_CALLABLE", f"expected 'module:function', got {self.task_callable!r}")
        elif not self.task_image and not _split("EWMS_PILOT_TASK_ARGS", self.task_args):
            raise ConfigError(
                "EWMS_PILOT_TASK_ARGS",
                "no task given: set EWMS_PILOT_TASK_IMAGE (container), EWMS_PILOT_TASK_ARGS (host command) "
                "or EWMS_PILOT_TASK_CALLABLE (module:function)",
            )
        _split("EWMS_PILOT_TASK_ARGS", self.task_args)
        _split("EWMS_PILOT_INIT_ARGS", self.init_args)

    def _validate_numbers(self) -> None:
        checks = (
            ("EWMS_PILOT_PREFETCH", self.prefetch, 1),
            ("EWMS_PILOT_MAX_CONCURRENT_TASKS", self.max_concurrent_tasks, 1),
            ("EWMS_PILOT_MAX_CONSECUTIVE_FAILURES", self.max_consecutive_failures, 0),
        )
        for name, value, minimum in checks:
            if value < minimum:
                raise ConfigError(name, f"must be >= {minimum}, got {value}")
        if self.timeout_queue_incoming <= 0:
            raise ConfigError("EWMS_PILOT_TIMEOUT_QUEUE_INCOMING", "must be > 0 seconds")

    # -- derived values --------------------------------------------------------------

    @property
    def task_kind(self) -> str:
        """Which runner handles events: 'callable', 'container' or 'command'."""
        if self.task_callable:
            return "callable"
        return "container" if self.task_image else "command"

    @property
    def first_message_timeout(self) -> float:
        """Upstream: the wait for the first message defaults to the idle timeout."""
        if self.timeout_queue_wait_for_first_message is None:
            return self.timeout_queue_incoming
        return self.timeout_queue_wait_for_first_message

    @property
    def effective_prefetch(self) -> int:
        """A prefetch below the concurrency would leave task slots idle, so raise it."""
        return max(self.prefetch, self.max_concurrent_tasks)

    @property
    def has_init(self) -> bool:
        """An init step runs if an init image or init command is given."""
        return bool(self.init_image or self.init_args.strip())


def _split(variable: str, args: str) -> list[str]:
    """Split a command line as the task runner will, so a bad quote fails at start-up."""
    try:
        return shlex.split(args)
    except ValueError as exc:
        raise ConfigError(variable, f"cannot be split into arguments: {exc}") from None


def env_names(*, ours: bool | None = None) -> list[str]:
    """All variable names the pilot reads (optionally only ours / only upstream's)."""
    return [
        f.metadata["env"]
        for f in dataclasses.fields(PilotConfig)
        if ours is None or f.metadata.get("ours", False) == ours
    ]
