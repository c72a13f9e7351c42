"""The whole system as a user runs it locally: WMS, one TMS (local pilots) and skydriver as processes.

It reuses local mode's own launcher (`skydriver.cli.local_services.Launch`, the one `skydriver
local-scan` uses: fresh secrets, free ports, databases of its own) under its supervisor, so the
bench measures exactly what a user gets. The broker and MongoDB are the dev services. A scan is
POSTed to skydriver's REST API with a user token and followed through it; pilots and the scanner
are found through /proc by the run's marker in their environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from common import (
    AMQP_URL,
    MANAGEMENT_URL,
    MONGODB_URL,
    CpuMeter,
    environ_has,
    pids_matching,
    say,
    shared_service_pids,
)
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from rest_tools.client import RestClient

from ewms_rest.client import RestError, call
from skydriver.cli.deployment import MARKER_VARIABLE
from skydriver.cli.local_services import WITHHELD_PREFIXES, Backends, Launch, LocalSystem
from skydriver.cli.supervisor import Supervisor
from skydriver.event.model import Event

LOCATION = "local"
GRACE = 5.0
POLL = 0.2  # how often a scan's manifest is read while waiting for it to complete
SCAN_GUARD = 900.0  # a safety net against a hung scan, not a figure
# "2026-11-27 10:24:00,123 INFO [ewms_pilot.pilot] event 3f2c... done in 0.008s (published)"
PILOT_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ \[ewms_pilot\.pilot\] event (\S+) "
    r"(?:done in ([0-9.]+)s|received( \(redelivered\))?)"
)


class BenchLaunch(Launch):
    """Local mode's launch, with extra environment for the TMS (e.g. the pilots' log level)."""

    def __init__(self, *args: Any, tms_extra: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tms_extra = tms_extra or {}

    def tms_env(self, wms_url: str) -> dict[str, str]:
        return {**super().tms_env(wms_url), **self.tms_extra}


@dataclasses.dataclass
class PilotEvent:
    wall: float  # unix seconds (the pilot's log clock)
    event_id: str
    kind: str  # "received" | "redelivered" | "done"
    runtime: float = 0.0


@dataclasses.dataclass
class ScanRun:
    scan_id: str
    posted: float  # unix seconds
    completed: float
    manifest: dict[str, Any]
    pilot_logs: dict[str, list[PilotEvent]]  # job dir -> events
    summaries: list[dict[str, Any]]
    cpu: dict[str, float]
    startup: dict[str, float]  # milestone -> seconds after the POST (see `startup_milestones`)

    @property
    def seconds(self) -> float:
        return self.completed - self.posted

    def done_times(self) -> list[float]:
        return sorted(e.wall for events in self.pilot_logs.values() for e in events if e.kind == "done")

    def task_seconds(self) -> float:
        return sum(e.runtime for events in self.pilot_logs.values() for e in events if e.kind == "done")


class BenchSystem:
    """`async with BenchSystem(...) as system:` — the services up; down (and their queues gone) after."""

    def __init__(self, name: str, *, pilot_log_level: str = "INFO") -> None:
        self.name = name
        self.home = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.run_id = uuid.uuid4().hex[:12]
        self.supervisor = Supervisor(self.home / "logs", self.run_id, WITHHELD_PREFIXES)
        self.backends = Backends(amqp_url=AMQP_URL, mongodb_url=MONGODB_URL, management_url=MANAGEMENT_URL)
        pilot_env = {"EWMS_PILOT_CL_LOG": pilot_log_level}
        self.launch = BenchLaunch(
            self.home, self.run_id, self.backends, workers=2, reco_runner="callable", grace=GRACE,
            tms_extra={"TMS_PILOT_ENV_JSON": json.dumps(pilot_env)},
        )  # fmt: skip
        self.local: LocalSystem | None = None
        self._rest: RestClient | None = None
        self.workflows: list[str] = []

    @property
    def skydriver_database(self) -> str:
        return f"skydriver_local_{self.run_id}"

    async def __aenter__(self) -> BenchSystem:
        started = time.monotonic()
        try:
            self.local = await self.launch.start(self.supervisor)
        except BaseException:
            self.supervisor.stop_all(GRACE)
            raise
        self._rest = RestClient(self.local.skydriver_url, token=self.token, timeout=30, retries=0)
        say(f"{self.name}: services up in {time.monotonic() - started:.1f}s (logs in {self.supervisor.log_dir})")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._rest is not None:
            self._rest.close()
        if self.local is not None and self.workflows and not await self.queues_removed(60):
            say(f"{self.name}: the WMS did not remove every workflow's queues within 60s")
        await asyncio.to_thread(self.supervisor.stop_all, GRACE)
        await self.drop_databases()
        if os.environ.get("BENCH_KEEP_LOGS"):
            say(f"{self.name}: logs and state kept in {self.home}")
        else:
            shutil.rmtree(self.home, ignore_errors=True)

    async def drop_databases(self) -> None:
        """The run's own databases (local mode names them after the run): nothing of the bench stays behind."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000)
        try:
            for name in (self.skydriver_database, f"ewms_wms_local_{self.run_id}"):
                await client.drop_database(name)
        except PyMongoError as exc:
            say(f"{self.name}: could not drop the run's databases: {exc}")
        finally:
            await client.close()

    async def queues_removed(self, within: float) -> bool:
        """Until the WMS's janitor has removed the queues of our workflows (it needs the WMS and TMS up)."""
        assert self.local is not None
        body = {"query": {"workflow_id": {"$in": self.workflows}, "mq_state": {"$ne": "dlqs-deleted"}}}
        client = RestClient(self.local.wms_url, token=self.local.wms_admin_token, timeout=10, retries=0)
        try:
            async with asyncio.timeout(within):
                while True:
                    if not (await call(client, "POST", "/v1/query/workflows", body, service="the WMS"))["workflows"]:
                        return True
                    await asyncio.sleep(0.5)
        except (RestError, TimeoutError):
            return False
        finally:
            client.close()

    @property
    def token(self) -> str:
        assert self.local is not None
        return self.local.token_file.read_text().strip()

    @property
    def url(self) -> str:
        assert self.local is not None
        return self.local.skydriver_url

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._rest is not None
        return await call(self._rest, method, path, body, service="skydriver")

    # -- processes ----------------------------------------------------------------------------

    def ours(self, pid: int) -> bool:
        return environ_has(pid, f"{MARKER_VARIABLE}={self.run_id}")

    def pilot_pids(self) -> list[int]:
        return pids_matching(lambda pid, cmd: "-m ewms_pilot" in cmd and "local_job" not in cmd and self.ours(pid))

    def scanner_pids(self) -> list[int]:
        return pids_matching(lambda pid, cmd: "skydriver.scanner" in cmd and self.ours(pid))

    def components(self) -> dict[str, list[int]]:
        """Processes by role, for CPU accounting."""
        children = {c.name: [c.proc.pid] for c in self.supervisor.children}
        return {
            "pilots": self.pilot_pids(),
            "scanner": self.scanner_pids(),
            "skydriver": children.get("skydriver", []),
            "wms": children.get("wms", []),
            "tms (+ pilot supervisors)": children.get("tms", [])
            + pids_matching(lambda pid, cmd: "local_job" in cmd and self.ours(pid)),
            **shared_service_pids(),
        }

    def pilot_dirs(self) -> list[Path]:
        return sorted(p.parent for p in (self.home / "state" / "tms" / "local-jobs").glob("*/*/stderr"))

    # -- scans --------------------------------------------------------------------------------

    def request(self, event: Event, reco: str, nsides: dict[str, int], pilots: int, **more: Any) -> dict[str, Any]:
        return {
            "reco_algo": reco,
            "event_i3live_json": event.to_dict(),
            "nsides": nsides,
            "real_or_simulated_event": "simulated",
            "request_clusters": {LOCATION: pilots},
            "classifiers": {"bench": self.name},
            **more,
        }

    async def post(self, request: dict[str, Any]) -> tuple[str, float]:
        posted = time.time()
        manifest = await self.call("POST", "/scan", request)
        return str(manifest["scan_id"]), posted

    async def manifest(self, scan_id: str) -> dict[str, Any]:
        manifest: dict[str, Any] = await self.call("GET", f"/scan/{scan_id}/manifest", {"include_deleted": "True"})
        return manifest

    async def wait_complete(self, scan_id: str) -> tuple[dict[str, Any], float]:
        """Poll the manifest until the final result is stored; (manifest, unix time it was seen)."""
        deadline = time.monotonic() + SCAN_GUARD
        while True:
            manifest = await self.manifest(scan_id)
            if manifest["complete"]:
                return manifest, time.time()
            state = str(manifest["scan_state"])
            if state.startswith(("FAILED", "STOPPED")):
                raise RuntimeError(f"scan {scan_id} ended {state}: {manifest.get('error')}")
            self.supervisor.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"scan {scan_id} not complete within {SCAN_GUARD:.0f}s ({state})")
            await asyncio.sleep(POLL)

    async def pilots_gone(self, within: float = 120) -> None:
        """Until the scan's pilots and scanner have exited (the TMS stops the pilots of a finished workflow)."""
        deadline = time.monotonic() + within
        while True:
            if not (self.pilot_pids() or self.scanner_pids()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"pilots/scanner of {self.name} still running after {within:.0f}s")
            await asyncio.sleep(0.2)

    async def run_scan(self, request: dict[str, Any]) -> ScanRun:
        """POST, wait for the final result, wait for the pilots to leave; the logs and summaries read.

        CPU seconds per component are counted from the POST to the final result.
        """
        before = set(self.pilot_dirs())
        meter = CpuMeter(self.components)
        meter.start()
        async with sampling(meter):
            scan_id, posted = await self.post(request)
            manifest, completed = await self.wait_complete(scan_id)
        cpu = meter.stop()
        self.workflows.append(str(manifest["ewms_workflow_id"]))
        await self.pilots_gone()
        dirs = [d for d in self.pilot_dirs() if d not in before]
        return ScanRun(
            scan_id=scan_id,
            posted=posted,
            completed=completed,
            manifest=manifest,
            pilot_logs={str(d): read_pilot_log(d / "stderr") for d in dirs},
            summaries=[json.loads((d / "summary.json").read_text()) for d in dirs if (d / "summary.json").exists()],
            cpu=cpu,
            startup=startup_milestones(self.home / "state" / "scanners" / scan_id / "scanner.log", dirs, posted),
        )


def startup_milestones(scanner_log: Path, pilot_dirs: list[Path], posted: float) -> dict[str, float]:
    """Seconds from the POST to each step of a scan's start, from the logs (first pilot to get there).

    The scanner process is launched once the WMS has the workflow's queues; its first log line comes
    after its imports; it then restores and publishes. A pilot process is spawned by the TMS's local
    scheduler when the TMS claims the taskforce; it connects after importing its callable (the reco).
    """
    found: dict[str, float] = {}
    try:
        for line in scanner_log.read_text(errors="replace").splitlines():
            doc = json.loads(line)
            stamp = datetime.datetime.fromisoformat(doc["ts"].replace("Z", "+00:00")).timestamp()
            found.setdefault("scanner running (imports done)", stamp)
            if str(doc.get("msg", "")).startswith("published"):
                found.setdefault("scanner published the first tasks", stamp)
    except (OSError, ValueError, KeyError):
        pass
    for jobdir in pilot_dirs:
        with contextlib.suppress(OSError, ValueError, KeyError):
            for line in (jobdir / "events.jsonl").read_text().splitlines():
                doc = json.loads(line)
                if doc["event"] == "spawned":
                    found["pilot spawned by the TMS"] = min(found.get("pilot spawned by the TMS", 1e300), doc["ts"])
        with contextlib.suppress(OSError):
            for line in (jobdir / "stderr").read_text(errors="replace").splitlines():
                if "[ewms_mq.rabbitmq] connected" in line:
                    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    found["pilot connected (callable imported)"] = min(
                        found.get("pilot connected (callable imported)", 1e300), stamp
                    )
                    break
    return {what: stamp - posted for what, stamp in sorted(found.items(), key=lambda kv: kv[1])}


def read_pilot_log(path: Path) -> list[PilotEvent]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        match = PILOT_LINE.match(line)
        if not match:
            continue
        stamp, event_id, runtime, redelivered = match.groups()
        wall = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, like asctime
        if runtime is not None:
            found.append(PilotEvent(wall, event_id, "done", float(runtime)))
        else:
            found.append(PilotEvent(wall, event_id, "redelivered" if redelivered else "received"))
    return found


async def cpu_sampler(meter: CpuMeter, stop: asyncio.Event, interval: float = 0.5) -> None:
    """Keep a CpuMeter's view of short-lived processes (pilots, scanners) fresh until `stop`."""
    while not stop.is_set():
        await asyncio.to_thread(meter.sample)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@contextlib.asynccontextmanager
async def sampling(meter: CpuMeter) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(cpu_sampler(meter, stop))
    try:
        yield
    finally:
        stop.set()
        await task
