"""From a claimed taskforce to a `PilotSpec`: the pilot's `EWMS_PILOT_*` environment and resources.

Precedence of the environment, lowest first: the operator's `TMS_PILOT_ENV_JSON`, the TMS's
derived defaults (the pilot's own time budget), the user's `pilot_config.environment`,
and last what makes the taskforce what it is — queues, credentials, the task and its init.
A user may tune a pilot but cannot point it at another workflow's queues.

A task image equal to `TMS_HOST_COMMAND_IMAGE` (default `host`) means "no container": the
pilot runs `task_args` as a command where it runs. The WMS requires an image for every task
(as upstream does); this is how a workflow asks for a command task, e.g. in local mode.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from .config import env_value
from .schedulers import PilotSpec

SECRET_VARIABLES = frozenset({"EWMS_PILOT_QUEUE_INCOMING_AUTH_TOKEN", "EWMS_PILOT_QUEUE_OUTGOING_AUTH_TOKEN"})
RUNTIME_MARGIN_MAX = 600  # seconds the pilot keeps for draining before the batch system's limit


class SpecError(ValueError):
    """A taskforce the TMS cannot turn into pilots; the message goes to the WMS as the failure reason."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """What `GET /v1/tms/pending-starter/taskforces` hands out: a taskforce and all it needs."""

    taskforce: dict[str, Any]
    task_directive: dict[str, Any]
    mqprofiles: dict[str, dict[str, Any]] = dataclasses.field(repr=False)  # mqid -> profile (with tokens)

    @property
    def uuid(self) -> str:
        return str(self.taskforce["taskforce_uuid"])

    @property
    def n_workers(self) -> int:
        return int(self.taskforce["n_workers"])

    @property
    def queue_names(self) -> list[str]:
        return [*self.task_directive.get("input_queues", []), *self.task_directive.get("output_queues", [])]

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Claim:
        profiles = {p["mqid"]: p for p in answer.get("mqprofiles") or []}
        return cls(dict(answer["taskforce"]), dict(answer.get("task_directive") or {}), profiles)


def pilot_runtime(max_worker_runtime: int) -> int:
    """The pilot's own budget: a tenth (at most 10 minutes) below the job's limit, to drain in time."""
    margin = min(RUNTIME_MARGIN_MAX, max_worker_runtime // 10)
    return max(1, max_worker_runtime - margin)


def _one_queue(directive: Mapping[str, Any], key: str) -> str:
    queues = directive.get(key) or []
    if len(queues) != 1:
        raise SpecError(f"a pilot reads one input and writes one output queue; the task has {len(queues)} {key}")
    return str(queues[0])


def queue_environment(claim: Claim) -> dict[str, str]:
    """The queue names and how to reach them, from the workflow's queue profiles."""
    env: dict[str, str] = {}
    for direction, key in (("INCOMING", "input_queues"), ("OUTGOING", "output_queues")):
        mqid = _one_queue(claim.task_directive, key)
        profile = claim.mqprofiles.get(mqid)
        if profile is None:
            raise SpecError(f"no queue profile for {mqid}")
        prefix = f"EWMS_PILOT_QUEUE_{direction}"
        env[prefix] = mqid
        env[f"{prefix}_AUTH_TOKEN"] = str(profile.get("auth_token") or "")
        env[f"{prefix}_BROKER_TYPE"] = str(profile.get("broker_type") or "rabbitmq")
        env[f"{prefix}_BROKER_ADDRESS"] = str(profile["broker_address"])
    return env


def _image(image: str | None, host_command_image: str) -> str:
    return "" if not image or image == host_command_image else image


def task_environment(directive: Mapping[str, Any], host_command_image: str) -> dict[str, str]:
    """The task and its optional init step, in the upstream pilot's variables."""
    env = {
        "EWMS_PILOT_TASK_IMAGE": _image(directive.get("task_image"), host_command_image),
        "EWMS_PILOT_TASK_ARGS": str(directive.get("task_args") or ""),
    }
    for prefix, key in (("TASK", "task_env"), ("INIT", "init_env")):
        if directive.get(key):
            env[f"EWMS_PILOT_{prefix}_ENV_JSON"] = json.dumps({k: env_value(v) for k, v in directive[key].items()})
    if directive.get("init_image") or directive.get("init_args"):
        env["EWMS_PILOT_INIT_IMAGE"] = _image(directive.get("init_image"), host_command_image)
        env["EWMS_PILOT_INIT_ARGS"] = str(directive.get("init_args") or "")
    return {k: v for k, v in env.items() if v or k == "EWMS_PILOT_TASK_IMAGE"}


def pilot_spec(claim: Claim, *, host_command_image: str, operator_env: Mapping[str, str]) -> PilotSpec:
    """The spec of the claimed taskforce's pilots; raises `SpecError` for what cannot run."""
    tf, directive = claim.taskforce, claim.task_directive
    if not directive:
        raise SpecError("the WMS sent no task directive with the taskforce")
    worker = tf.get("worker_config") or {}
    pilot_config = tf.get("pilot_config") or {}
    max_runtime = int(worker.get("max_worker_runtime", 24 * 3600))
    user_env = {k: env_value(v) for k, v in (pilot_config.get("environment") or {}).items()}
    environment = {
        **operator_env,
        "EWMS_PILOT_MAX_RUNTIME": str(pilot_runtime(max_runtime)),
        **user_env,
        **task_environment(directive, host_command_image),
        **queue_environment(claim),
    }
    return PilotSpec(
        taskforce_uuid=claim.uuid,
        workflow_id=str(tf["workflow_id"]),
        task_id=str(tf["task_id"]),
        environment=environment,
        secret_names=SECRET_VARIABLES,
        n_cores=int(worker.get("n_cores", 1)),
        memory_bytes=int(worker.get("worker_memory_bytes", 1024**3)),
        disk_bytes=int(worker.get("worker_disk_bytes", 1024**3)),
        max_runtime=max_runtime,
        priority=int(worker.get("priority", 0)),
        requirements=str(worker.get("condor_requirements") or ""),
        transfer_stdouterr=bool(worker.get("do_transfer_worker_stdouterr", False)),
        input_files=tuple(pilot_config.get("input_files") or ()),
    )
