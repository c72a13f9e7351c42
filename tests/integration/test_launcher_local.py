"""The local launcher with real child processes.

A tiny Python program stands in for the scanner (the launcher takes the command as a parameter),
so these tests need nothing of the scanner's own code. The stand-in reports the environment it got
through a FIFO: the test's read returns exactly when the child has started, with no polling.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skydriver.launchers import LauncherError, ScannerInstance
from skydriver.launchers.local import LOG_FILE, PID_FILE, LocalLauncher, ProcessIdentity, identify, is_running
from tests.testsupport import wait_gone

TOKEN = "scanner-token-for-the-child-only"
REPORT = "import json, os; f = open(os.environ['TEST_FIFO'], 'w'); f.write(json.dumps(dict(os.environ))); f.close()"
PATIENT = f"import signal; print('scanner up', flush=True); {REPORT}; signal.pause()"  # logged before it reports
STUBBORN = f"import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); {REPORT}; signal.pause()"
SAFETY = 60.0  # a safety net against a child that never starts, not a timing assertion


def command(program: str) -> tuple[str, ...]:
    return (sys.executable, "-c", program)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "report.fifo"
    os.mkfifo(path)
    return path


def instance(fifo: Path, attempt: int = 0) -> ScannerInstance:
    env = {"SKYSCAN_SCAN_ID": "s1", "SKYSCAN_SKYDRIVER_TOKEN": TOKEN, "TEST_FIFO": str(fifo)}
    return ScannerInstance(scan_id=f"scan{uuid.uuid4().hex[:8]}", env=env, attempt=attempt)


async def child_env(fifo: Path) -> dict[str, str]:
    """What the started child reports (returns once it has opened the FIFO and written)."""
    report: dict[str, str] = await asyncio.wait_for(asyncio.to_thread(lambda: json.loads(fifo.read_text())), SAFETY)
    return report


@pytest.fixture
async def launchers(tmp_path: Path) -> AsyncIterator[list[LocalLauncher]]:
    """Launchers made by a test; every scanner they started is stopped afterwards."""
    made: list[LocalLauncher] = []
    yield made
    for launcher in made:
        for entry in launcher.state_dir.iterdir() if launcher.state_dir.is_dir() else []:
            launcher.kill_grace = 0.1
            await launcher.stop(entry.name)
        await launcher.aclose()


def make(launchers: list[LocalLauncher], state_dir: Path, program: str, kill_grace: float = 30.0) -> LocalLauncher:
    launcher = LocalLauncher(state_dir, command=command(program), kill_grace=kill_grace)
    launchers.append(launcher)
    return launcher


async def test_start_runs_the_scanner_in_its_own_session_with_its_env(
    tmp_path: Path, fifo: Path, launchers: list[LocalLauncher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYDRIVER_AUTH_SECRET", "skydrivers-own-secret")
    launcher = make(launchers, tmp_path / "state", PATIENT)
    handle = await launcher.start(instance(fifo))
    env = await child_env(fifo)
    assert env["SKYSCAN_SKYDRIVER_TOKEN"] == TOKEN
    assert "SKYDRIVER_AUTH_SECRET" not in env  # skydriver's own settings stay with skydriver
    identity = launcher.identity(handle)
    assert identity is not None and is_running(identity)
    assert os.getsid(identity.pid) == identity.pid  # its own session: our signals do not reach it
    assert await launcher.alive(handle)
    directory = launcher.directory(handle)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / LOG_FILE).stat().st_mode) == 0o600
    assert TOKEN not in (directory / PID_FILE).read_text()


async def test_stop_ends_it_and_is_idempotent(tmp_path: Path, fifo: Path, launchers: list[LocalLauncher]) -> None:
    launcher = make(launchers, tmp_path / "state", PATIENT)
    handle = await launcher.start(instance(fifo))
    await child_env(fifo)
    identity = launcher.identity(handle)
    assert identity is not None
    await launcher.stop(handle)
    assert wait_gone(identity.pid, 0)
    assert not await launcher.alive(handle)
    await launcher.stop(handle)
    assert "scanner up" in launcher.log_path(handle).read_text()


async def test_a_scanner_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, fifo: Path, launchers: list[LocalLauncher]
) -> None:
    launcher = make(launchers, tmp_path / "state", STUBBORN, kill_grace=0.2)
    handle = await launcher.start(instance(fifo))
    await child_env(fifo)
    await launcher.stop(handle)
    assert not await launcher.alive(handle)


async def test_a_repeated_start_finds_the_running_scanner(
    tmp_path: Path, fifo: Path, launchers: list[LocalLauncher]
) -> None:
    launcher = make(launchers, tmp_path / "state", PATIENT)
    inst = instance(fifo)
    handle = await launcher.start(inst)
    await child_env(fifo)
    first = launcher.identity(handle)
    assert await launcher.start(inst) == handle
    assert launcher.identity(handle) == first
    restarted = await launcher.start(ScannerInstance(inst.scan_id, inst.env, attempt=1))
    assert restarted == f"{inst.scan_id}-r1"
    await child_env(fifo)
    assert launcher.identity(restarted) != first


async def test_a_restarted_skydriver_finds_and_stops_its_scanner(
    tmp_path: Path, fifo: Path, launchers: list[LocalLauncher]
) -> None:
    handle = await make(launchers, tmp_path / "state", PATIENT).start(instance(fifo))
    await child_env(fifo)
    again = make(launchers, tmp_path / "state", PATIENT)  # knows nothing but the state dir and the handle
    assert await again.alive(handle)
    await again.stop(handle)
    assert not await again.alive(handle)


async def test_a_scanner_that_ended_is_not_alive(tmp_path: Path, launchers: list[LocalLauncher]) -> None:
    launcher = make(launchers, tmp_path / "state", "raise SystemExit(3)")
    handle = await launcher.start(ScannerInstance(scan_id="quick", env={}))
    identity = launcher.identity(handle)
    assert identity is not None
    assert wait_gone(identity.pid)
    assert not await launcher.alive(handle)
    await launcher.stop(handle)


async def test_a_reused_pid_is_never_taken_for_the_scanner(tmp_path: Path, launchers: list[LocalLauncher]) -> None:
    launcher = make(launchers, tmp_path / "state", PATIENT)
    me = identify(os.getpid())
    assert me is not None
    directory = tmp_path / "state" / "reused"
    directory.mkdir(parents=True)
    (directory / PID_FILE).write_text(str(ProcessIdentity(me.pid, me.start_time + 1)))
    assert not await launcher.alive("reused")
    await launcher.stop("reused")  # must not signal this process: the test would die here


async def test_handles_cannot_leave_the_state_dir(tmp_path: Path, launchers: list[LocalLauncher]) -> None:
    launcher = make(launchers, tmp_path / "state", PATIENT)
    for handle in ("../elsewhere", "a/b", ""):
        with pytest.raises(LauncherError):
            await launcher.alive(handle)
    assert not await launcher.alive("never-started")
