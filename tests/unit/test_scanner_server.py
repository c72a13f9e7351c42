"""The scanner's pure parts: configuration, record-then-ack batches, what it accepts from its queues."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from ewms_config import ConfigError
from skydriver.event import Event, TrackSpec, simulate_track
from skydriver.recos import PixelResult, PixelTask
from skydriver.scanner.api import SkyDriverAPI
from skydriver.scanner.config import ScannerConfig
from skydriver.scanner.scan import SkyScan
from skydriver.scanner.server import (
    FAILED_FIT_LLH,
    RecordThenAck,
    Scanner,
    consume_in_batches,
    json_safe,
    scan_from_records,
)

PROFILES = {
    "to-clients": {"mqid": "q-tasks", "broker_type": "rabbitmq", "broker_address": "u@mq:5672/v", "auth_token": "T0K"},
    "from-clients": {"mqid": "q-results", "broker_address": "amqp://u:s3cret@mq/v"},
}
ENV = {
    "SKYSCAN_SCAN_ID": "abc123",
    "SKYSCAN_SKYDRIVER_URL": "http://skydriver:8000/",
    "SKYSCAN_SKYDRIVER_TOKEN": "the-token",
    "SKYSCAN_MQ_PROFILES": json.dumps(PROFILES),
}


# -- configuration ------------------------------------------------------------------------------


def test_config_from_the_launchers_environment() -> None:
    config = ScannerConfig.from_env(ENV | {"SKYSCAN_PROGRESS_INTERVAL": "0.5", "SKYSCAN_LOG_LEVEL": "debug"})
    assert config.skydriver_url == "http://skydriver:8000"
    assert (config.progress_interval, config.result_interval, config.log_level) == (0.5, 30.0, "DEBUG")
    tasks, results = config.mq_profiles["to-clients"], config.mq_profiles["from-clients"]
    assert (tasks.mqid, tasks.broker_address, tasks.auth_token) == ("q-tasks", "u@mq:5672/v", "T0K")
    assert (results.mqid, results.auth_token, results.broker_type) == ("q-results", "", "rabbitmq")
    for secret in ("the-token", "T0K", "s3cret"):
        assert secret not in repr(config)


@pytest.mark.parametrize(
    ("change", "variable", "problem"),
    [
        ({"SKYSCAN_SCAN_ID": ""}, "SKYSCAN_SCAN_ID", "is required"),
        ({"SKYSCAN_SKYDRIVER_URL": "skydriver:8000"}, "SKYSCAN_SKYDRIVER_URL", "URL"),
        ({"SKYSCAN_RESULT_INTERVAL": "0"}, "SKYSCAN_RESULT_INTERVAL", "> 0"),
        ({"SKYSCAN_MQ_PROFILES": '{"to-clients": {"mqid": "q"}, "T0K": 1'}, "SKYSCAN_MQ_PROFILES", "not valid JSON"),
        (
            {"SKYSCAN_MQ_PROFILES": json.dumps({"to-clients": PROFILES["to-clients"]})},
            "SKYSCAN_MQ_PROFILES",
            "from-clients",
        ),
        (
            {"SKYSCAN_MQ_PROFILES": json.dumps(PROFILES | {"to-clients": {"mqid": "q"}})},
            "SKYSCAN_MQ_PROFILES",
            "to-clients.broker_address",
        ),
    ],
)
def test_config_errors_name_the_variable(change: dict[str, str], variable: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        ScannerConfig.from_env(ENV | change)
    assert error.value.variable == variable and problem in str(error.value)
    assert "T0K" not in str(error.value)


# -- record, then ack ---------------------------------------------------------------------------


@dataclass
class FakeDelivery:
    """A delivery that remembers being acked (what `consume_in_batches` sees of `ewms_mq.Message`)."""

    data: Any
    message_id: str | None = None
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


class Journal:
    """The order in which records and acks happened."""

    def __init__(self, fail: bool = False) -> None:
        self.entries: list[str] = []
        self.fail = fail
        self.recorded = asyncio.Event()

    async def record(self, items: list[str]) -> None:
        if self.fail:
            raise RuntimeError("skydriver said no")
        self.entries.append("record " + ",".join(items))
        self.recorded.set()


class Logged(FakeDelivery):
    def __init__(self, data: Any, journal: Journal) -> None:
        super().__init__(data)
        self.journal = journal

    async def ack(self) -> None:
        await super().ack()
        self.journal.entries.append(f"ack {self.data}")


async def test_a_batch_is_recorded_before_any_of_it_is_acked() -> None:
    journal = Journal()
    batch: RecordThenAck[str] = RecordThenAck(journal.record, max_items=3, max_seconds=60)
    batch.add(Logged("a", journal), "a")
    batch.add(Logged("dup", journal), None)  # a duplicate: nothing to record, still acked
    assert not batch.due
    batch.add(Logged("b", journal), "b")
    assert batch.due
    await batch.flush()
    assert journal.entries == ["record a,b", "ack a", "ack dup", "ack b"]
    assert batch.seconds_left() is None  # empty again


async def test_nothing_is_acked_when_the_record_fails() -> None:
    batch: RecordThenAck[str] = RecordThenAck(Journal(fail=True).record, max_items=2, max_seconds=60)
    messages = [FakeDelivery("a"), FakeDelivery("b")]
    for message in messages:
        batch.add(message, message.data)
    with pytest.raises(RuntimeError):
        await batch.flush()
    assert not any(message.acked for message in messages)


async def test_a_batch_falls_due_with_time() -> None:
    now = [100.0]
    batch: RecordThenAck[str] = RecordThenAck(Journal().record, max_items=10, max_seconds=1.0, clock=lambda: now[0])
    batch.add(FakeDelivery("a"), "a")
    now[0] += 0.25
    assert batch.seconds_left() == 0.75 and not batch.due
    now[0] += 1.0
    assert batch.seconds_left() == 0.0 and batch.due


async def _deliveries(items: list[FakeDelivery], then_wait: asyncio.Event | None = None) -> AsyncIterator[FakeDelivery]:
    for item in items:
        yield item
    if then_wait is not None:
        await then_wait.wait()


async def test_consuming_flushes_full_batches_and_leaves_the_rest_unacked_when_it_stops() -> None:
    journal = Journal()
    messages = [Logged(str(i), journal) for i in range(5)]
    batch: RecordThenAck[str] = RecordThenAck(journal.record, max_items=2, max_seconds=60)
    flushes: list[int] = []
    await consume_in_batches(_deliveries(list(messages)), batch, lambda m: m.data, lambda: flushes.append(1))
    assert journal.entries == ["record 0,1", "ack 0", "ack 1", "record 2,3", "ack 2", "ack 3"]
    assert len(flushes) == 2 and not messages[4].acked  # not recorded, so not acked: the broker redelivers it


async def test_consuming_flushes_a_partial_batch_when_it_falls_due() -> None:
    journal = Journal()
    message = Logged("lonely", journal)
    never = asyncio.Event()
    batch: RecordThenAck[str] = RecordThenAck(journal.record, max_items=100, max_seconds=0.01)
    consuming = asyncio.create_task(
        consume_in_batches(_deliveries([message], never), batch, lambda m: m.data, lambda: None)
    )
    try:
        async with asyncio.timeout(30):  # a safety net, not a timing assertion
            await journal.recorded.wait()
        assert journal.entries[0] == "record lonely"
    finally:
        consuming.cancel()
    assert message.acked


async def test_consuming_flushes_at_once_when_nothing_more_is_to_come() -> None:
    """The scan's last result is recorded right away, not after the batch's `max_seconds`."""
    journal = Journal()
    messages = [Logged("a", journal), Logged("last", journal)]
    taken: list[str] = []

    def take(message: FakeDelivery) -> str:
        taken.append(message.data)
        return str(message.data)

    never = asyncio.Event()
    batch: RecordThenAck[str] = RecordThenAck(journal.record, max_items=100, max_seconds=3600)
    consuming = asyncio.create_task(
        consume_in_batches(_deliveries(messages, never), batch, take, lambda: None, lambda: "last" in taken)
    )
    try:
        async with asyncio.timeout(30):  # a safety net, not a timing assertion: max_seconds is an hour
            await journal.recorded.wait()
        assert journal.entries[:2] == ["record a,last", "ack a"]
    finally:
        consuming.cancel()
    assert all(message.acked for message in messages)


# -- what the scanner takes from its queues -----------------------------------------------------


def test_non_finite_numbers_become_json() -> None:
    result = PixelResult("e", 8, 1, 0, math.nan, 1.0, 2.0, math.inf, 0.5, -math.inf, 7.0, 0.1)
    safe = json_safe(result)
    assert (safe.llh, safe.X, safe.Z, safe.Y, safe.T) == (FAILED_FIT_LLH, 0.0, 0.0, 0.5, 7.0)
    json.dumps(safe.to_dict(), allow_nan=False)
    finite = PixelResult("e", 8, 1, 0, 1.0, 1.0, 2.0, 3.0, 0.5, 4.0, 7.0, 0.1)
    assert json_safe(finite) is finite


@pytest.fixture(scope="module")
def event() -> Event:
    return simulate_track(TrackSpec(ra=1.0, dec=0.2, energy_gev=3000.0), 3)


@pytest.fixture
def scanner(event: Event) -> Scanner:
    """A scanner that is never run: only its message handling is used (it calls nothing)."""
    config = ScannerConfig.from_env(ENV)
    api = SkyDriverAPI.connect(config.skydriver_url, "token", config.scan_id, retry_timeout=1)
    return Scanner(config, api, event, SkyScan(event.ref, "dummy", {8: 0}, 1))


def test_results_are_validated_and_garbage_is_dropped(scanner: Scanner, event: Event) -> None:
    good = PixelResult(event.ref, 8, 5, 0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.01)
    assert scanner.take_result(FakeDelivery(good.to_dict())) == good
    assert scanner.take_result(FakeDelivery(good.to_dict())) is None  # a duplicate
    text = PixelResult(event.ref, 8, 6, 0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.01)
    assert scanner.take_result(FakeDelivery(text.to_json())) == text  # from a pilot with a text outfile
    foreign = PixelResult("run9.evt9.0", 8, 5, 0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.01)
    for garbage in (foreign.to_dict(), [1, 2], "not json", b"\x00\x01", {"nside": 8}, good.to_dict() | {"nside": "x"}):
        assert scanner.take_result(FakeDelivery(garbage, "m-1")) is None
    assert len(scanner.scan.results) == 2


def test_dead_tasks_are_given_up_once(scanner: Scanner, event: Event) -> None:
    task = PixelTask(event.ref, "dummy", 8, 9, 0)
    assert scanner.take_dead_task(FakeDelivery(task.to_dict())) == task
    assert scanner.take_dead_task(FakeDelivery(task.to_dict())) is None  # the broker may deliver twice
    assert scanner.take_dead_task(FakeDelivery(PixelTask("other", "dummy", 8, 9, 0).to_dict())) is None
    assert scanner.take_dead_task(FakeDelivery("garbage")) is None
    assert scanner.scan.dead_tasks == [(8, 9, 0)]


def test_the_scan_is_rebuilt_from_skydrivers_records(event: Event) -> None:
    request = {
        "reco_algo": "dummy",
        "nsides": {"8": 0, "32": 2},
        "reco_options": {},
        "predictive_scanning_threshold": 1,
    }
    answered = PixelResult(event.ref, 8, 1, 0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.01)
    checkpoint = {"published": [[8, 1], [8, 2, 0]], "results": [answered.to_dict()]}
    scan = scan_from_records(request, event, checkpoint, [{"nside": 8, "pixel": 3, "seed": 0}])
    assert scan.results == [answered] and scan.missing_pixels == [(8, 3)]
    assert {t.pixel for t in scan.next_tasks()} == set(range(768)) - {1, 2, 3}  # 2 is still out, 3 is dead
