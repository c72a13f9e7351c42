"""The WMS as skydriver sees it: one workflow per scan, through the WMS's user routes (DESIGN §4.3).

A scan's workflow has two public queues, `to-clients` (the scanner's pixel tasks to the pilots)
and `from-clients` (their results back), and one reconstruction task on every requested cluster
location. The WMS gives one task a single `n_workers` for all of its locations (a taskforce per
location, each with the task's count), so locations asking for different counts get one task each,
grouped by count: the common request (one location, or the same count everywhere) stays one task,
and the whole workflow is still created in one atomic request — adding workers afterwards could
leave a half-sized workflow behind a crash. The tasks share the queues, so every pilot takes from
the same pixel tasks.

The event travels in each task's environment (`skydriver.recos.transport.event_env`), next to
`SKYDRIVER_SCAN_ID`. The WMS can search task directives by it, so `find_workflow` finds a scan's
workflow even when skydriver crashed between the WMS's answer and recording the workflow id, and
`request_workflow` never makes a second one.

Errors come sorted by `ewms_rest.client.call`: `ServiceUnavailable` (try again later) and
`ServiceRefused` (the WMS said no; `status` says how).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from rest_tools.client import RestClient

from ewms_rest.client import ServiceRefused, ServiceUnavailable, call

from .event import Event
from .recos.transport import event_env

LOGGER = logging.getLogger(__name__)
TO_CLIENTS = "to-clients"
FROM_CLIENTS = "from-clients"
ALIASES = (TO_CLIENTS, FROM_CLIENTS)
SCAN_ID_VARIABLE = "SKYDRIVER_SCAN_ID"
RECO_ALGO_VARIABLE = "SKYDRIVER_RECO_ALGO"
HOST_IMAGE = "host"  # the TMS's TMS_HOST_COMMAND_IMAGE: no container, the pilot runs task_args on its host
RECO_MODULE = "skydriver.recos.client"
RECO_CALLABLE = f"{RECO_MODULE}:run"
PILOT_IDLE_FLOOR = 300  # seconds a pilot waits for a task before it leaves (upstream SkyDriver's value)
PILOT_MAX_CONSECUTIVE_FAILURES = 10  # pixels in a row failing on their first delivery: a broken host (see pilot_env)
ENDED_PHASES = frozenset({"condor-complete", "failed"})
Doc = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RecoTask:
    """How pilots run the reconstruction: `SKYDRIVER_RECO_IMAGE` and `SKYDRIVER_RECO_RUNNER`.

    `image` "host" runs `python -m skydriver.recos.client` with this machine's interpreter (local
    mode: pilots on the same host); any other value is an image repository, tagged with the scan's
    `docker_tag`. `runner` "callable" runs `skydriver.recos.client:run` inside the pilot instead —
    no process per pixel — which needs the reco code in the pilot's own environment, so no image.
    """

    image: str = HOST_IMAGE
    runner: str = "command"
    python: str = sys.executable

    def task_image(self, docker_tag: str) -> str:
        if self.runner == "callable" or self.image == HOST_IMAGE:
            return HOST_IMAGE
        return f"{self.image}:{docker_tag}"

    def task_args(self) -> str:
        """The command per task; empty for a callable (the pilot refuses both at once)."""
        if self.runner == "callable":
            return ""
        python = shlex.quote(self.python) if self.image == HOST_IMAGE else "python"
        return f"{python} -m {RECO_MODULE} --in {{{{INFILE}}}} --out {{{{OUTFILE}}}}"

    def pilot_env(self) -> dict[str, str]:
        return {"EWMS_PILOT_TASK_CALLABLE": RECO_CALLABLE} if self.runner == "callable" else {}


@dataclasses.dataclass(frozen=True)
class WorkflowSpec:
    """What a scan asks of the WMS (sizes in bytes, times in seconds)."""

    scan_id: str
    reco_algo: str
    docker_tag: str
    event: Event = dataclasses.field(repr=False)
    request_clusters: Mapping[str, int]
    worker_memory_bytes: int
    worker_disk_bytes: int
    max_pixel_reco_time: int
    max_worker_runtime: int
    priority: int = 0

    def body(self, reco: RecoTask) -> Doc:
        """The `POST /v1/workflows` body."""
        environment = {**event_env(self.event), SCAN_ID_VARIABLE: self.scan_id, RECO_ALGO_VARIABLE: self.reco_algo}
        tasks = [self._task(reco, locations, n, environment) for n, locations in self._locations_by_count()]
        return {"public_queue_aliases": list(ALIASES), "priority": self.priority, "tasks": tasks}

    def _locations_by_count(self) -> list[tuple[int, list[str]]]:
        """Locations grouped by their `n_workers`, in request order: one task per group."""
        groups: dict[int, list[str]] = {}
        for location, n_workers in self.request_clusters.items():
            groups.setdefault(n_workers, []).append(location)
        return list(groups.items())

    def _task(self, reco: RecoTask, locations: list[str], n_workers: int, environment: Doc) -> Doc:
        task: Doc = {
            "cluster_locations": locations,
            "input_queue_aliases": [TO_CLIENTS],
            "output_queue_aliases": [FROM_CLIENTS],
            "task_image": reco.task_image(self.docker_tag),
            "environment": environment,
            "n_workers": n_workers,
            "worker_config": {
                "max_worker_runtime": self.max_worker_runtime,
                "worker_memory": self.worker_memory_bytes,
                "worker_disk": self.worker_disk_bytes,
                "n_cores": 1,
                "priority": self.priority,
            },
            "pilot_config": {"environment": self.pilot_env(reco)},
        }
        if args := reco.task_args():
            task["task_args"] = args
        return task

    def pilot_env(self, reco: RecoTask) -> Doc:
        """The pilots' settings for a scan.

        A pilot may sit idle while the scanner waits for a stage's slowest pixel (up to
        `max_pixel_reco_time`, twice with one redelivery) before it publishes the next stage, so the
        idle limits are at least that. A failed pixel must not end its pilot (the broker's delivery
        limit dead-letters a pixel that keeps failing; the pilot's consecutive-failure limit still
        retires a broken host). That limit counts pixels failing on their first delivery: a scan
        hands each pilot hundreds of them, and a reconstruction that fails one pixel in five at
        random (`crash_dummy` at 0.2) would end a run of 5 in about one pilot in ten, a run of
        `PILOT_MAX_CONSECUTIVE_FAILURES` practically never; a broken host fails every pixel and
        still leaves after that many.
        """
        idle = max(PILOT_IDLE_FLOOR, 2 * self.max_pixel_reco_time)
        return {
            "EWMS_PILOT_TASK_TIMEOUT": self.max_pixel_reco_time,
            "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": idle,
            "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": idle,
            "EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR": False,
            "EWMS_PILOT_MAX_CONSECUTIVE_FAILURES": PILOT_MAX_CONSECUTIVE_FAILURES,
            "EWMS_PILOT_INFILE_EXT": ".json",
            "EWMS_PILOT_OUTFILE_EXT": ".json",
            **reco.pilot_env(),
        }


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A scan's workflow: its id and its public queues by alias (`mqprofiles` holds credentials)."""

    workflow_id: str
    mqprofiles: dict[str, Doc] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class WorkflowStatus:
    """How a workflow is doing.

    `pilots` sums the compound statuses of each location's taskforces (`{"running": 40, "idle": 10}`);
    `alive` is false once the workflow is deactivated or none of its taskforces can run pilots any more;
    `phases` counts taskforces per phase, `failed_reasons` says why failed ones failed.
    """

    workflow_id: str
    deactivated: str | None
    alive: bool
    pilots: dict[str, dict[str, int]]
    phases: dict[str, int]
    failed_reasons: list[str]


def _activated(profiles: Mapping[str, Doc]) -> bool:
    return all(alias in profiles and profiles[alias].get("is_activated") for alias in ALIASES)


def _count(value: int | Mapping[str, int]) -> int:
    """A compound status is `n` or `{substate: n}` (upstream's form): the jobs it counts."""
    return value if isinstance(value, int) else sum(value.values())


def _pilots(taskforces: list[Doc]) -> dict[str, dict[str, int]]:
    pilots: dict[str, dict[str, int]] = {}
    for taskforce in taskforces:
        states = pilots.setdefault(taskforce["cluster_location"], {})
        for state, value in (taskforce.get("compound_statuses") or {}).items():
            states[state] = states.get(state, 0) + _count(value)
    return pilots


class EWMSClient:
    """The WMS's user routes for skydriver's workflows (its token's subject owns them)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        reco_image: str = HOST_IMAGE,
        reco_runner: str = "command",
        poll_interval: float = 0.5,
    ) -> None:
        logger = logging.getLogger("skydriver.ewms.rest")
        self.rest = RestClient(url, token=token, timeout=timeout, retries=0, logger=logger)  # callers back off
        self.reco = RecoTask(reco_image, reco_runner)
        self.poll_interval = poll_interval

    async def _call(self, method: str, path: str, body: Doc | None = None) -> Any:
        return await call(self.rest, method, path, body, service="the WMS")

    async def _query(self, kind: str, query: Doc, projection: list[str]) -> list[Doc]:
        """Every match of a `POST /v1/query/<kind>` search, all pages."""
        found: list[Doc] = []
        after: str | None = None
        while True:
            body: Doc = {"query": query, "projection": projection}
            if after:
                body["after"] = after
            answer = await self._call("POST", f"/v1/query/{kind}", body)
            found.extend(answer[kind.replace("-", "_")])
            after = answer.get("next_after")
            if not after:
                return found

    async def request_workflow(self, spec: WorkflowSpec) -> Workflow:
        """The scan's workflow: the one the WMS already has for it, else a new one."""
        existing = await self.find_workflow(spec.scan_id)
        if existing is not None:
            return existing
        body = await asyncio.to_thread(spec.body, self.reco)  # compressing the event takes a while: not on the loop
        answer = await self._call("POST", "/v1/workflows", body)
        workflow = Workflow(answer["workflow"]["workflow_id"], {p["alias"]: p for p in answer["mqprofiles"]})
        LOGGER.info("scan %s: workflow %s requested", spec.scan_id, workflow.workflow_id)
        return workflow

    async def find_workflow(self, scan_id: str) -> Workflow | None:
        """The workflow whose task carries this scan's id, or None (the oldest, should there be several)."""
        directives = await self._query("task-directives", {f"task_env.{SCAN_ID_VARIABLE}": scan_id}, ["workflow_id"])
        workflow_ids = list(dict.fromkeys(d["workflow_id"] for d in directives))
        if not workflow_ids:
            return None
        if len(workflow_ids) > 1:
            LOGGER.warning("scan %s has %d workflows %s; using the first", scan_id, len(workflow_ids), workflow_ids)
        return Workflow(workflow_ids[0], await self.mqprofiles(workflow_ids[0]))

    async def mqprofiles(self, workflow_id: str) -> dict[str, Doc]:
        """The workflow's public queue profiles by alias, credentials included."""
        answer = await self._call("GET", f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public")
        return {p["alias"]: p for p in answer["mqprofiles"]}

    async def wait_activated(self, workflow_id: str, within: float) -> dict[str, Doc]:
        """The profiles once both queues exist on the broker; `ServiceUnavailable` if not `within` seconds.

        The WMS normally answers `POST /v1/workflows` with the queues activated; when the broker was
        not ready it keeps retrying on its own, and this polls its MQS route as upstream clients do.
        """
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + within, self.poll_interval
        while not _activated(profiles := await self.mqprofiles(workflow_id)):
            if loop.time() + delay > deadline:
                raise ServiceUnavailable(f"the queues of workflow {workflow_id} were not activated within {within:g} s")
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)
        return profiles

    async def abort(self, workflow_id: str) -> None:
        """Stop the workflow's pilots (repeating it, or after `finished`, changes nothing)."""
        await self._call("POST", f"/v1/workflows/{workflow_id}/actions/abort", {})

    async def finished(self, workflow_id: str) -> None:
        """The scan is done: the workflow's pilots go (repeating it, or after `abort`, changes nothing)."""
        await self._call("POST", f"/v1/workflows/{workflow_id}/actions/finished", {})

    async def add_workers(self, workflow_id: str, location: str, n_workers: int) -> str:
        """A new taskforce of `n_workers` pilots at `location` (on the task already there, if any); its uuid.

        `ServiceRefused` 422 once the workflow is deactivated, 404 for a workflow that is not ours.
        """
        directives = await self._query(
            "task-directives", {"workflow_id": workflow_id}, ["task_id", "cluster_locations"]
        )
        if not directives:
            raise ServiceRefused(404, f"no workflow {workflow_id}")
        task = next((d for d in directives if location in d["cluster_locations"]), directives[0])
        path = f"/v1/task-directives/{task['task_id']}/actions/add-workers"
        taskforce = await self._call("POST", path, {"cluster_location": location, "n_workers": n_workers})
        return str(taskforce["taskforce_uuid"])

    async def status(self, workflow_id: str) -> WorkflowStatus:
        workflow = await self._call("GET", f"/v1/workflows/{workflow_id}")
        fields = ["cluster_location", "phase", "compound_statuses", "failed_reason"]
        taskforces = await self._query("taskforces", {"workflow_id": workflow_id}, fields)
        phases: dict[str, int] = {}
        for taskforce in taskforces:
            phases[taskforce["phase"]] = phases.get(taskforce["phase"], 0) + 1
        running = any(tf["phase"] not in ENDED_PHASES for tf in taskforces)
        return WorkflowStatus(
            workflow_id=workflow_id,
            deactivated=workflow["deactivated"],
            alive=workflow["deactivated"] is None and running,
            pilots=_pilots(taskforces),
            phases=phases,
            failed_reasons=[tf["failed_reason"] for tf in taskforces if tf.get("failed_reason")],
        )

    async def aclose(self) -> None:
        self.rest.close()
