"""From a validated workflow request to the documents the WMS stores (pure functions, no I/O).

Kept apart from the handlers and the database so the rules — ids, queue names, defaults,
sizes, which aliases are public — can be read and unit-tested in one place.
"""

import dataclasses
import re
import secrets
import uuid
from typing import Any

from ewms_config import parse_size, size_problem

from .phases import Phase

BROKER_TYPE = "rabbitmq"
DEFAULT_WORKER_CONFIG: dict[str, Any] = {
    "max_worker_runtime": 24 * 3600,
    "worker_disk": "1G",
    "worker_memory": "1G",
    "n_cores": 1,
    "priority": 0,
    "condor_requirements": "",
    "do_transfer_worker_stdouterr": False,
}
_SLUG_MAX = 48
# one request may not make the WMS declare thousands of quorum queues or write thousands of taskforces (64 tasks
# x 64 locations, 64 x 128 aliases pass the schema): the broker and the database are shared by every workflow
MAX_WORKFLOW_QUEUES = 64
MAX_WORKFLOW_TASKFORCES = 256


def new_id() -> str:
    """A fresh id for a workflow, task directive or taskforce (uuid4 hex, as upstream EWMS)."""
    return uuid.uuid4().hex


def new_broker_password() -> str:
    """A random password for a per-workflow broker user (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def worker_config(requested: dict[str, Any] | None) -> dict[str, Any]:
    """The stored worker config: the request over the defaults, with sizes also in bytes."""
    config = {**DEFAULT_WORKER_CONFIG, **(requested or {})}
    config["worker_disk_bytes"] = parse_size(config["worker_disk"])
    config["worker_memory_bytes"] = parse_size(config["worker_memory"])
    return config


def queue_slug(alias: str) -> str:
    """The alias reduced to what reads well in a queue name: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", alias.lower()).strip("-")
    return slug[:_SLUG_MAX] or "q"


def queue_names(workflow_id: str, aliases: list[str]) -> dict[str, str]:
    """alias -> queue name (mqid): `<workflow_id>-<slug>`, made unique when two aliases slug alike."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for alias in aliases:
        base = f"{workflow_id}-{queue_slug(alias)}"
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        names[alias] = name
    return names


def broker_user_name(workflow_id: str) -> str:
    """The per-workflow broker user."""
    return f"ewms-wf-{workflow_id}"


def all_aliases(tasks: list[dict[str, Any]]) -> list[str]:
    """Every queue alias the tasks use, in first-seen order."""
    seen: dict[str, None] = {}
    for task in tasks:
        for alias in [*task["input_queue_aliases"], *task["output_queue_aliases"]]:
            seen.setdefault(alias, None)
    return list(seen)


def workflow_request_problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) for each rule across fields the schema cannot say; empty when all is well."""
    problems = []
    used = set(all_aliases(body["tasks"]))
    for i, alias in enumerate(body["public_queue_aliases"]):
        if alias not in used:
            problems.append((f"public_queue_aliases[{i}]", f"{alias!r} is not an input or output alias of any task"))
    for t, task in enumerate(body["tasks"]):
        if "environment" in task and "task_env" in task:
            problems.append((f"tasks[{t}]", "give either 'environment' or 'task_env', not both"))
        for size in ("worker_disk", "worker_memory"):
            value = (task.get("worker_config") or {}).get(size)
            if value is not None and (problem := size_problem(value)):
                problems.append((f"tasks[{t}].worker_config.{size}", problem))
        inputs = set(task["input_queue_aliases"])
        for i, alias in enumerate(task["output_queue_aliases"]):
            if alias in inputs:
                problems.append((f"tasks[{t}].output_queue_aliases[{i}]", "is also an input alias of this task"))
    if len(used) > MAX_WORKFLOW_QUEUES:
        problems.append(("tasks", f"name {len(used)} queues; a workflow may have at most {MAX_WORKFLOW_QUEUES}"))
    n_taskforces = sum(len(task["cluster_locations"]) for task in body["tasks"])
    if n_taskforces > MAX_WORKFLOW_TASKFORCES:
        problems.append(
            ("tasks", f"make {n_taskforces} taskforces (a task per location); at most {MAX_WORKFLOW_TASKFORCES}")
        )
    return problems


@dataclasses.dataclass
class WorkflowDocs:
    """Everything one `POST /v1/workflows` creates."""

    workflow: dict[str, Any]
    task_directives: list[dict[str, Any]]
    taskforces: list[dict[str, Any]]
    mqprofiles: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    """How clients reach the broker: the address, and the credentials when they are shared."""

    host_part: str  # HOST:PORT[/VHOST]; profiles say USER@HOST:PORT[/VHOST]
    per_workflow_users: bool
    shared_user: str
    shared_password: str = dataclasses.field(repr=False)


def build_workflow(body: dict[str, Any], owner: str, now: float, broker: BrokerSettings) -> WorkflowDocs:
    """The workflow, its task directives, taskforces (pre-mq-activation) and queue profiles."""
    workflow_id = new_id()
    aliases = all_aliases(body["tasks"])
    names = queue_names(workflow_id, aliases)
    user, password = _credentials(workflow_id, broker)
    workflow = {
        "workflow_id": workflow_id,
        "timestamp": now,
        "priority": body.get("priority", 0),
        "owner": owner,
        "public_queue_aliases": list(body["public_queue_aliases"]),
        "deactivated": None,
        "deactivated_ts": None,
        "mq_state": "pending",
        "mq_activated_ts": None,
        "provision_attempts": 0,
        "provision_next_attempt_ts": None,
        "provision_error": None,
        "queues_deleted_ts": None,
        "dlqs_delete_after_ts": None,
        "broker_user": user if broker.per_workflow_users else None,
    }
    profiles = [
        mqprofile(workflow_id, alias, names[alias], alias in body["public_queue_aliases"], now, user, password, broker)
        for alias in aliases
    ]
    directives, taskforces = [], []
    for task in body["tasks"]:
        directive = task_directive(task, workflow, names, now)
        directives.append(directive)
        for location in task["cluster_locations"]:
            taskforces.append(taskforce(directive, workflow, location, task["n_workers"], task, now))
    return WorkflowDocs(workflow, directives, taskforces, profiles)


def _credentials(workflow_id: str, broker: BrokerSettings) -> tuple[str, str]:
    if broker.per_workflow_users:
        return broker_user_name(workflow_id), new_broker_password()
    return broker.shared_user, broker.shared_password


def mqprofile(
    workflow_id: str,
    alias: str,
    mqid: str,
    is_public: bool,
    now: float,
    user: str,
    password: str,
    broker: BrokerSettings,
) -> dict[str, Any]:
    """One queue's profile, in the shape of upstream EWMS's MQS."""
    return {
        "mqid": mqid,
        "workflow_id": workflow_id,
        "timestamp": now,
        "alias": alias,
        "is_public": is_public,
        "is_activated": False,
        "auth_token": password,
        "broker_type": BROKER_TYPE,
        "broker_address": f"{user}@{broker.host_part}" if user else broker.host_part,
    }


def task_directive(task: dict[str, Any], workflow: dict[str, Any], names: dict[str, str], now: float) -> dict[str, Any]:
    """The stored form of one requested task."""
    return {
        "task_id": new_id(),
        "workflow_id": workflow["workflow_id"],
        "owner": workflow["owner"],
        "timestamp": now,
        "cluster_locations": list(task["cluster_locations"]),
        "task_image": task["task_image"],
        "task_args": task.get("task_args", ""),
        "task_env": dict(task.get("environment", task.get("task_env", {}))),
        "init_image": task.get("init_image"),
        "init_args": task.get("init_args", ""),
        "init_env": dict(task.get("init_env", {})),
        "input_queues": [names[a] for a in task["input_queue_aliases"]],
        "output_queues": [names[a] for a in task["output_queue_aliases"]],
        "input_queue_aliases": list(task["input_queue_aliases"]),
        "output_queue_aliases": list(task["output_queue_aliases"]),
    }


def taskforce(
    directive: dict[str, Any],
    workflow: dict[str, Any],
    location: str,
    n_workers: int,
    task: dict[str, Any],
    now: float,
    phase: Phase = Phase.PRE_MQ_ACTIVATION,
) -> dict[str, Any]:
    """A taskforce: `n_workers` pilots of one task at one cluster location."""
    return {
        "taskforce_uuid": new_id(),
        "task_id": directive["task_id"],
        "workflow_id": workflow["workflow_id"],
        "owner": workflow["owner"],
        "timestamp": now,
        "priority": workflow["priority"],
        "cluster_location": location,
        "schedd": location,
        "collector": None,
        "n_workers": n_workers,
        "worker_config": worker_config(task.get("worker_config")),
        "pilot_config": dict(task.get("pilot_config", {})),
        "phase": str(phase),
        "cluster_id": None,
        "submit_dict": None,
        "submit_description": None,
        "job_event_log_fpath": None,
        "submit_failures": 0,
        "last_submit_error": None,
        "last_condor_rm_error": None,
        "failed_reason": None,
        "claimed_by": None,
        "claim_expires_ts": None,
        "compound_statuses": {},
        "top_task_errors": {},
        "statuses_ts": None,
        "condor_complete_ts": None,
    }
