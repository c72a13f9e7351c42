"""The TMS's configuration from `TMS_*` variables, and the pilot spec it builds from a claim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ewms_tms.config import Config, ConfigError
from ewms_tms.spec import Claim, SpecError, pilot_runtime, pilot_spec

BASE = {"TMS_WMS_URL": "http://127.0.0.1:8080/", "TMS_CLUSTER_LOCATION": "sub-2", "TMS_WMS_TOKEN": "tok"}


def config(**env: str) -> Config:
    return Config.from_env({**BASE, "TMS_SCHEDULER": "local", **env})


def test_defaults_and_derived_values(tmp_path: Path) -> None:
    c = config(TMS_STATE_DIR=str(tmp_path))
    assert c.wms_url == "http://127.0.0.1:8080"
    assert c.claimant.startswith("sub-2@")
    assert c.state_dir == tmp_path
    assert c.host_command_image == "host"
    assert config().state_dir.name == "sub-2"  # one state directory per location by default


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TMS_WMS_URL": ""}, "TMS_WMS_URL"),
        ({"TMS_WMS_URL": "127.0.0.1:8080"}, "TMS_WMS_URL"),
        ({"TMS_CLUSTER_LOCATION": ""}, "TMS_CLUSTER_LOCATION"),
        ({"TMS_CLUSTER_LOCATION": "a b"}, "TMS_CLUSTER_LOCATION"),
        ({"TMS_SCHEDULER": "slurm"}, "TMS_SCHEDULER"),
        ({"TMS_WATCHER_INTERVAL": "soon"}, "TMS_WATCHER_INTERVAL"),
        ({"TMS_STARTER_INTERVAL": "0"}, "TMS_STARTER_INTERVAL"),
        ({"TMS_STATUS_BATCH_SIZE": "0"}, "TMS_STATUS_BATCH_SIZE"),
        ({"TMS_LOCAL_STOP_PILOTS_ON_EXIT": "maybe"}, "TMS_LOCAL_STOP_PILOTS_ON_EXIT"),
        ({"TMS_PILOT_ENV_JSON": "[1]"}, "TMS_PILOT_ENV_JSON"),
        ({"TMS_PILOT_ENV_JSON": "{"}, "TMS_PILOT_ENV_JSON"),
        ({"TMS_CLAIMANT": "me and you"}, "TMS_CLAIMANT"),
        ({"TMS_SCHEDULER": "htcondor"}, "TMS_PILOT_IMAGE"),
        ({"TMS_WMS_TOKEN": ""}, "TMS_WMS_TOKEN"),
        ({"TMS_WMS_TOKEN_FILE": "/x"}, "TMS_WMS_TOKEN"),
        ({"TMS_WMS_TOKEN": "", "TMS_OAUTH_TOKEN_URL": "https://kc/realms/x"}, "TMS_OAUTH_CLIENT_ID"),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config(**env)


def test_secrets_stay_out_of_repr() -> None:
    c = config(TMS_WMS_TOKEN="eyJ-very-secret")
    assert "eyJ-very-secret" not in repr(c)


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("eyJ-from-file\n")
    assert config(TMS_WMS_TOKEN="", TMS_WMS_TOKEN_FILE=str(path)).token() == "eyJ-from-file"
    with pytest.raises(ConfigError, match="TMS_WMS_TOKEN_FILE"):
        config(TMS_WMS_TOKEN="", TMS_WMS_TOKEN_FILE=str(tmp_path / "missing")).token()


# -- the pilot spec ---------------------------------------------------------------------------------


def claim(**changes: Any) -> Claim:
    taskforce = {
        "taskforce_uuid": "tf1",
        "workflow_id": "wf1",
        "task_id": "t1",
        "n_workers": 3,
        "worker_config": {
            "max_worker_runtime": 3600,
            "n_cores": 2,
            "worker_memory_bytes": 2 * 1024**3,
            "worker_disk_bytes": 10**9,
            "priority": 5,
            "condor_requirements": "HAS_AVX",
            "do_transfer_worker_stdouterr": True,
        },
        "pilot_config": {
            "environment": {
                "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": 30,
                "EWMS_PILOT_KEEP_ALL_TASK_FILES": True,
                "EWMS_PILOT_QUEUE_INCOMING": "someone-elses-queue",
            },
            "input_files": ["/cvmfs/x"],
        },
    }
    directive = {
        "task_image": "icecube/skymap_scanner:3.20.3",
        "task_args": "client --in {{INFILE}}",
        "task_env": {"A": 1},
        "input_queues": ["wf1-in"],
        "output_queues": ["wf1-out"],
    }
    profiles = [
        {"mqid": q, "auth_token": "pw", "broker_type": "rabbitmq", "broker_address": "u@h:5672"}
        for q in ("wf1-in", "wf1-out")
    ]
    answer = {"taskforce": taskforce, "task_directive": directive, "mqprofiles": profiles}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        answer[section][field] = value  # type: ignore[index]
    return Claim.from_answer(answer)


def test_pilot_spec_from_a_claim() -> None:
    spec = pilot_spec(claim(), host_command_image="host", operator_env={"EWMS_PILOT_PREFETCH": "4"})
    env = spec.environment
    assert env["EWMS_PILOT_QUEUE_INCOMING"] == "wf1-in"  # the user cannot point a pilot elsewhere
    assert env["EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN"] == "pw"
    assert env["EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS"] == "u@h:5672"
    assert env["EWMS_PILOT_TASK_IMAGE"] == "icecube/skymap_scanner:3.20.3"
    assert json.loads(env["EWMS_PILOT_TASK_ENV_JSON"]) == {"A": "1"}
    assert env["EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"] == "30"
    assert env["EWMS_PILOT_KEEP_ALL_TASK_FILES"] == "true"
    assert env["EWMS_PILOT_PREFETCH"] == "4"  # the operator's defaults
    assert env["EWMS_PILOT_MAX_RUNTIME"] == str(pilot_runtime(3600)) == "3240"
    assert (spec.n_cores, spec.memory_bytes, spec.disk_bytes, spec.priority) == (2, 2 * 1024**3, 10**9, 5)
    assert (spec.max_runtime, spec.requirements, spec.transfer_stdouterr) == (3600, "HAS_AVX", True)
    assert spec.input_files == ("/cvmfs/x",)
    assert "pw" not in str(spec.redacted_environment())


def test_host_command_image_means_no_container() -> None:
    spec = pilot_spec(claim(task_directive__task_image="host"), host_command_image="host", operator_env={})
    assert spec.environment["EWMS_PILOT_TASK_IMAGE"] == ""
    assert spec.environment["EWMS_PILOT_TASK_ARGS"] == "client --in {{INFILE}}"


def test_pilot_runtime_keeps_a_margin_for_draining() -> None:
    assert pilot_runtime(100) == 90
    assert pilot_runtime(24 * 3600) == 24 * 3600 - 600
    assert pilot_runtime(1) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task_directive__input_queues": ["a", "b"]}, "2 input_queues"),
        ({"task_directive__output_queues": []}, "0 output_queues"),
        ({"task_directive__input_queues": ["unknown"]}, "no queue profile for unknown"),
    ],
)
def test_what_a_pilot_cannot_run_is_a_spec_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        pilot_spec(claim(**change), host_command_image="host", operator_env={})


def test_the_service_refuses_to_start_misconfigured() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMS_")}
    done = subprocess.run(
        [sys.executable, "-m", "ewms_tms"], env={**env, **BASE}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "configuration error: TMS_PILOT_IMAGE is required" in done.stderr  # htcondor is the default backend
