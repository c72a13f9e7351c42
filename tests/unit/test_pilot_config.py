"""Config parsing: upstream names and defaults, boolean words, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewms_pilot.config import ConfigError, PilotConfig, env_names

BASE = {
    "EWMS_PILOT_QUEUE_INCOMING": "in-q",
    "EWMS_PILOT_QUEUE_OUTGOING": "out-q",
    "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": "localhost",
    "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": "localhost",
    "EWMS_PILOT_TASK_ARGS": "true",
}


def config(**overrides: str) -> PilotConfig:
    return PilotConfig.from_env({**BASE, **overrides})


def config_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        PilotConfig.from_env(env)
    return info.value


def test_upstream_defaults() -> None:
    c = config()
    assert (c.infile_ext, c.outfile_ext) == (".in", ".out")
    assert c.prefetch == 1
    assert c.max_concurrent_tasks == 1
    assert c.timeout_queue_incoming == 1
    assert c.timeout_queue_wait_for_first_message is None
    assert c.first_message_timeout == 1  # upstream: defaults to the incoming timeout
    assert c.stop_listening_on_task_error is True
    assert c.keep_all_task_files is False
    assert c.dump_task_output is False
    assert c.quarantine_time == 0
    assert c.task_timeout is None and c.init_timeout is None
    assert c.htchirp is False and c.htchirp_dest == "JOB_ATTR" and c.htchirp_ratelimit_interval == 60
    assert c.cl_log == "INFO" and c.cl_log_third_party == "WARNING"
    assert c.data_dir_parent_path_on_host == ""
    assert c.external_directories == () and c.okay_errors == ()
    assert c.task_env == {} and c.init_env == {}
    assert c.apptainer_build_workdir == "/var/tmp"
    assert c.apptainer_image_directory_must_be_present is True


@pytest.mark.parametrize("word", ["y", "yes", "t", "true", "on", "1", "TRUE", "Yes", " on "])
def test_true_words(word: str) -> None:
    assert config(EWMS_PILOT_KEEP_ALL_TASK_FILES=word).keep_all_task_files is True


@pytest.mark.parametrize("word", ["n", "no", "f", "false", "off", "0", "FALSE", "No"])
def test_false_words(word: str) -> None:
    assert config(EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR=word).stop_listening_on_task_error is False


@pytest.mark.parametrize("word", ["", "maybe", "2", "yess", "enabled"])
def test_bad_boolean_names_the_variable(word: str) -> None:
    err = config_error({**BASE, "EWMS_PILOT_DUMP_TASK_OUTPUT": word})
    assert err.variable == "EWMS_PILOT_DUMP_TASK_OUTPUT"
    assert "EWMS_PILOT_DUMP_TASK_OUTPUT" in str(err)
    assert "boolean" in str(err)


@pytest.mark.parametrize(
    "missing",
    [
        "EWMS_PILOT_QUEUE_INCOMING",
        "EWMS_PILOT_QUEUE_OUTGOING",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS",
        "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS",
    ],
)
def test_missing_queue_settings_name_the_variable(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    assert config_error(env).variable == missing


def test_no_task_at_all_is_an_error() -> None:
    env = {k: v for k, v in BASE.items() if k != "EWMS_PILOT_TASK_ARGS"}
    err = config_error(env)
    assert err.variable == "EWMS_PILOT_TASK_ARGS"
    assert "EWMS_PILOT_TASK_IMAGE" in str(err) and "EWMS_PILOT_TASK_CALLABLE" in str(err)


def test_task_kinds() -> None:
    assert config().task_kind == "command"
    assert config(EWMS_PILOT_TASK_IMAGE="alpine").task_kind == "container"
    env = {k: v for k, v in BASE.items() if k != "EWMS_PILOT_TASK_ARGS"}
    assert PilotConfig.from_env({**env, "EWMS_PILOT_TASK_CALLABLE": "m:f"}).task_kind == "callable"


@pytest.mark.parametrize("spec", ["nocolon", ":f", "m:", " : "])
def test_bad_callable_spec(spec: str) -> None:
    env = {k: v for k, v in BASE.items() if k != "EWMS_PILOT_TASK_ARGS"}
    assert config_error({**env, "EWMS_PILOT_TASK_CALLABLE": spec}).variable == "EWMS_PILOT_TASK_CALLABLE"


def test_callable_and_command_conflict() -> None:
    assert config_error({**BASE, "EWMS_PILOT_TASK_CALLABLE": "m:f"}).variable == "EWMS_PILOT_TASK_CALLABLE"


def test_unbalanced_quotes_fail_at_start_up() -> None:
    assert config_error({**BASE, "EWMS_PILOT_TASK_ARGS": "sh -c 'oops"}).variable == "EWMS_PILOT_TASK_ARGS"
    assert config_error({**BASE, "EWMS_PILOT_INIT_ARGS": 'echo "x'}).variable == "EWMS_PILOT_INIT_ARGS"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EWMS_PILOT_PREFETCH", "many"),
        ("EWMS_PILOT_PREFETCH", "0"),
        ("EWMS_PILOT_MAX_CONCURRENT_TASKS", "0"),
        ("EWMS_PILOT_TASK_TIMEOUT", "soon"),
        ("EWMS_PILOT_TASK_TIMEOUT", "-1"),
        ("EWMS_PILOT_TASK_TIMEOUT", "0"),
        ("EWMS_PILOT_TIMEOUT_QUEUE_INCOMING", "0"),
        ("EWMS_PILOT_QUARANTINE_TIME", "nan"),
        ("EWMS_PILOT_MAX_RUNTIME", "1h"),
        ("EWMS_PILOT_CL_LOG", "LOUD"),
        ("EWMS_PILOT_HTCHIRP_DEST", "SOMEWHERE"),
        ("EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE", "pulsar"),
        ("_EWMS_PILOT_CONTAINER_PLATFORM", "podman"),
        ("EWMS_PILOT_TASK_ENV_JSON", "{not json"),
        ("EWMS_PILOT_TASK_ENV_JSON", "[1, 2]"),
        ("EWMS_PILOT_INIT_ENV_JSON", '{"BAD NAME": "x"}'),
        ("EWMS_PILOT_TASK_ENV_JSON", '{"X": {"nested": 1}}'),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    err = config_error({**BASE, name: value})
    assert err.variable == name
    assert str(err).startswith(f"{name}: ")


def test_typed_values() -> None:
    c = config(
        EWMS_PILOT_TASK_TIMEOUT="2.5",
        EWMS_PILOT_PREFETCH="4",
        EWMS_PILOT_MAX_CONCURRENT_TASKS="2",
        EWMS_PILOT_TASK_ENV_JSON='{"A": "x", "N": 3}',
        EWMS_PILOT_EXTERNAL_DIRECTORIES="/cvmfs/a, ,/data/b,",
        EWMS_PILOT_OKAY_ERRORS="TimeoutError  ContainerRunError",
        EWMS_PILOT_CL_LOG="debug",
        EWMS_PILOT_HTCHIRP_DEST="job_event_log",
        EWMS_PILOT_MAX_RUNTIME="600",
    )
    assert c.task_timeout == 2.5
    assert c.effective_prefetch == 4
    assert c.task_env == {"A": "x", "N": "3"}
    assert c.external_directories == ("/cvmfs/a", "/data/b")
    assert c.okay_errors == ("TimeoutError", "ContainerRunError")
    assert c.cl_log == "DEBUG"
    assert c.htchirp_dest == "JOB_EVENT_LOG"
    assert c.max_runtime == 600


def test_prefetch_is_raised_to_the_concurrency() -> None:
    assert config(EWMS_PILOT_MAX_CONCURRENT_TASKS="3").effective_prefetch == 3


def test_empty_optional_timeout_means_no_limit() -> None:
    assert config(EWMS_PILOT_TASK_TIMEOUT="").task_timeout is None


def test_legacy_subproc_timeout() -> None:
    assert config(EWMS_PILOT_SUBPROC_TIMEOUT="7").task_timeout == 7
    assert config(EWMS_PILOT_SUBPROC_TIMEOUT="7", EWMS_PILOT_TASK_TIMEOUT="3").task_timeout == 3


def test_quarantine_needs_stop_listening() -> None:
    env = {**BASE, "EWMS_PILOT_QUARANTINE_TIME": "5", "EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR": "false"}
    assert config_error(env).variable == "EWMS_PILOT_QUARANTINE_TIME"
    assert config(EWMS_PILOT_QUARANTINE_TIME="5").quarantine_time == 5


def test_secrets_stay_out_of_the_repr() -> None:
    c = config(
        EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN="tok-in-secret",
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS="user:pw-secret@host",
        EWMS_PILOT_TASK_ENV_JSON='{"API_KEY": "env-secret"}',
    )
    text = repr(c)
    assert "secret" not in text
    assert "in-q" in text


def test_every_variable_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "pilot.md").read_text()
    missing = [name for name in env_names() if f"`{name}`" not in doc]
    assert not missing


def test_ours_are_marked() -> None:
    ours = set(env_names(ours=True))
    assert {"EWMS_PILOT_TASK_CALLABLE", "EWMS_PILOT_MAX_RUNTIME", "EWMS_PILOT_SUMMARY_PATH"} <= ours
    assert "EWMS_PILOT_TASK_IMAGE" not in ours
