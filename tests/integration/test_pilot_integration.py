"""Real pilot processes (`python -m ewms_pilot`) against the real broker.

Every test publishes its events before the pilots start, runs pilots as subprocesses with
an environment exactly as a TMS would set it, and reads the outputs back after the pilots
exited (the output queue's depth says how many to read, so no test waits for silence).
Where a test must act while a task runs, the task announces itself through a FIFO and the
test blocks on reading it; where it must act after the pilot reacted, it waits for the
pilot's log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testsupport import wait_gone

import ewms_mq

QueueFactory = Callable[..., str]
PROCESS_LIMIT = 90.0  # a safety net against a hung pilot, not a timing assertion
SH_UPPER = "sh -c 'tr a-z A-Z < {{INFILE}} > {{OUTFILE}}'"


# -- helpers ------------------------------------------------------------------------------------


class PilotResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        lines = stdout.strip().splitlines()
        self.summary: dict[str, Any] = json.loads(lines[-1]) if lines else {}

    def __repr__(self) -> str:
        return f"PilotResult(rc={self.returncode}, summary={self.summary}, stderr=...{self.stderr[-3000:]})"


class PilotProcess:
    """A running pilot whose stderr is watched line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._stderr_done = asyncio.create_task(self._read_stderr())
        self._stdout = asyncio.create_task(self._read_stdout())

    @classmethod
    async def start(cls, env: dict[str, str]) -> PilotProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ewms_pilot",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._new_line:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._new_line.notify_all()
        async with self._new_line:
            self._new_line.notify_all()

    async def _read_stdout(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.read()).decode(errors="replace")

    async def wait_for_line(self, needle: str) -> str:
        """The first stderr line containing `needle`; fails if the pilot exits without one."""

        def found() -> str | None:
            return next((line for line in self.lines if needle in line), None)

        async with asyncio.timeout(PROCESS_LIMIT), self._new_line:
            while (line := found()) is None:
                if self._stderr_done.done():
                    raise AssertionError(f"pilot exited without logging {needle!r}:\n" + "\n".join(self.lines))
                await self._new_line.wait()
        return line

    async def finish(self) -> PilotResult:
        async with asyncio.timeout(PROCESS_LIMIT):
            returncode = await self.proc.wait()
            await self._stderr_done
            stdout = await self._stdout
        return PilotResult(returncode, stdout, "\n".join(self.lines))

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def pilots() -> AsyncIterator[Callable[[dict[str, str]], Any]]:
    """`await pilots(env)` starts a pilot; any still running at teardown is killed."""
    started: list[PilotProcess] = []

    async def start(env: dict[str, str]) -> PilotProcess:
        pilot = await PilotProcess.start(env)
        started.append(pilot)
        return pilot

    yield start
    for pilot in started:
        pilot.kill()
        with contextlib.suppress(Exception):
            await pilot.finish()


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[ewms_mq.RabbitMQBroker]:
    async with await ewms_mq.connect(amqp_url) as b:
        yield b


@pytest.fixture
async def queues(broker: ewms_mq.RabbitMQBroker, queue_factory: QueueFactory) -> tuple[str, str]:
    """A declared (input, output) pair, deleted after the test."""
    qin, qout = queue_factory("in"), queue_factory("out")
    await broker.declare_queue(qin)
    await broker.declare_queue(qout)
    return qin, qout


@pytest.fixture
def env_for(amqp_url: str, tmp_path: Path, queues: tuple[str, str]) -> Callable[..., dict[str, str]]:
    """The environment of a pilot on these queues; keyword arguments add `EWMS_PILOT_<NAME>`."""

    def make(**settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EWMS_PILOT_", "_EWMS_PILOT_"))}
        env.update(
            EWMS_PILOT_QUEUE_INCOMING=queues[0],
            EWMS_PILOT_QUEUE_OUTGOING=queues[1],
            EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS=amqp_url,
            EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS=amqp_url,
            EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(tmp_path / "pilot"),
            EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="1",
            EWMS_PILOT_TASK_KILL_GRACE="1",
            EWMS_PILOT_CL_LOG="DEBUG",
        )
        env.update({f"EWMS_PILOT_{name}": value for name, value in settings.items()})
        return env

    return make


async def drain(broker: ewms_mq.RabbitMQBroker, queue: str) -> list[Any]:
    """Every message in `queue` right now (acked); the depth says how many to read."""
    depth = (await broker.queue_depth(queue)).messages
    got: list[Any] = []
    if depth == 0:
        return got
    async with broker.consume(queue, prefetch=min(depth, 500), idle_timeout=PROCESS_LIMIT) as messages:
        async for msg in messages:
            got.append(msg.data)
            await msg.ack()
            if len(got) == depth:
                break
    return got


@contextlib.contextmanager
def fifo(path: Path) -> Iterator[Path]:
    os.mkfifo(path)
    yield path


async def read_fifo(path: Path) -> str:
    """Block (in a thread) until a task writes to the FIFO."""
    async with asyncio.timeout(PROCESS_LIMIT):
        return await asyncio.to_thread(path.read_text)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


# -- throughput and correctness -----------------------------------------------------------------


async def test_one_pilot_processes_every_event_once(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    events = [f"event-{i}" for i in range(25)]
    await broker.publish_many(qin, events)
    result = await (await pilots(env_for(TASK_ARGS=SH_UPPER, MAX_CONCURRENT_TASKS="3"))).finish()
    assert result.returncode == 0, result
    assert sorted(await drain(broker, qout)) == sorted(e.upper() for e in events)
    assert (await broker.queue_depth(qin)).messages == 0
    s = result.summary
    assert s["stop_reason"] == "queue-idle"
    assert (s["events_done"], s["events_published"], s["events_failed"], s["events_retried"]) == (25, 25, 0, 0)
    assert s["task_runtime_seconds"]["count"] == 25
    assert s["task_runtime_seconds"]["p50"] <= s["task_runtime_seconds"]["p90"] <= s["task_runtime_seconds"]["p99"]


async def test_three_pilots_share_the_work(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    events = [f"event-{i}" for i in range(60)]
    await broker.publish_many(qin, events)
    env = env_for(TASK_ARGS=SH_UPPER, MAX_CONCURRENT_TASKS="2", TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE="20")
    running = [await pilots(env) for _ in range(3)]
    results = [await p.finish() for p in running]
    assert all(r.returncode == 0 for r in results), results
    outputs = await drain(broker, qout)
    assert sorted(outputs) == sorted(e.upper() for e in events)  # each exactly once
    assert sum(r.summary["events_done"] for r in results) == 60


async def test_sigkilled_pilot_event_is_redelivered_and_completed(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, tmp_path: Path
) -> None:
    qin, qout = queues
    await broker.publish_many(qin, ["a", "b", "c"])
    with fifo(tmp_path / "started") as started:
        hang = f'if [ -n "$HANG" ]; then echo $$ > {started}; sleep 300; fi'
        task = f"sh -c '{hang}; tr a-z A-Z < {{{{INFILE}}}} > {{{{OUTFILE}}}}'"
        doomed = await pilots(env_for(TASK_ARGS=task, TASK_ENV_JSON='{"HANG": "1"}'))
        task_pid = int(await read_fifo(started))  # the doomed pilot is in the middle of a task
        doomed.proc.send_signal(signal.SIGKILL)
        assert (await doomed.finish()).returncode == -signal.SIGKILL
        kill_group(task_pid)  # under HTCondor the whole job goes; here the orphaned task is ours to clean
        rescuer = await (await pilots(env_for(TASK_ARGS=task))).finish()
    assert rescuer.returncode == 0, rescuer
    assert sorted(await drain(broker, qout)) == ["A", "B", "C"]
    assert rescuer.summary["events_done"] == 3
    assert rescuer.summary["events_retried"] == 1  # the one the killed pilot held


async def test_poison_event_goes_to_the_dlq_while_others_complete(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, management_url: str
) -> None:
    qin, qout = queues
    await ewms_mq.apply_dlq_policy(ewms_mq.ManagementAPI.for_broker(broker.address, management_url), qin)
    events = ["one", "two", "poison", "three", "four"]
    await broker.publish_many(qin, events)
    task = "sh -c 'grep -q poison {{INFILE}} && { echo poisoned >&2; exit 3; }; tr a-z A-Z < {{INFILE}} > {{OUTFILE}}'"
    env = env_for(TASK_ARGS=task, STOP_LISTENING_ON_TASK_ERROR="false", MAX_CONSECUTIVE_FAILURES="0")
    result = await (await pilots(env)).finish()
    assert sorted(await drain(broker, qout)) == ["FOUR", "ONE", "THREE", "TWO"]
    assert await drain(broker, ewms_mq.dlq_name(qin)) == ["poison"]
    assert result.summary["events_failed"] == 3  # the default delivery limit: three attempts
    assert result.summary["events_retried"] == 2
    assert result.returncode == 1  # failures make a non-zero exit, as upstream


async def test_a_poison_event_going_round_does_not_retire_a_healthy_pilot(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, management_url: str
) -> None:
    """MAX_CONSECUTIVE_FAILURES counts events failing on their first delivery: the poison event's
    redeliveries (all that is left once the rest is done) say nothing about the host."""
    qin, qout = queues
    await ewms_mq.apply_dlq_policy(ewms_mq.ManagementAPI.for_broker(broker.address, management_url), qin)
    await broker.publish_many(qin, ["one", "poison", "two"])
    task = "sh -c 'grep -q poison {{INFILE}} && exit 3; tr a-z A-Z < {{INFILE}} > {{OUTFILE}}'"
    env = env_for(TASK_ARGS=task, STOP_LISTENING_ON_TASK_ERROR="false", MAX_CONSECUTIVE_FAILURES="2")
    result = await (await pilots(env)).finish()
    assert sorted(await drain(broker, qout)) == ["ONE", "TWO"]
    assert await drain(broker, ewms_mq.dlq_name(qin)) == ["poison"]
    assert result.summary["events_failed"] == 3 and result.summary["stop_reason"] == "queue-idle"


async def test_fresh_events_failing_in_a_row_retire_the_pilot(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, _ = queues
    await broker.publish_many(qin, ["a", "b", "c", "d"])
    env = env_for(TASK_ARGS="sh -c 'exit 3'", STOP_LISTENING_ON_TASK_ERROR="false", MAX_CONSECUTIVE_FAILURES="2")
    result = await (await pilots(env)).finish()
    assert result.summary["stop_reason"] == "consecutive-failures"
    assert result.summary["events_failed"] == 2 and result.returncode == 1
    assert (await broker.queue_depth(qin)).messages == 4  # nacked back for other pilots


# -- stop rules ---------------------------------------------------------------------------------


async def test_task_timeout_kills_the_task_tree(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, tmp_path: Path
) -> None:
    qin, _ = queues
    await broker.publish(qin, "slow")
    pids = tmp_path / "pids"
    task = f"sh -c 'echo $$ > {pids}; sleep 300 & echo $! >> {pids}; sleep 300'"
    result = await (await pilots(env_for(TASK_ARGS=task, TASK_TIMEOUT="1"))).finish()
    shell, background = (int(p) for p in pids.read_text().split())
    assert wait_gone(shell) and wait_gone(background)
    assert result.returncode == 1
    assert result.summary["failures"][0]["kind"] == "TaskTimeoutError"
    assert result.summary["stop_reason"] == "task-error"  # STOP_LISTENING_ON_TASK_ERROR defaults to true
    assert (await broker.queue_depth(qin)).messages == 1  # nacked back for another pilot


async def test_sigterm_lets_the_running_task_finish(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, tmp_path: Path
) -> None:
    qin, qout = queues
    await broker.publish_many(qin, ["first", "second", "third"])
    with fifo(tmp_path / "started") as started, fifo(tmp_path / "release") as release:
        task = f"sh -c 'echo go > {started}; read x < {release}; tr a-z A-Z < {{{{INFILE}}}} > {{{{OUTFILE}}}}'"
        pilot = await pilots(env_for(TASK_ARGS=task, PREFETCH="2"))
        await read_fifo(started)
        pilot.proc.send_signal(signal.SIGTERM)
        await pilot.wait_for_line("SIGTERM: draining")
        await asyncio.to_thread(release.write_text, "go\n")
        result = await pilot.finish()
    assert result.returncode == 0, result
    assert result.summary["stop_reason"] == "signal"
    assert result.summary["events_done"] == 1
    assert len(await drain(broker, qout)) == 1
    assert (await broker.queue_depth(qin)).messages == 2  # the prefetched one was handed back


async def test_sigterm_drain_deadline_nacks_what_is_still_running(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, tmp_path: Path
) -> None:
    qin, qout = queues
    await broker.publish(qin, "stuck")
    with fifo(tmp_path / "started") as started:
        task = f"sh -c 'echo $$ > {started}; sleep 300'"
        pilot = await pilots(env_for(TASK_ARGS=task, DRAIN_TIMEOUT="1"))
        task_pid = int(await read_fifo(started))
        pilot.proc.send_signal(signal.SIGTERM)
        result = await pilot.finish()
    assert result.returncode == 0, result
    assert result.summary["stop_reason"] == "signal"
    assert result.summary["events_interrupted"] == 1 and result.summary["events_failed"] == 0
    assert wait_gone(task_pid)
    assert (await broker.queue_depth(qin)).messages == 1
    assert (await broker.queue_depth(qout)).messages == 0


async def test_no_first_message_stop(env_for: Any, pilots: Any) -> None:
    result = await (await pilots(env_for(TASK_ARGS="true", TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE="1"))).finish()
    assert result.returncode == 0
    assert result.summary["stop_reason"] == "no-first-message"
    assert result.summary["events_received"] == 0


async def test_max_runtime_stops_taking_events(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, tmp_path: Path
) -> None:
    qin, qout = queues
    (tmp_path / "pilot_test_tasks.py").write_text(
        textwrap.dedent(
            """
            import asyncio

            async def slow_echo(data):
                await asyncio.sleep(0.05)  # the task's work
                return data
            """
        )
    )
    await broker.publish_many(qin, list(range(400)))  # ~20 s of work
    env = env_for(TASK_CALLABLE="pilot_test_tasks:slow_echo", MAX_RUNTIME="2", TIMEOUT_QUEUE_INCOMING="60")
    env["PYTHONPATH"] = str(tmp_path)
    result = await (await pilots(env)).finish()
    assert result.returncode == 0, result
    assert result.summary["stop_reason"] == "max-runtime"
    outputs = await drain(broker, qout)
    left = (await broker.queue_depth(qin)).messages
    assert len(outputs) == len(set(outputs)) == result.summary["events_done"] > 0
    assert len(outputs) + left == 400  # everything not done went back to the queue


# -- start-up errors ----------------------------------------------------------------------------


async def test_config_error_exit_code_names_the_variable(env_for: Any, pilots: Any) -> None:
    env = env_for(TASK_ARGS="true", KEEP_ALL_TASK_FILES="sometimes")
    result = await (await pilots(env)).finish()
    assert result.returncode == 2
    assert "EWMS_PILOT_KEEP_ALL_TASK_FILES" in result.stderr.splitlines()[-1]


async def test_unreachable_broker_exit_code(env_for: Any, pilots: Any) -> None:
    env = env_for(TASK_ARGS="true", QUEUE_INCOMING_BROKER_ADDRESS="guest:guest@127.0.0.1:1")
    result = await (await pilots(env)).finish()
    assert result.returncode == 3, result
    assert "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS" in result.stderr
    assert result.summary["stop_reason"] == "broker-error"


async def test_missing_queue_exit_code(env_for: Any, pilots: Any) -> None:
    result = await (await pilots(env_for(TASK_ARGS="true", QUEUE_INCOMING="no-such-queue-for-pilot"))).finish()
    assert result.returncode == 3, result
    assert "no-such-queue-for-pilot" in result.stderr


async def test_container_task_without_platform_fails_at_start_up(env_for: Any, pilots: Any, tmp_path: Path) -> None:
    env = env_for(TASK_IMAGE="alpine:3", TASK_ARGS="true")
    (tmp_path / "empty-bin").mkdir()
    env["PATH"] = str(tmp_path / "empty-bin")
    result = await (await pilots(env)).finish()
    assert result.returncode == 4, result
    assert "neither 'apptainer' nor 'docker'" in result.stderr
    assert result.summary["events_received"] == 0


# -- the upstream task contract (issue 12, point 4) ---------------------------------------------

PY_RAW_TO_JSON = (
    f"{sys.executable} -c \"import json,sys; json.dump({{'raw': open(sys.argv[1]).read()}}, open(sys.argv[2], 'w'))\""
    " {{INFILE}} {{OUTFILE}}"
)


async def test_json_events_to_json_files(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    await broker.publish_many(qin, [{"a": 1}, [1, 2], 3, "a string, verbatim"])
    env = env_for(TASK_ARGS=PY_RAW_TO_JSON, INFILE_EXT=".json", OUTFILE_EXT=".json")
    result = await (await pilots(env)).finish()
    assert result.returncode == 0, result
    raws = sorted(out["raw"] for out in await drain(broker, qout))  # .json outfiles arrive parsed
    assert raws == sorted(['{"a": 1}', "[1, 2]", "3", "a string, verbatim"])  # a string is never re-encoded


async def test_string_events_and_text_outfiles(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    await broker.publish(qin, "line one\nline two\n")
    result = await (await pilots(env_for(TASK_ARGS="cp {{INFILE}} {{OUTFILE}}"))).finish()
    assert result.returncode == 0, result
    assert await drain(broker, qout) == ["line one\nline two\n"]  # a non-.json outfile is sent as text


async def test_json_event_to_non_json_infile_fails_clearly(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    await broker.publish(qin, {"pixel": 3})
    result = await (await pilots(env_for(TASK_ARGS="cp {{INFILE}} {{OUTFILE}}"))).finish()
    assert result.returncode == 1
    failure = result.summary["failures"][0]
    assert failure["kind"] == "InvalidDataForInfileException"
    assert ".json" in failure["reason"]
    assert (await broker.queue_depth(qin)).messages == 1  # nacked, not lost
    assert (await broker.queue_depth(qout)).messages == 0


async def test_exit_zero_without_outfile_acks_and_publishes_nothing(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    await broker.publish_many(qin, ["x", "y", "z"])
    result = await (await pilots(env_for(TASK_ARGS="true"))).finish()
    assert result.returncode == 0, result
    assert result.summary["events_done"] == 3 and result.summary["events_done_without_output"] == 3
    assert (await broker.queue_depth(qin)).messages == 0
    assert (await broker.queue_depth(qout)).messages == 0


async def test_init_writes_the_data_hub_for_tasks(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, qout = queues
    await broker.publish_many(qin, ["a", "b"])
    env = env_for(
        INIT_ARGS="sh -c 'echo \"$GREETING from init\" > {{DATA_HUB}}/setup.txt'",
        INIT_ENV_JSON='{"GREETING": "hello"}',
        TASK_ARGS="sh -c 'cat $EWMS_TASK_DATA_HUB_DIR/setup.txt {{IN_FILE}} > {{OUT_FILE}}'",
    )
    result = await (await pilots(env)).finish()
    assert result.returncode == 0, result
    assert sorted(await drain(broker, qout)) == ["hello from init\na", "hello from init\nb"]


async def test_kept_file_tree_is_upstreams(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any, tmp_path: Path
) -> None:
    qin, _ = queues
    ids = await broker.publish_many(qin, ["a", "b"])
    env = env_for(
        KEEP_ALL_TASK_FILES="yes",
        INIT_ARGS="sh -c 'echo init-out; touch {{DATA_HUB}}/from-init'",
        TASK_ARGS="sh -c 'echo task-out; echo task-err >&2; cp {{INFILE}} {{OUTFILE}}'",
        INFILE_EXT=".txt",
    )
    result = await (await pilots(env)).finish()
    assert result.returncode == 0, result
    root = tmp_path / "pilot" / "ewms-pilot-data"
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    (init_dir,) = {f.split("/")[0] for f in files if f.startswith("init-")}
    expected = {"data-hub/from-init", f"{init_dir}/outputs/stdoutfile", f"{init_dir}/outputs/stderrfile"}
    for i in ids:
        expected |= {
            f"{i}/task-io/infile-{i}.txt",
            f"{i}/task-io/outfile-{i}.out",
            f"{i}/outputs/stdoutfile",
            f"{i}/outputs/stderrfile",
        }
    assert files == expected
    assert (root / init_dir / "outputs" / "stdoutfile").read_text() == "init-out\n"
    assert (root / ids[0] / "outputs" / "stdoutfile").read_text() == "task-out\n"
    assert (root / ids[0] / "outputs" / "stderrfile").read_text() == "task-err\n"
    assert (root / ids[1] / "task-io" / f"outfile-{ids[1]}.out").read_text() == "b"


async def test_task_env_external_dirs_and_no_queue_credentials(
    broker: ewms_mq.RabbitMQBroker,
    queues: tuple[str, str],
    env_for: Any,
    pilots: Any,
    tmp_path: Path,
    amqp_url: str,
) -> None:
    qin, qout = queues
    external = tmp_path / "cvmfs-like"
    external.mkdir()
    (external / "table.txt").write_text("photon table")
    await broker.publish(qin, "ev")
    address = ewms_mq.parse_address(amqp_url)
    script = (
        "import json,os,sys; e=os.environ;"
        f"json.dump({{'mine': e.get('MY_SETTING'), 'table': open('{external}/table.txt').read(),"
        " 'pilot_vars': sorted(k for k in e if 'EWMS_PILOT' in k)}, open(sys.argv[1], 'w'))"
    )
    env = env_for(
        TASK_ARGS=f'{sys.executable} -c "{script}" {{{{OUTFILE}}}}',
        OUTFILE_EXT=".json",
        TASK_ENV_JSON='{"MY_SETTING": "on"}',
        EXTERNAL_DIRECTORIES=str(external),
        # the input queue in EWMS's own form, token as password; output stays a URL: two connections
        QUEUE_INCOMING_BROKER_ADDRESS=f"{address.username}@{address.host}:{address.port}",
        QUEUE_INCOMING_AUTH_TOKEN=address.password,
        QUEUE_INCOMING_BROKER_TYPE="rabbitmq",
    )
    result = await (await pilots(env)).finish()
    assert result.returncode == 0, result
    assert await drain(broker, qout) == [{"mine": "on", "table": "photon table", "pilot_vars": []}]
    assert f":{address.password}@" not in result.stderr  # credentials are never logged
    assert "AUTH_TOKEN" not in result.stderr


async def test_missing_external_directory_fails_at_start_up(env_for: Any, pilots: Any, tmp_path: Path) -> None:
    result = await (await pilots(env_for(TASK_ARGS="true", EXTERNAL_DIRECTORIES=str(tmp_path / "nope")))).finish()
    assert result.returncode == 4
    assert "EWMS_PILOT_EXTERNAL_DIRECTORIES" in result.stderr


async def test_failure_report_closes_stderr(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, _ = queues
    (event_id,) = await broker.publish_many(qin, ["bad"])
    script = "import sys; print('warming up', file=sys.stderr); raise ValueError('bad pixel 12')"
    result = await (await pilots(env_for(TASK_ARGS=f'{sys.executable} -c "{script}"'))).finish()
    assert result.returncode == 1
    tail = result.stderr.splitlines()[-8:]
    assert tail[-1] == "1 TASK(S) FAILED"
    assert f"--- failed task 1: event {event_id}: ContainerRunError, exit code 1: task failed (exit code 1)" in tail
    assert "    Traceback (most recent call last):" in tail
    assert "    ValueError: bad pixel 12" in tail
    assert "warming up" not in "\n".join(tail)  # the traceback, not the noise before it


async def test_quarantine_holds_the_pilot_after_a_failure(
    broker: ewms_mq.RabbitMQBroker, queues: tuple[str, str], env_for: Any, pilots: Any
) -> None:
    qin, _ = queues
    await broker.publish(qin, "bad")
    pilot = await pilots(env_for(TASK_ARGS="sh -c 'echo broken node >&2; exit 9'", QUARANTINE_TIME="600"))
    await pilot.wait_for_line("quarantining for 600s")
    assert pilot.proc.returncode is None
    pilot.proc.send_signal(signal.SIGTERM)  # HTCondor removing the job ends the quarantine
    result = await pilot.finish()
    assert result.returncode == 1
    assert any("ending quarantine early" in line for line in pilot.lines)
    lines = result.stderr.splitlines()
    assert lines[-1] == "1 TASK(S) FAILED"
    assert "    broken node" in lines and any("exit code 9" in line for line in lines[-5:])


async def test_signal_ends_quarantine_after_a_startup_failure(env_for: Any, pilots: Any, tmp_path: Path) -> None:
    env = env_for(TASK_ARGS="true", EXTERNAL_DIRECTORIES=str(tmp_path / "nope"), QUARANTINE_TIME="600")
    pilot = await pilots(env)
    await pilot.wait_for_line("quarantining for 600s")
    pilot.proc.send_signal(signal.SIGTERM)
    result = await pilot.finish()
    assert result.returncode == 4, result
    assert result.summary["stop_reason"] == "startup-error"


# -- drop-in for EWMS's own client library (issue 12) -------------------------------------------


async def test_oms_mqclient_publisher_and_consumer_around_our_pilot(
    broker: ewms_mq.RabbitMQBroker,
    queues: tuple[str, str],
    env_for: Any,
    pilots: Any,
    amqp_url: str,
    management_url: str,
) -> None:
    import mqclient

    qin, qout = queues
    await ewms_mq.apply_dlq_policy(ewms_mq.ManagementAPI.for_broker(broker.address, management_url), qin)
    a = ewms_mq.parse_address(amqp_url)

    def upstream(name: str) -> mqclient.Queue:
        address = f"{a.username}@{a.host}:{a.port}"
        return mqclient.Queue("rabbitmq", address=address, name=name, auth_token=a.password, timeout=2)

    sent = [{"pixel": i} for i in range(10)] + [{"pixel": "poison"}]
    async with upstream(qin).open_pub() as pub:  # redeclares our queue: no 406
        for item in sent:
            await pub.send(item)
    script = (
        "import json,sys; d=json.load(open(sys.argv[1]));"
        "sys.exit(3) if d['pixel']=='poison' else json.dump({'llh': d['pixel']*0.5}, open(sys.argv[2],'w'))"
    )
    env = env_for(
        TASK_ARGS=f'{sys.executable} -c "{script}" {{{{INFILE}}}} {{{{OUTFILE}}}}',
        INFILE_EXT=".json",
        OUTFILE_EXT=".json",
        STOP_LISTENING_ON_TASK_ERROR="no",
        MAX_CONSECUTIVE_FAILURES="0",
    )
    result = await (await pilots(env)).finish()
    assert result.summary["events_done"] == 10 and result.summary["events_failed"] == 3
    received = []
    async with upstream(qout).open_sub() as sub:
        async for item in sub:
            received.append(item)
    assert sorted(r["llh"] for r in received) == [i * 0.5 for i in range(10)]
    assert await drain(broker, ewms_mq.dlq_name(qin)) == [{"pixel": "poison"}]
