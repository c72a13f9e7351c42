"""How much does the pilot cost per event? One run, same broker, four measurements.

1. raw loop: `ewms_mq` consume -> publish (confirmed) -> ack, sequential, in this process;
2. one pilot process with an in-process no-op callable (`async def echo(d): return d`);
3. one pilot process with a `/bin/true` command task (a new process per event);
4. a bare `subprocess.run(["/bin/true"])` loop, the floor for (3).

Every run uses the same prefetch and one event at a time, so the pilot is compared with
the loop it wraps. The four are run in interleaved rounds; the median and the best round
are both reported, because on a shared 2-core machine other work easily doubles a
round's time (the best round is the least disturbed one, as `timeit` advises). A pilot's
rate is read from its own summary (`events_per_second`, first event received to last
event done), so start-up, connecting and the final idle timeout do not count, and no
observer competes for the CPU.

Targets (issue 3): callable pilot >= 0.6 x the raw loop; command task overhead <= 3 ms per
event above the bare spawn.

    python bench/pilot_throughput.py [--callable-events 3000] [--command-events 500] [--rounds 3]
                                     [--data-dir DIR]   # e.g. /dev/shm to leave the disk out
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import ewms_mq

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PREFETCH = 16
TRUE = "/bin/true"
NOOP_MODULE = """
async def echo(data):
    return data
"""


async def fresh_queues(broker: ewms_mq.RabbitMQBroker, n_events: int) -> tuple[str, str]:
    """A new input queue holding `n_events` events, and an empty output queue."""
    tag = uuid.uuid4().hex[:8]
    qin, qout = f"bench-pilot-{tag}-in", f"bench-pilot-{tag}-out"
    await broker.declare_queue(qin, dlq=False)
    await broker.declare_queue(qout, dlq=False)
    for start in range(0, n_events, 1000):
        await broker.publish_many(qin, [{"pixel": i, "nside": 64} for i in range(start, min(n_events, start + 1000))])
    return qin, qout


async def raw_loop(broker: ewms_mq.RabbitMQBroker, n_events: int) -> float:
    """Events per second of the plain consume -> publish -> ack loop."""
    qin, qout = await fresh_queues(broker, n_events)
    try:
        done, started = 0, 0.0
        async with broker.consume(qin, prefetch=PREFETCH) as messages:
            async for msg in messages:
                if done == 0:
                    started = time.monotonic()
                await broker.publish(qout, msg.data)
                await msg.ack()
                done += 1
                if done == n_events:
                    break
        return n_events / (time.monotonic() - started)
    finally:
        await delete(broker, qin, qout)


async def pilot_run(broker: ewms_mq.RabbitMQBroker, n_events: int, task: dict[str, str], workdir: Path) -> float:
    """Events per second of one pilot process, from its own summary."""
    qin, qout = await fresh_queues(broker, n_events)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWMS_PILOT_")}
    env.update(
        EWMS_PILOT_QUEUE_INCOMING=qin,
        EWMS_PILOT_QUEUE_OUTGOING=qout,
        EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS=AMQP_URL,
        EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS=AMQP_URL,
        EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST=str(workdir),
        EWMS_PILOT_PREFETCH=str(PREFETCH),
        EWMS_PILOT_MAX_CONCURRENT_TASKS="1",
        EWMS_PILOT_TIMEOUT_QUEUE_INCOMING="1",
        EWMS_PILOT_CL_LOG="WARNING",
        PYTHONPATH=str(workdir),
        **task,
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ewms_pilot", env=env, stdout=asyncio.subprocess.PIPE
        )
        stdout, _ = await proc.communicate()
        summary: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
        if proc.returncode != 0 or summary["events_done"] != n_events:
            raise RuntimeError(f"pilot run failed: rc={proc.returncode} {summary}")
        return float(summary["events_per_second"])
    finally:
        await delete(broker, qin, qout)


def bare_spawn(n_events: int) -> float:
    """Spawns per second of `/bin/true` with `subprocess.run`, sequentially."""
    started = time.monotonic()
    for _ in range(n_events):
        subprocess.run([TRUE], check=True)
    return n_events / (time.monotonic() - started)


async def delete(broker: ewms_mq.RabbitMQBroker, *queues: str) -> None:
    for q in queues:
        await broker.delete_queue(q, dlq=False)


def line(label: str, rates: list[float]) -> str:
    mid, best = statistics.median(rates), max(rates)
    return f"{label:<38} {mid:8.1f} {best:8.1f} events/s   {1000 / mid:7.3f} {1000 / best:7.3f} ms/event"


async def one_round(broker: ewms_mq.RabbitMQBroker, n_callable: int, n_command: int, workdir: Path) -> list[float]:
    """raw, callable pilot, command pilot, bare spawn: events per second each."""
    raw = await raw_loop(broker, n_callable)
    noop = {"EWMS_PILOT_TASK_CALLABLE": "bench_noop_task:echo"}
    callable_rate = await pilot_run(broker, n_callable, noop, workdir)
    command = {"EWMS_PILOT_TASK_ARGS": TRUE, "EWMS_PILOT_INFILE_EXT": ".json"}
    command_rate = await pilot_run(broker, n_command, command, workdir)
    spawn = await asyncio.to_thread(bare_spawn, n_command)
    return [raw, callable_rate, command_rate, spawn]


async def main(n_callable: int, n_command: int, rounds: int, data_dir: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-pilot-", dir=data_dir) as tmp:
        workdir = Path(tmp)
        (workdir / "bench_noop_task.py").write_text(NOOP_MODULE)
        async with await ewms_mq.connect(AMQP_URL) as broker:
            results = [await one_round(broker, n_callable, n_command, workdir) for _ in range(rounds)]
    raw, callable_rate, command_rate, spawn = (list(col) for col in zip(*results, strict=True))
    print(f"pilot throughput: {os.cpu_count()} cores, prefetch {PREFETCH}, one task at a time, {rounds} rounds")
    print(f"data dir under {data_dir or tempfile.gettempdir()}")
    print(f"{'':<38} {'median':>8} {'best':>8}            {'median':>7} {'best':>7}")
    print(line(f"raw ewms_mq loop ({n_callable} ev)", raw))
    print(line(f"pilot, no-op callable ({n_callable} ev)", callable_rate))
    print(line(f"pilot, {TRUE} command ({n_command} ev)", command_rate))
    print(line(f"bare subprocess.run {TRUE} ({n_command})", spawn))
    ratio = statistics.median(c / r for c, r in zip(callable_rate, raw, strict=True))
    best_ratio = max(callable_rate) / max(raw)
    overhead = statistics.median(1000 / c - 1000 / s for c, s in zip(command_rate, spawn, strict=True))
    best_overhead = 1000 / max(command_rate) - 1000 / max(spawn)
    targets = f"{'':<38} {'median':>8} {'best':>8}"
    print(targets)
    print(f"{'callable pilot / raw loop':<38} {ratio:8.2f} {best_ratio:8.2f}  (target >= 0.60)")
    print(f"{'command overhead, ms/event':<38} {overhead:8.3f} {best_overhead:8.3f}  (target <= 3.00)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callable-events", type=int, default=3000)
    parser.add_argument("--command-events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="parent of the pilots' data dirs (default: $TMPDIR)")
    args = parser.parse_args()
    asyncio.run(main(args.callable_events, args.command_events, args.rounds, args.data_dir))
