"""The scanner (`python -m skydriver.scanner`) against a real skydriver and real pilots, without a WMS.

skydriver runs in-process with its loops off: `POST /scan` stores the request and the event, and the
test plays the launcher — it declares the scan's two queues (and the task queue's dead-letter policy)
by hand with ewms_mq and starts the scanner with the `SKYSCAN_*` environment skydriver would give it.
Pilots (`python -m ewms_pilot`, the reco client as their in-process callable) work the queues.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import ewms_mq
from skydriver.event import Event
from skydriver.recos.dummy import Dummy
from skydriver.recos.transport import event_env
from tests.integration.skydriver.conftest import EVENT, SkyDriverUnderTest, scan_body, token

PROCESS_LIMIT = 180.0  # a safety net against a hung process, not a timing assertion


class Process:
    """A child process whose stderr is read line by line as it comes; its stdout is kept."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        assert proc.stdout is not None
        self._stdout = asyncio.create_task(proc.stdout.read())

    @classmethod
    async def start(cls, module: str, env: dict[str, str]) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_line(self, needle: str) -> None:
        async with asyncio.timeout(PROCESS_LIMIT), self._changed:
            while not any(needle in line for line in self.lines):
                assert not self._reader.done(), f"exited without logging {needle!r}:\n" + self.log
                await self._changed.wait()

    async def finish(self) -> int:
        async with asyncio.timeout(PROCESS_LIMIT):
            code = await self.proc.wait()
            await self._reader
        return code

    async def summary(self) -> dict[str, Any]:
        """A pilot's JSON summary: the last line of its stdout."""
        summary: dict[str, Any] = json.loads((await self._stdout).decode().strip().splitlines()[-1])
        return summary

    @property
    def log(self) -> str:
        return "\n".join(self.lines[-60:])


StartProcess = Callable[[str, dict[str, str]], Awaitable[Process]]
MakeSetup = Callable[..., Awaitable["Setup"]]


@pytest.fixture
async def processes() -> AsyncIterator[StartProcess]:
    """`await processes(module, env)`; whatever still runs at teardown is killed."""
    started: list[Process] = []

    async def start(module: str, env: dict[str, str]) -> Process:
        process = await Process.start(module, env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.returncode is None:
            process.proc.kill()
            await process.proc.wait()


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[ewms_mq.RabbitMQBroker]:
    async with await ewms_mq.connect(amqp_url) as b:
        yield b


class Setup:
    """One scan at skydriver, its queues on the broker, and the environments of its scanner and pilots."""

    def __init__(self, sd: SkyDriverUnderTest, scan_id: str, queues: dict[str, str], amqp_url: str) -> None:
        self.sd = sd
        self.scan_id = scan_id
        self.queues = queues
        self.amqp_url = amqp_url

    def scanner_env(self) -> dict[str, str]:
        profiles = {
            alias: {"mqid": queue, "broker_type": "rabbitmq", "broker_address": self.amqp_url, "auth_token": ""}
            for alias, queue in self.queues.items()
        }
        return _clean_env() | {
            "SKYSCAN_SCAN_ID": self.scan_id,
            "SKYSCAN_SKYDRIVER_URL": self.sd.url,
            "SKYSCAN_SKYDRIVER_TOKEN": token("system", sub="scanner", scan_id=self.scan_id),
            "SKYSCAN_MQ_PROFILES": json.dumps(profiles),
            "SKYSCAN_PROGRESS_INTERVAL": "0.5",
            "SKYSCAN_RESULT_INTERVAL": "1",
            "SKYSCAN_LOG_FORMAT": "text",
        }

    def pilot_env(self, tmp: str) -> dict[str, str]:
        return _clean_env() | {
            "EWMS_PILOT_QUEUE_INCOMING": self.queues["to-clients"],
            "EWMS_PILOT_QUEUE_OUTGOING": self.queues["from-clients"],
            "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": self.amqp_url,
            "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": self.amqp_url,
            "EWMS_PILOT_TASK_CALLABLE": "skydriver.recos.client:run",
            "EWMS_PILOT_TASK_ENV_JSON": json.dumps(event_env(Event.from_dict(EVENT))),
            "EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST": tmp,
            "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": str(PROCESS_LIMIT),  # the test stops it
            "EWMS_PILOT_STOP_LISTENING_ON_TASK_ERROR": "false",
            "EWMS_PILOT_MAX_CONSECUTIVE_FAILURES": "0",
        }


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("EWMS_PILOT_", "SKYSCAN_", "SKYDRIVER_"))}


@pytest.fixture
def make_setup(
    skydriver_factory: Callable[..., Awaitable[SkyDriverUnderTest]],
    broker: ewms_mq.RabbitMQBroker,
    queue_factory: Callable[..., str],
    management_url: str,
    amqp_url: str,
) -> MakeSetup:
    async def make(max_deliveries: int = 3, **request: Any) -> Setup:
        sd = await skydriver_factory()
        manifest = await sd.post_scan(scan_body(**request))
        queues = {"to-clients": queue_factory("to-clients"), "from-clients": queue_factory("from-clients")}
        for queue in queues.values():
            await broker.declare_queue(queue)
        api = ewms_mq.ManagementAPI.for_broker(broker.address, management_url)
        await ewms_mq.apply_dlq_policy(api, queues["to-clients"], max_deliveries=max_deliveries)
        return Setup(sd, manifest["scan_id"], queues, amqp_url)

    return make


async def _scan_with_pilot(setup: Setup, processes: StartProcess, tmp: str) -> dict[str, Any]:
    """Run the scanner and one pilot until the scanner exits, then stop the pilot; the pilot's summary."""
    scanner = await processes("skydriver.scanner", setup.scanner_env())
    pilot = await processes("ewms_pilot", setup.pilot_env(tmp))
    code = await scanner.finish()
    pilot.proc.send_signal(signal.SIGTERM)
    await pilot.finish()
    assert code == 0, scanner.log
    return await pilot.summary()


async def _final(setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = await setup.sd.ok(setup.sd.user.get(f"/scan/{setup.scan_id}/manifest"))
    result = await setup.sd.ok(setup.sd.user.get(f"/scan/{setup.scan_id}/result"))
    return manifest, result


async def test_a_scan_runs_to_its_final_skymap(make_setup: MakeSetup, processes: StartProcess, tmp_path: Path) -> None:
    setup = await make_setup(nsides={"8": 0, "32": 2})
    pilot = await _scan_with_pilot(setup, processes, str(tmp_path))
    manifest, result = await _final(setup)
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY" and manifest["complete"]
    assert manifest["progress"]["tasks_done"] == manifest["progress"]["tasks_expected"] == pilot["events_done"]
    assert result["is_final"] and result["summary"]["dead_tasks"] == []
    sky = result["skyscan_result"]
    assert len(sky["nside-8"]["data"]) == 768 and sky["nside-32"]["data"]
    best = result["summary"]["best_fit"]
    ra, dec = Dummy(Event.from_dict(EVENT)).minimum
    assert best["nside"] == 32 and abs(best["ra"] - ra) < 0.05 and abs(best["dec"] - dec) < 0.05


async def test_dead_lettered_tasks_leave_their_pixels_out(
    make_setup: MakeSetup, processes: StartProcess, tmp_path: Path
) -> None:
    options = {"failure_rate": 0.2, "random_seed": 1}
    setup = await make_setup(max_deliveries=2, reco_algo="crash_dummy", reco_options=options)
    await _scan_with_pilot(setup, processes, str(tmp_path))
    manifest, result = await _final(setup)
    assert manifest["scan_state"] == "SCAN_FINISHED__PARTIAL"
    dead = {(t["nside"], t["pixel"]) for t in manifest["dead_tasks"]}
    assert dead and dead == {(t["nside"], t["pixel"]) for t in result["summary"]["dead_tasks"]}
    assert dead == {(p["nside"], p["pixel"]) for p in result["summary"]["missing_pixels"]}  # one seed per pixel
    rows = {row[0] for row in result["skyscan_result"]["nside-8"]["data"]}
    assert not rows & {pixel for _, pixel in dead} and len(rows) + len(dead) == 768


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)])
async def test_a_successor_takes_over_without_sending_tasks_twice(
    stop: signal.Signals, exit_code: int, make_setup: MakeSetup, processes: StartProcess, tmp_path: Path
) -> None:
    """The first scanner stops (cleanly or not) with its tasks queued; the pilots work while no scanner runs."""
    setup = await make_setup()
    first = await processes("skydriver.scanner", setup.scanner_env())
    await first.wait_for_line("published 768 tasks")
    first.proc.send_signal(stop)
    assert await first.finish() == exit_code, first.log
    lone = await processes("ewms_pilot", setup.pilot_env(str(tmp_path)) | {"EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "2"})
    assert await lone.finish() == 0, lone.log  # the results wait in the queue for the successor
    assert (await lone.summary())["events_done"] == 768
    pilot = await _scan_with_pilot(setup, processes, str(tmp_path))
    assert pilot["events_received"] == 0  # nothing was sent again
    manifest, result = await _final(setup)
    assert manifest["scan_state"] == "SCAN_FINISHED_SUCCESSFULLY"
    assert len(result["skyscan_result"]["nside-8"]["data"]) == 768
