"""ewms_config — environment-variable configuration shared by the EWMS services.

@dataclasses.dataclass(frozen=True)
class Config:
    url: str = setting("X_URL", url("http", "https"))             # required
    token: str = setting("X_TOKEN", parse_str, "", secret=True)   # kept out of repr
    interval: float = setting("X_INTERVAL", parse_positive_seconds, 10.0)

config = from_env(Config, os.environ, trim=True)   # ConfigError names the bad variable
"""

from .env import (
    FALSE_WORDS,
    TRUE_WORDS,
    ConfigError,
    Parser,
    choice,
    env_json,
    env_value,
    from_env,
    is_url,
    mask_url,
    parse_bool,
    parse_env_json,
    parse_int,
    parse_optional_seconds,
    parse_positive_seconds,
    parse_seconds,
    parse_str,
    positive,
    read_env,
    setting,
    url,
)
from .sizes import MAX_SIZE, parse_size, size_problem

__all__ = [
    "FALSE_WORDS",
    "MAX_SIZE",
    "TRUE_WORDS",
    "ConfigError",
    "Parser",
    "choice",
    "env_json",
    "env_value",
    "from_env",
    "is_url",
    "mask_url",
    "parse_bool",
    "parse_env_json",
    "parse_int",
    "parse_optional_seconds",
    "parse_positive_seconds",
    "parse_seconds",
    "parse_size",
    "parse_str",
    "positive",
    "read_env",
    "setting",
    "size_problem",
    "url",
]
