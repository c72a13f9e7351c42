"""Frozen-dataclass configurations read from environment variables.

A service declares each field with `setting(...)` (the variable's name, a parser, a default,
and whether the value is a secret), then builds its config with `from_env(cls, environ)`.
A parser takes `(variable, raw)` and returns the typed value or raises `ConfigError`
naming the variable, so a bad deployment is fixed from the first error message.

Services differ in one reading rule, chosen with `trim`:

* `trim=True` (TMS, WMS): surrounding whitespace is dropped and a blank value counts as unset;
* `trim=False` (pilot): the value is passed verbatim, so a variable set to '' is parsed
  (meaning "no limit" for optional seconds, an error for a boolean).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

Parser = Callable[[str, str], T]
"""`(variable, raw) -> value`; raises `ConfigError` (or `ValueError`) for a bad value."""

TRUE_WORDS = ("y", "yes", "t", "true", "on", "1")  # upstream EWMS (wipac-dev-tools' strtobool)
FALSE_WORDS = ("n", "no", "f", "false", "off", "0")


class ConfigError(ValueError):
    """A variable is missing or malformed.

    `ConfigError(variable, problem)` reads "VARIABLE: problem"; `ConfigError(sentence)` is a
    rule over several variables (`variable` is '' then); `message=` replaces the wording.
    """

    def __init__(self, variable: str, problem: str | None = None, *, message: str | None = None) -> None:
        if problem is None:
            variable, problem = "", variable
        super().__init__(message or (f"{variable}: {problem}" if variable else problem))
        self.variable = variable
        self.problem = problem


# -- declaring and reading fields ---------------------------------------------------------------


def setting(
    env: str, parse: Parser[Any], default: Any = dataclasses.MISSING, *, secret: bool = False, **meta: Any
) -> Any:
    """A dataclass field read from variable `env` with `parse`; required unless `default` is given.

    `secret` keeps the value out of the dataclass's repr (so logging the config is safe);
    extra keywords go into the field's metadata for the service's own use.
    """
    metadata = {"env": env, "parse": parse, "secret": secret, **meta}
    if isinstance(default, dict | list):  # a mutable default needs a factory
        return dataclasses.field(default_factory=lambda: default.copy(), metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def read_env(cls: type[Any], environ: Mapping[str, str] | None = None, *, trim: bool) -> dict[str, Any]:
    """The parsed values of `cls`'s `setting` fields whose variable is set (see the module doc for `trim`)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if "env" not in field.metadata or not field.init:
            continue
        variable: str = field.metadata["env"]
        raw = env.get(variable)
        if raw is not None and trim:
            raw = raw.strip() or None
        if raw is not None:
            values[field.name] = _parse(field.metadata["parse"], variable, raw)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(variable, "is required", message=f"{variable} is required")
    return values


def from_env(cls: type[T], environ: Mapping[str, str] | None = None, *, trim: bool) -> T:
    """`cls(**read_env(cls, environ, trim=trim))`: raises `ConfigError` naming the first bad variable."""
    return cls(**read_env(cls, environ, trim=trim))


def _parse(parse: Parser[Any], variable: str, raw: str) -> Any:
    try:
        return parse(variable, raw)
    except ConfigError:
        raise
    except ValueError as exc:  # a plain parser's complaint still names the variable
        raise ConfigError(variable, str(exc)) from None


# -- parsers ----------------------------------------------------------------------------------------


def parse_str(_variable: str, raw: str) -> str:
    """Take a string verbatim."""
    return raw


def parse_bool(variable: str, raw: str) -> bool:
    """A boolean in upstream EWMS's words (any case); anything else is an error, '' included."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(variable, f"expected a boolean (true/false, yes/no, 1/0), got {raw!r}")


def parse_int(variable: str, raw: str) -> int:
    """A whole number of any sign; a typo must not silently become a default."""
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(variable, f"expected a whole number, got {raw!r}") from None


def positive(kind: Callable[[str], T], *, allow_zero: bool = False) -> Parser[T]:
    """A parser of `kind` (`int` or `float`) that refuses negatives and NaN (and zero unless `allow_zero`)."""

    def parse(variable: str, raw: str) -> T:
        problem = f"expected a positive {getattr(kind, '__name__', 'number')}, got {raw!r}"
        try:
            value: Any = kind(raw.strip())
        except ValueError:
            raise ConfigError(variable, problem) from None
        if not (value > 0 or (allow_zero and value == 0)):  # NaN is not positive either
            raise ConfigError(variable, problem)
        return value  # type: ignore[no-any-return]

    return parse


def parse_seconds(variable: str, raw: str, *, allow_zero: bool = True) -> float:
    """A duration in seconds, fractions allowed: >= 0 (or > 0 unless `allow_zero`); never NaN."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(variable, f"expected a number of seconds, got {raw!r}") from None
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(variable, f"must be {'>=' if allow_zero else '>'} 0 seconds, got {raw!r}")
    return value


def parse_positive_seconds(variable: str, raw: str) -> float:
    """`parse_seconds` refusing zero (an interval or a timeout)."""
    return parse_seconds(variable, raw, allow_zero=False)


def parse_optional_seconds(variable: str, raw: str) -> float | None:
    """Like `parse_positive_seconds`, but a blank value means "no limit" (`None`)."""
    if not raw.strip():
        return None
    value = parse_seconds(variable, raw)
    if value == 0:
        raise ConfigError(variable, "must be > 0 (leave it unset for no limit)")
    return value


def choice(*allowed: str) -> Parser[str]:
    """A parser accepting one of `allowed` in any case, returned as spelled in `allowed`."""

    def parse(variable: str, raw: str) -> str:
        for option in allowed:
            if raw.strip().lower() == option.lower():
                return option
        shown = ", ".join(option for option in allowed if option)
        raise ConfigError(variable, f"expected one of {shown}, got {raw!r}")

    return parse


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***` (for logs and errors)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def is_url(value: str, schemes: tuple[str, ...]) -> bool:
    """Whether `value` is a URL with one of `schemes` and a host."""
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in schemes and bool(parts.hostname)


def url(*schemes: str) -> Parser[str]:
    """A parser of a URL with one of `schemes` and a host, returned without a trailing '/'."""

    def parse(variable: str, raw: str) -> str:
        value = raw.strip()
        if not is_url(value, schemes):
            raise ConfigError(variable, f"expected a {'/'.join(schemes)} URL with a host, got {mask_url(raw)!r}")
        return value.rstrip("/")

    return parse


def env_value(value: Any) -> str:
    """An environment value from JSON: booleans as upstream's pilot reads them, the rest as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_json(*, booleans: bool = False) -> Parser[dict[str, str]]:
    """A parser of a JSON object of environment variables, NAME: string or number ('' is `{}`).

    `booleans` also accepts true/false, passed on as 'true'/'false' (see `env_value`).
    """

    def parse(variable: str, raw: str) -> dict[str, str]:
        try:
            value = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigError(variable, f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigError(variable, f"expected a JSON object of NAME: value, got {type(value).__name__}")
        env: dict[str, str] = {}
        for name, val in value.items():
            if not name.isidentifier() or not name.isascii():
                raise ConfigError(variable, f"invalid environment variable name: {name!r}")
            if (isinstance(val, bool) and not booleans) or not isinstance(val, str | int | float):
                raise ConfigError(variable, f"value of {name!r} must be a string or a number")
            env[name] = env_value(val)
        return env

    return parse


parse_env_json = env_json()
