"""The whole system in local mode, for tests that run scans for real and for tests that break it on purpose.

The WMS and skydriver run in the test's process (with their loops, from ``wms_factory`` and
``skydriver_factory``); a TMS with the ``local`` backend is a process of its own whose pilots are processes;
skydriver's ``local`` launcher starts each scanner as a process. Everything talks over a real RabbitMQ and a
MongoDB wire server. Used by ``tests/integration/skydriver/test_skydriver_system.py`` and ``tests/faults/``.

Fixtures (``tests/integration/skydriver/conftest.py`` and ``tests/faults/conftest.py`` offer them; they need
``wms_factory`` and ``skydriver_factory``):

- ``tms_factory`` (function): ``tms_factory(wms, env=None)`` starts a :class:`TMS` process for a fresh cluster
  location; each is stopped after the test and must have exited 0.
- ``system_factory`` (function): ``await system_factory(wms={...}, skydriver={...}, tms_env={...})`` -> a
  :class:`System` (overrides go to the WMS's and skydriver's configurations and the TMS's environment).
- ``system`` (function): ``await system_factory()``.
- ``private_mongo`` (function): a :class:`PrivateMongo`, an ``nx-27017`` of the test's own that it may restart.

Helpers: :func:`stable_port` (a port a restarted service gets back), :func:`expected_skymap` (the skymap an
undisturbed scan makes, computed here with the local executor), :func:`pixels_once` (each pixel once per nside).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ewms_tms.schedulers import JobState
from ewms_tms.schedulers.local import LocalScheduler
from ewms_tms.schedulers.local_job import read_events
from skydriver.event import Event
from skydriver.ewms import TO_CLIENTS
from skydriver.scanner.executor import ScanConfig, run_scan
from skydriver.scanner.result import skymap
from skydriver.scans import PENDING_WORKFLOW
from tests.conftest import _nx_27017_executable, _port_open, _stop_process, _wait_until
from tests.integration.conftest import WMSUnderTest, make_token
from tests.integration.test_tms_local import final_jobs, wait_for

if TYPE_CHECKING:
    from tests.integration.skydriver.conftest import SkyDriverUnderTest

SCAN_GUARD = 240.0  # a safety net against a hung scan, not a timing assertion
PILOTS = 2
WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
SkyDriverFactory = Callable[..., Awaitable["SkyDriverUnderTest"]]
Doc = dict[str, Any]


def stable_port() -> int:
    """A free loopback port below the ephemeral range, so that no outgoing connection takes it meanwhile:
    a service stopped on it can be started on it again."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


# ------------------------------------------------------------------------------------------------- TMS


class TMS:
    """One TMS process with the local backend, for one cluster location; its pilots are processes too."""

    def __init__(self, wms: WMSUnderTest, state_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.location = f"system-{uuid.uuid4().hex[:12]}"
        self.state_dir = state_dir
        self.log = state_dir.parent / f"tms-{self.location}.log"
        environment = {
            **os.environ,
            "TMS_WMS_URL": wms.url,
            "TMS_WMS_TOKEN": make_token("tms", sub=f"tms-{self.location}"),
            "TMS_CLUSTER_LOCATION": self.location,
            "TMS_SCHEDULER": "local",
            "TMS_STATE_DIR": str(state_dir),
            "TMS_STARTER_INTERVAL": "0.2",
            "TMS_WATCHER_INTERVAL": "0.3",
            "TMS_STOPPER_INTERVAL": "0.2",
            "TMS_MAX_BACKOFF": "1",
            "TMS_LOCAL_KILL_GRACE": "5",
            "TMS_LOCAL_STOP_PILOTS_ON_EXIT": "true",
            **(env or {}),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ewms_tms"], env=environment, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    @property
    def jobs(self) -> LocalScheduler:
        return LocalScheduler(self.state_dir / "local-jobs")

    def clusters(self) -> list[int]:
        return sorted(int(p.name) for p in self.jobs.state_dir.glob("[0-9]*"))

    def cluster_taskforces(self) -> dict[int, str]:
        """Each local cluster's taskforce (from the backend's own record of the submission)."""
        return {
            cluster: json.loads((self.jobs.state_dir / str(cluster) / "cluster.json").read_text())["taskforce_uuid"]
            for cluster in self.clusters()
        }

    async def all_pilots_ended(self) -> None:
        for cluster in self.clusters():
            await final_jobs(self.jobs, cluster)

    def pilot_summaries(self) -> list[Doc]:
        """Every pilot's JSON summary (written when it stops; a SIGKILLed pilot writes none)."""
        return [json.loads(p.read_text()) for p in sorted(self.jobs.state_dir.glob("*/*/summary.json"))]

    async def running_pilots(self) -> dict[str, int]:
        """The pilots running now: job id (`cluster.proc`) -> the pilot's pid (not its supervisor's)."""
        running = {}
        for cluster in self.clusters():
            for job in await self.jobs.status(cluster):
                if job.state is not JobState.RUNNING:
                    continue
                jobdir = self.jobs.state_dir.joinpath(*job.job_id.split("."))
                pid = next((e["pilot_pid"] for e in read_events(jobdir) if e["event"] == "execute"), None)
                if pid is not None:
                    running[job.job_id] = int(pid)
        return running

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
async def tms_factory(tmp_path: Path) -> AsyncIterator[Callable[..., TMS]]:
    """`tms_factory(wms, env=None)`: a TMS process (see :class:`TMS`); stopped after the test, exit code 0.

    Stopped from a thread, so that the event loop of the test's in-process WMS goes on answering the
    TMS's last calls meanwhile (blocking it would hold the TMS until its WMS timeout).
    """
    started: list[TMS] = []

    def make(wms: WMSUnderTest, env: Mapping[str, str] | None = None) -> TMS:
        tms = TMS(wms, tmp_path / f"tms-state-{len(started)}", env)
        started.append(tms)
        return tms

    yield make
    for tms in started:
        await asyncio.to_thread(tms.stop)
        assert tms.process.returncode == 0, tms.log_text()[-3000:]


# ------------------------------------------------------------------------------------------------- the system


class System:
    """The WMS, skydriver and a TMS, and what a user does with them."""

    def __init__(self, wms: WMSUnderTest, skydriver: SkyDriverUnderTest, tms: TMS) -> None:
        self.wms = wms
        self.skydriver = skydriver
        self.tms = tms

    def body(self, nsides: dict[str, int], **changes: Any) -> Doc:
        from tests.integration.skydriver.conftest import scan_body  # that conftest offers this module's fixtures

        env = {"SKYSCAN_PROGRESS_INTERVAL": 1}  # progress (and the heartbeat) every second
        return scan_body(nsides=nsides, request_clusters={self.tms.location: PILOTS}, scanner_server_env=env, **changes)

    async def post(self, nsides: dict[str, int], **changes: Any) -> str:
        """POST a scan; its id."""
        return str((await self.skydriver.post_scan(self.body(nsides, **changes)))["scan_id"])

    async def status(self, scan_id: str) -> Doc:
        status: Doc = await self.skydriver.ok(self.skydriver.user.get(f"/scan/{scan_id}/status"))
        return status

    async def manifest(self, scan_id: str) -> Doc:
        manifest: Doc = await self.skydriver.ok(
            self.skydriver.user.get(f"/scan/{scan_id}/manifest", query={"include_deleted": "True"})
        )
        return manifest

    async def complete(self, scan_id: str, guard: float = SCAN_GUARD) -> Doc:
        """What a user's script does: poll the status until the scan is complete, then GET the result."""

        async def done() -> Doc | None:
            status = await self.status(scan_id)
            assert not status["scan_state"].startswith(("FAILED", "STOPPED")), status
            return status if status["scan_complete"] else None

        await wait_for(done, f"scan {scan_id} complete", guard=guard, interval=0.5)
        result: Doc = await self.skydriver.ok(self.skydriver.user.get(f"/scan/{scan_id}/result"))
        return result

    async def checkpoint(self, scan_id: str) -> Doc:
        answer: Doc = await self.skydriver.ok(self.skydriver.system(scan_id).get(f"/scan/{scan_id}/checkpoint"))
        return answer

    async def results_in(self, scan_id: str, at_least: int) -> Doc:
        """The checkpoint once at least `at_least` results are recorded (the scan is well under way)."""

        async def enough() -> Doc | None:
            checkpoint = await self.checkpoint(scan_id)
            return checkpoint if len(checkpoint["results"]) >= at_least else None

        found: Doc = await wait_for(enough, f"{at_least} results of {scan_id} recorded", guard=SCAN_GUARD)
        return found

    async def task_queue(self, scan_id: str) -> str:
        """The broker name of the scan's `to-clients` queue (its pixel tasks), once its workflow exists."""

        async def named() -> str | None:
            workflow_id = (await self.manifest(scan_id))["ewms_workflow_id"]
            if workflow_id == PENDING_WORKFLOW:
                return None
            answer = await self.wms.admin.get(f"/v1/mqs/workflows/{workflow_id}/mq-profiles/public")
            assert answer.status == 200, answer.json
            return next((str(p["mqid"]) for p in answer.json["mqprofiles"] if p["alias"] == TO_CLIENTS), None)

        name: str = await wait_for(named, f"the task queue of {scan_id}", guard=SCAN_GUARD)
        return name

    async def workflow(self, scan_id: str) -> Doc:
        manifest = await self.manifest(scan_id)
        answer = await self.wms.admin.get(f"/v1/workflows/{manifest['ewms_workflow_id']}")
        assert answer.status == 200, answer.json
        workflow: Doc = answer.json
        return workflow

    async def workflows_of(self, scan_id: str) -> list[str]:
        """Every workflow the WMS holds for the scan (its tasks carry the scan's id)."""
        found = await self.wms.admin.post(
            "/v1/query/task-directives",
            {"query": {"task_env.SKYDRIVER_SCAN_ID": scan_id}, "projection": ["workflow_id"]},
        )
        assert found.status == 200, found.json
        return sorted({d["workflow_id"] for d in found.json["task_directives"]})

    async def taskforces(self, workflow_id: str) -> list[Doc]:
        found = await self.wms.admin.post(
            "/v1/query/taskforces",
            {"query": {"workflow_id": workflow_id}, "projection": ["taskforce_uuid", "phase", "cluster_id"]},
        )
        assert found.status == 200, found.json
        taskforces: list[Doc] = found.json["taskforces"]
        return taskforces

    async def workflow_ended(self, scan_id: str, how: str) -> None:
        """The workflow is deactivated `how`, every taskforce complete, and every pilot process gone."""

        async def ended() -> bool:
            workflow = await self.workflow(scan_id)
            phases = {tf["phase"] for tf in await self.taskforces(workflow["workflow_id"])}
            return workflow["deactivated"] == how and phases == {"condor-complete"}

        await wait_for(ended, f"the workflow of {scan_id} {how} with every taskforce complete", guard=SCAN_GUARD)
        await self.tms.all_pilots_ended()


@pytest.fixture
async def system_factory(
    wms_factory: WMSFactory, skydriver_factory: SkyDriverFactory, tms_factory: Callable[..., TMS]
) -> Callable[..., Awaitable[System]]:
    """`await system_factory(wms=None, skydriver=None, tms_env=None)`: a :class:`System` with those overrides."""

    async def make(
        *, wms: Mapping[str, Any] | None = None, skydriver: Mapping[str, Any] | None = None, tms_env: Any = None
    ) -> System:
        wms_settings = {"provision_poll_seconds": 0.2, "janitor_poll_seconds": 0.5, **(wms or {})}
        wms_under_test = await wms_factory(run_loops=True, **wms_settings)
        skydriver_settings = {
            "reco_runner": "callable",
            "starter_interval": 0.2,
            "watchdog_interval": 0.5,
            **(skydriver or {}),
        }
        skydriver_under_test = await skydriver_factory(wms=wms_under_test, run_loops=True, **skydriver_settings)
        return System(wms_under_test, skydriver_under_test, tms_factory(wms_under_test, tms_env))

    return make


@pytest.fixture
async def system(system_factory: Callable[..., Awaitable[System]]) -> System:
    """The whole system on the shared broker and database, pilots running the dummy reco in-process."""
    return await system_factory()


# ------------------------------------------------------------------------------------------------- results


def expected_skymap(nsides: Mapping[str, int], reco_algo: str = "dummy", **reco_options: Any) -> Doc:
    """The skymap an undisturbed scan of the test event makes (the local executor, in this process), as JSON."""
    from tests.integration.skydriver.conftest import EVENT  # that conftest offers this module's fixtures

    event = Event.from_dict(EVENT)
    levels: dict[int | str, int] = {key: value for key, value in nsides.items()}
    scan = run_scan(event, ScanConfig(reco_algo, levels, reco_options=reco_options))
    doc: Doc = json.loads(json.dumps(skymap(scan.best_fits(), event)))
    return doc


async def expected_skymap_async(nsides: Mapping[str, int]) -> Doc:
    return await asyncio.to_thread(expected_skymap, nsides)


def pixels_once(skyscan_result: Mapping[str, Any]) -> dict[str, list[int]]:
    """Each nside's pixel indices, asserting that none appears twice."""
    pixels = {}
    for key, level in skyscan_result.items():
        indices = [int(row[0]) for row in level["data"]]
        assert len(indices) == len(set(indices)), f"{key}: a pixel appears twice"
        pixels[key] = indices
    return pixels


# ------------------------------------------------------------------------------------------------- MongoDB


class PrivateMongo:
    """An ``nx-27017`` of one test's own: its port (kept across restarts) and data directory.

    Started as ``scripts/dev-services`` starts the shared one (its own pid file, logging through stderr).
    ``stop()`` sends SIGTERM, as a service manager would; ``kill()`` SIGKILL.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = stable_port()
        self.data_dir = base / "data"
        self.log = base / "nx-27017.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.executable = _nx_27017_executable()

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.executable,
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--pid-file",
            str(self.base / "nx-27017.pid"),
            "--log-file",
            os.devnull,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        process = self.process
        if not _wait_until(lambda: process.poll() is not None or _port_open(self.port), 30) or process.poll():
            raise RuntimeError(f"nx-27017 did not start on {self.port}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)


@pytest.fixture
def private_mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMongo]:
    """A running :class:`PrivateMongo`; stopped after the test."""
    mongo = PrivateMongo(tmp_path_factory.mktemp("private-mongo"))
    mongo.start()
    yield mongo
    mongo.stop()
