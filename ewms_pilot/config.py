"""The pilot's configuration: one frozen dataclass read from `EWMS_PILOT_*` variables.

The TMS configures a pilot only through its job environment, and tasks written for the
upstream EWMS pilot (`ewms-pilot` v1.x) must run unchanged, so every upstream variable is
read here with upstream's name, meaning and default. Variables of our own come last.

A bad value is reported as a `ConfigError` that names the variable, so a user reading a
held job's stderr knows which line of the submit description to fix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "EWMS_PILOT_"
TRUE_WORDS = ("y", "yes", "t", "true", "on", "1")
FALSE_WORDS = ("n", "no", "f", "false", "off", "0")
HTCHIRP_DESTS = ("JOB_EVENT_LOG", "JOB_ATTR")
CONTAINER_PLATFORMS = ("", "apptainer", "docker")
BROKER_TYPES = ("", "rabbitmq")
LEGACY_TASK_TIMEOUT = "EWMS_PILOT_SUBPROC_TIMEOUT"

LOGGER = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A variable is missing or malformed; `variable` names it for the user."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


# -- value parsers: (variable name, raw string) -> typed value ---------------------------


def parse_bool(variable: str, raw: str) -> bool:
    """Parse a boolean the way upstream does (wipac-dev-tools' strtobool), else fail loudly."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        variable, f"not a boolean: {raw!r} (use one of {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})"
    )


def parse_int(variable: str, raw: str) -> int:
    """Parse a whole number; a typo must not silently become a default."""
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(variable, f"not an integer: {raw!r}") from None


def parse_seconds(variable: str, raw: str) -> float:
    """Parse a non-negative duration in seconds (fractions allowed, unlike upstream's ints)."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(variable, f"not a number of seconds: {raw!r}") from None
    if value < 0 or value != value:  # NaN is not a duration either
        raise ConfigError(variable, f"must be a number of seconds >= 0, got {raw!r}")
    return value


def parse_optional_seconds(variable: str, raw: str) -> float | None:
    """Like `parse_seconds`, but an empty value means "no limit" (the TMS may set it to '')."""
    if not raw.strip():
        return None
    value = parse_seconds(variable, raw)
    if value == 0:
        raise ConfigError(variable, "must be > 0 (leave it unset for no limit)")
    return value


def parse_env_json(variable: str, raw: str) -> dict[str, str]:
    """Parse a JSON object of environment variables (values: strings or numbers)."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(variable, f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(variable, f"must be a JSON object of NAME: value, got {type(value).__name__}")
    env: dict[str, str] = {}
    for name, val in value.items():
        if not name.isidentifier() or not name.isascii():
            raise ConfigError(variable, f"invalid environment variable name: {name!r}")
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise ConfigError(variable, f"value of {name!r} must be a string or a number")
        env[name] = str(val)
    return env


def parse_words(_variable: str, raw: str) -> tuple[str, ...]:
    """Split a whitespace-separated list (upstream's collection format)."""
    return tuple(raw.split())


def parse_comma_list(_variable: str, raw: str) -> tuple[str, ...]:
    """Split a comma-separated list, skipping blanks (upstream's EXTERNAL_DIRECTORIES)."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_str(_variable: str, raw: str) -> str:
    """Take a string verbatim."""
    return raw


def parse_log_level(variable: str, raw: str) -> str:
    """Accept a `logging` level name; a typo would otherwise silence the logs we need."""
    level = raw.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError(variable, f"unknown log level {raw!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return level


def _choice(*choices: str, upper: bool = False) -> Callable[[str, str], str]:
    """Build a parser that accepts only `choices` (case-insensitive)."""

    def parse(variable: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices if c)
            raise ConfigError(variable, f"unsupported value {raw!r} (one of {shown})")
        return value

    return parse


Parser = Callable[[str, str], Any]


def var(env: str, default: Any, parse: Parser, *, ours: bool = False, secret: bool = False) -> Any:
    """Declare a field read from environment variable `env`.

    `ours` marks variables that upstream does not have, so the docs and the compat table
    can tell the two sets apart; `secret` keeps a value out of the config's repr (logs).
    """
    metadata = {"env": env, "parse": parse, "ours": ours}
    if isinstance(default, dict):  # a mutable default needs a factory
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


# -- the configuration ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PilotConfig:
    """Everything a pilot reads from its environment, typed and validated."""

    # task
    task_image: str = var("EWMS_PILOT_TASK_IMAGE", "", parse_str)
    task_args: str = var("EWMS_PILOT_TASK_ARGS", "", parse_str)
    task_env: Mapping[str, str] = var("EWMS_PILOT_TASK_ENV_JSON", {}, parse_env_json, secret=True)
    # init
    init_image: str = var("EWMS_PILOT_INIT_IMAGE", "", parse_str)
    init_args: str = var("EWMS_PILOT_INIT_ARGS", "", parse_str)
    init_env: Mapping[str, str] = var("EWMS_PILOT_INIT_ENV_JSON", {}, parse_env_json, secret=True)
    # incoming queue
    queue_incoming: str = var("EWMS_PILOT_QUEUE_INCOMING", "", parse_str)
    queue_incoming_auth_token: str = var("EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN", "", parse_str, secret=True)
    queue_incoming_broker_type: str = var("EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE", "", _choice(*BROKER_TYPES))
    queue_incoming_broker_address: str = var("EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS", "", parse_str, secret=True)
    # outgoing queue
    queue_outgoing: str = var("EWMS_PILOT_QUEUE_OUTGOING", "", parse_str)
    queue_outgoing_auth_token: str = var("EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN", "", parse_str, secret=True)
    queue_outgoing_broker_type: str = var("EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE", "", _choice(*BROKER_TYPES))
    queue_outgoing_broker_address: str = var("EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS", "", parse_str, secret=True)
    # files
    data_dir_parent_path_on_host: str = var("EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST", "", parse_str)
    infile_ext: str = var("EWMS_PILOT_INFILE_EXT", ".in", parse_str)
    outfile_ext: str = var("EWMS_PILOT_OUTFILE_EXT", ".out", parse_str)
    external_directories: tuple[str, ...] = var("EWMS_PILOT_EXTERNAL_DIRECTORIES", (), parse_comma_list)
    # incoming queue settings
    prefetch: int = var("EWMS_PILOT_PREFETCH", 1, parse_int)
    timeout_queue_wait_for_first_message: float | None = var(
        "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE", None, parse_optional_seconds
    )
    timeout_queue_incoming: float = var("EWMS_PILOT_TIMEOUT_QUEUE_INCOMING", 1.0, parse_seconds)
    # logging
    cl_log: str = var("EWMS_PILOT_CL_LOG", "INFO", parse_log_level)
    cl_log_third_party: str = var("EWMS_PILOT_CL_LOG_THIRD_PARTY", "WARNING", parse_log_level)
    # chirp
    htchirp: bool = var("EWMS_PILOT_HTCHIRP", False, parse_bool)
    htchirp_dest: str = var("EWMS_PILOT_HTCHIRP_DEST", "JOB_ATTR", _choice(*HTCHIRP_DESTS, upper=True))
    htchirp_ratelimit_interval: float = var("EWMS_PILOT_HTCHIRP_RATELIMIT_INTERVAL", 60.0, parse_seconds)
    # timeouts
    init_timeout: float | None = var("EWMS_PILOT_INIT_TIMEOUT", None, parse_optional_seconds)
    task_timeout: float | None = var("EWMS_PILOT_TASK_TIMEOUT", None, parse_optional_seconds)
    # task handling
    stop_listening_on_task_error: bool = var("EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR", True, parse_bool)
    okay_errors: tuple[str, ...] = var("EWMS_PILOT_OKAY_ERRORS", (), parse_words)
    max_concurrent_tasks: int = var("EWMS_PILOT_MAX_CONCURRENT_TASKS", 1, parse_int)
    # misc
    keep_all_task_files: bool = var("EWMS_PILOT_KEEP_ALL_TASK_FILES", False, parse_bool)
    dump_task_output: bool = var("EWMS_PILOT_DUMP_TASK_OUTPUT", False, parse_bool)
    quarantine_time: float = var("EWMS_PILOT_QUARANTINE_TIME", 0.0, parse_seconds)
    container_debug: bool = var("EWMS_PILOT_CONTAINER_DEBUG", False, parse_bool)
    # upstream's "non-user" settings
    container_platform: str = var("_EWMS_PILOT_CONTAINER_PLATFORM", "", _choice(*CONTAINER_PLATFORMS))
    apptainer_build_workdir: str = var("_EWMS_PILOT_APPTAINER_BUILD_WORKDIR", "/var/tmp", parse_str)
    apptainer_image_directory_must_be_present: bool = var(
        "_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT", True, parse_bool
    )
    docker_shm_size: str = var("_EWMS_PILOT_DOCKER_SHM_SIZE", "", parse_str)
    ci: bool = var("CI", False, parse_bool)
    # ours
    task_callable: str = var("EWMS_PILOT_TASK_CALLABLE", "", parse_str, ours=True)
    max_runtime: float | None = var("EWMS_PILOT_MAX_RUNTIME", None, parse_optional_seconds, ours=True)
    summary_path: str = var("EWMS_PILOT_SUMMARY_PATH", "", parse_str, ours=True)
    max_consecutive_failures: int = var("EWMS_PILOT_MAX_CONSECUTIVE_FAILURES", 5, parse_int, ours=True)
    drain_timeout: float = var("EWMS_PILOT_DRAIN_TIMEOUT", 30.0, parse_seconds, ours=True)
    task_kill_grace: float = var("EWMS_PILOT_TASK_KILL_GRACE", 5.0, parse_seconds, ours=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PilotConfig:
        """Read, parse and validate; raises `ConfigError` naming the first bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.metadata["env"]
            if name in env:
                values[field.name] = field.metadata["parse"](name, env[name])
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
    return [f.metadata["env"] for f in dataclasses.fields(PilotConfig) if ours is None or f.metadata["ours"] == ours]
