"""The event in the task environment, and the reco client's two entry points (in this process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from skydriver.event import Event, TrackSpec, simulate_track
from skydriver.recos import PixelTask, run_pixel_task, transport
from skydriver.recos import client as reco_client
from skydriver.recos.transport import EventTransportError, event_env, event_from_env


@pytest.fixture(scope="module")
def event() -> Event:
    return simulate_track(TrackSpec(ra=2.0, dec=0.1, energy_gev=5000.0), 11)


@pytest.fixture
def fresh_client() -> Iterator[None]:
    """The client caches the event per process; each test starts without it."""
    reco_client._event.cache_clear()
    yield
    reco_client._event.cache_clear()


@pytest.fixture
def event_in_env(event: Event, monkeypatch: pytest.MonkeyPatch, fresh_client: None) -> Event:
    """The event exported as a command task sees it."""
    for name, value in event_env(event).items():
        monkeypatch.setenv(name, value)
    return event


def _without_timing(result: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in result.items() if k != "reco_seconds"}


def test_event_round_trips_through_the_environment(event: Event) -> None:
    env = event_env(event)
    assert list(env) == ["SKYDRIVER_EVENT_0"]
    assert all(len(value) <= transport.CHUNK_CHARS for value in env.values())
    assert event_from_env({"OTHER": "x", **env}).ref == event.ref


def test_a_large_event_is_cut_into_ordered_chunks(event: Event, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "CHUNK_CHARS", 500)
    env = event_env(event)
    assert len(env) > 3 and all(len(value) <= 500 for value in env.values())
    assert list(env) == [f"SKYDRIVER_EVENT_{i}" for i in range(len(env))]
    assert event_from_env(dict(reversed(env.items()))).ref == event.ref
    monkeypatch.setattr(transport, "MAX_CHUNKS", 3)
    with pytest.raises(EventTransportError, match="at most 3 fit"):
        event_env(event)


def test_a_missing_or_damaged_event_is_a_clear_error(event: Event) -> None:
    with pytest.raises(EventTransportError, match="SKYDRIVER_EVENT_0 is not set"):
        event_from_env({})
    with pytest.raises(EventTransportError, match="do not hold an event"):
        event_from_env({"SKYDRIVER_EVENT_0": event_env(event)["SKYDRIVER_EVENT_0"][:-8]})


def test_the_command_writes_the_pixel_result(event_in_env: Event, tmp_path: Path) -> None:
    task = PixelTask(event_in_env.ref, "dummy", 8, 100, 0)
    (tmp_path / "in.json").write_text(task.to_json())
    assert reco_client.main(["--in", str(tmp_path / "in.json"), "--out", str(tmp_path / "out.json")]) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    assert _without_timing(written) == _without_timing(run_pixel_task(task.to_dict(), event_in_env))


def test_a_failing_reco_exits_1_with_the_reason(
    event_in_env: Event, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = PixelTask(event_in_env.ref, "crash_dummy", 8, 100, 0, {"failure_rate": 1.0})
    (tmp_path / "in.json").write_text(task.to_json())
    assert reco_client.main(["--in", str(tmp_path / "in.json"), "--out", str(tmp_path / "out.json")]) == 1
    assert capsys.readouterr().err.strip() == "reco failed: RecoCrash: crash_dummy failed on purpose (rate 1.0)"
    assert not (tmp_path / "out.json").exists()


def test_no_event_in_the_environment_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh_client: None
) -> None:
    (tmp_path / "in.json").write_text(PixelTask("run1.evt1.0", "dummy", 8, 1, 0).to_json())
    assert reco_client.main(["--in", str(tmp_path / "in.json"), "--out", str(tmp_path / "out.json")]) == 1
    assert "EventTransportError: no event in the environment" in capsys.readouterr().err


def test_the_callable_reads_the_pilots_task_environment(
    event: Event, monkeypatch: pytest.MonkeyPatch, fresh_client: None
) -> None:
    """Inside a pilot the task environment is the JSON in EWMS_PILOT_TASK_ENV_JSON, not exported variables."""
    monkeypatch.setenv("EWMS_PILOT_TASK_ENV_JSON", json.dumps(event_env(event)))
    task = PixelTask(event.ref, "dummy", 8, 7, 0).to_dict()
    assert reco_client.run(task)["llh"] == run_pixel_task(task, event)["llh"]
