"""ewms_config: the shared parsers, the field declaration and the `from_env` loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from ewms_config import (
    FALSE_WORDS,
    TRUE_WORDS,
    ConfigError,
    choice,
    env_json,
    from_env,
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


def error(parse: object, raw: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse("X_VAR", raw)  # type: ignore[operator]
    assert info.value.variable == "X_VAR"
    assert str(info.value).startswith("X_VAR: ")
    return info.value


# -- ConfigError --------------------------------------------------------------------------------


def test_config_error_forms() -> None:
    err = ConfigError("X_A", "bad")
    assert (str(err), err.variable, err.problem) == ("X_A: bad", "X_A", "bad")
    err = ConfigError("set only one of X_A and X_B")
    assert (str(err), err.variable) == ("set only one of X_A and X_B", "")
    err = ConfigError("X_A", "is required", message="X_A is required")
    assert (str(err), err.variable) == ("X_A is required", "X_A")
    assert isinstance(err, ValueError)


# -- parsers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", [*TRUE_WORDS, "TRUE", "Yes", " on "])
def test_true_words(word: str) -> None:
    assert parse_bool("X_VAR", word) is True


@pytest.mark.parametrize("word", [*FALSE_WORDS, "FALSE", "No", " off"])
def test_false_words(word: str) -> None:
    assert parse_bool("X_VAR", word) is False


def test_the_words_are_upstreams() -> None:
    assert set(TRUE_WORDS) == {"y", "yes", "t", "true", "on", "1"}
    assert set(FALSE_WORDS) == {"n", "no", "f", "false", "off", "0"}


@pytest.mark.parametrize("word", ["", "maybe", "2", "yess", "enabled"])
def test_other_words_are_not_booleans(word: str) -> None:
    assert "expected a boolean" in str(error(parse_bool, word))


def test_int() -> None:
    assert parse_int("X_VAR", " -3 ") == -3
    assert "expected a whole number, got 'many'" in str(error(parse_int, "many"))
    error(parse_int, "1.5")


def test_positive() -> None:
    count = positive(int)
    assert count("X_VAR", "7") == 7
    assert str(error(count, "0")) == "X_VAR: expected a positive int, got '0'"
    error(count, "-1")
    error(count, "x")
    assert positive(int, allow_zero=True)("X_VAR", "0") == 0
    error(positive(int, allow_zero=True), "-1")
    ratio = positive(float, allow_zero=True)
    assert ratio("X_VAR", "0.5") == 0.5
    assert str(error(ratio, "-1")) == "X_VAR: expected a positive float, got '-1'"
    error(ratio, "nan")


def test_seconds() -> None:
    assert parse_seconds("X_VAR", "2.5") == 2.5
    assert parse_seconds("X_VAR", "0") == 0
    for raw in ("-1", "nan", "soon", ""):
        error(parse_seconds, raw)
    assert parse_positive_seconds("X_VAR", " 10 ") == 10
    assert "must be > 0 seconds" in str(error(parse_positive_seconds, "0"))


def test_optional_seconds() -> None:
    assert parse_optional_seconds("X_VAR", "") is None
    assert parse_optional_seconds("X_VAR", "  ") is None
    assert parse_optional_seconds("X_VAR", "600") == 600
    assert "leave it unset" in str(error(parse_optional_seconds, "0"))
    error(parse_optional_seconds, "-1")
    error(parse_optional_seconds, "1h")


def test_choice_returns_the_declared_spelling() -> None:
    level = choice("DEBUG", "INFO")
    assert level("X_VAR", " debug ") == "DEBUG"
    fmt = choice("json", "text")
    assert fmt("X_VAR", "TEXT") == "text"
    assert str(error(fmt, "xml")) == "X_VAR: expected one of json, text, got 'xml'"


def test_choice_may_allow_empty() -> None:
    platform = choice("", "docker")
    assert platform("X_VAR", "") == ""
    assert "expected one of docker, got 'podman'" in str(error(platform, "podman"))


def test_url() -> None:
    http = url("http", "https")
    assert http("X_VAR", " https://wms.example.org:8080/ ") == "https://wms.example.org:8080"
    for raw in ("127.0.0.1:8080", "ftp://h", "http://", ""):
        error(http, raw)
    assert "pw" not in str(error(http, "ftp://u:pw@h"))


def test_mask_url() -> None:
    assert mask_url("amqp://user:pw@host:5672/") == "amqp://user:***@host:5672/"
    assert mask_url("http://host/") == "http://host/"


def test_env_json() -> None:
    assert parse_env_json("X_VAR", '{"A": "x", "N": 3, "F": 1.5}') == {"A": "x", "N": "3", "F": "1.5"}
    assert parse_env_json("X_VAR", "") == {}
    for raw in ("{not json", "[1, 2]", '{"BAD NAME": "x"}', '{"X": {"nested": 1}}', '{"X": null}', '{"X": true}'):
        error(parse_env_json, raw)
    assert env_json(booleans=True)("X_VAR", '{"A": true, "B": false}') == {"A": "true", "B": "false"}


# -- declaring fields and the loop -------------------------------------------------------------------


def _whole(_variable: str, raw: str) -> int:
    return int(raw)  # a plain ValueError: the loop names the variable


@dataclasses.dataclass(frozen=True)
class Example:
    name: str = setting("X_NAME", parse_str)
    token: str = setting("X_TOKEN", parse_str, "", secret=True)
    flag: bool = setting("X_FLAG", parse_bool, False)
    limit: float | None = setting("X_LIMIT", parse_optional_seconds, None)
    env: Mapping[str, str] = setting("X_ENV", parse_env_json, {}, note="ours")
    number: int = setting("X_NUMBER", _whole, 1)
    derived: str = dataclasses.field(default="not from env")


def test_defaults_and_values() -> None:
    config = from_env(Example, {"X_NAME": "n", "X_FLAG": "yes", "X_NUMBER": "5", "UNRELATED": "x"}, trim=True)
    assert config == Example(name="n", flag=True, number=5)
    assert config.limit is None and config.env == {} and config.derived == "not from env"


def test_mutable_defaults_are_not_shared() -> None:
    one, two = Example(name="a"), Example(name="b")
    assert one.env == {} and one.env is not two.env


def test_metadata() -> None:
    fields = {f.name: f for f in dataclasses.fields(Example)}
    assert fields["env"].metadata["env"] == "X_ENV" and fields["env"].metadata["note"] == "ours"
    assert fields["token"].metadata["secret"] is True


def test_secrets_stay_out_of_repr() -> None:
    config = from_env(Example, {"X_NAME": "visible", "X_TOKEN": "tok-hidden"}, trim=True)
    assert "tok-hidden" not in repr(config) and "visible" in repr(config)


def test_required_variable() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(Example, {}, trim=True)
    assert str(info.value) == "X_NAME is required" and info.value.variable == "X_NAME"


def test_trim_drops_whitespace_and_blank_means_unset() -> None:
    config = from_env(Example, {"X_NAME": "  n  ", "X_FLAG": " ", "X_LIMIT": ""}, trim=True)
    assert (config.name, config.flag, config.limit) == ("n", False, None)
    with pytest.raises(ConfigError, match="X_NAME is required"):
        from_env(Example, {"X_NAME": "   "}, trim=True)


def test_without_trim_a_set_variable_is_parsed_verbatim() -> None:
    config = from_env(Example, {"X_NAME": "  n  ", "X_LIMIT": ""}, trim=False)
    assert config.name == "  n  " and config.limit is None
    with pytest.raises(ConfigError, match=r"^X_FLAG: expected a boolean"):
        from_env(Example, {"X_NAME": "n", "X_FLAG": ""}, trim=False)


def test_a_plain_value_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        from_env(Example, {"X_NAME": "n", "X_NUMBER": "five"}, trim=True)
    assert info.value.variable == "X_NUMBER" and str(info.value).startswith("X_NUMBER: invalid literal")


def test_read_env_returns_only_what_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_env(Example, {"X_NAME": "n", "X_LIMIT": "2.5"}, trim=True) == {"name": "n", "limit": 2.5}
    monkeypatch.setenv("X_NAME", "from-os")
    assert read_env(Example, trim=True)["name"] == "from-os"  # None means os.environ


def test_nan_is_never_a_number_of_seconds() -> None:
    error(parse_seconds, "nan")
    error(parse_optional_seconds, "NaN")
