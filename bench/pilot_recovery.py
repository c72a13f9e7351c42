"""(d) Recovery after a pilot is SIGKILLed mid-scan: how long until its unfinished events are done elsewhere.

    python bench/pilot_recovery.py [--nsides 8:0,64:12] [--seed 7]

A `pandel_track` scan runs through the system (services as processes, as `skydriver local-scan`
starts them) with 2 pilots, whose log level is DEBUG so that each logs `event <id> received` (with
`(redelivered)` when the broker hands it out again) and `event <id> done in <s>`. When both pilots
have done a third of the first nside's tasks, one of them — caught while it has an event in hand —
gets SIGKILL.

Definitions (all times from the pilots' logs, millisecond wall clock, and the bench's own clock at
the kill on the same machine):

* **in flight**: the events the killed pilot had received but not finished (its log, which ends at
  the kill). With the pilots' prefetch of 1 this is the one event it was computing; its input was
  never acked, so the broker requeues it when the pilot's connection drops.
* **redelivery time**: SIGKILL → the surviving pilot logs receiving that event again (redelivered):
  the broker notices the dead connection, requeues the event, and hands it to the survivor once
  that one has acked the event it had in hand (prefetch 1).
* **recovery time**: SIGKILL → the surviving pilot logs that event done (its output published and
  confirmed, its input acked). This is the figure of the part.
* throughput before (both pilots, the 5 s before the kill, or since both were working) and after
  (the survivor, the 5 s after): events done per second. Nobody replaces the killed pilot (a batch
  slot that died stays dead), so the rate after is one pilot's: it does not "recover" to the rate
  before.

The scan must still finish successfully, every task done, none dead-lettered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

from common import Part, print_part, say
from local_system import SCAN_GUARD, BenchSystem, PilotEvent, read_pilot_log
from scan_scaling import RECO, make_event, parse_nsides

KILL_AT_FRACTION = 1 / 3
WINDOW = 5.0


def in_hand(events: list[PilotEvent]) -> list[str]:
    """Event ids received and not done."""
    done = {e.event_id for e in events if e.kind == "done"}
    return [e.event_id for e in events if e.kind in ("received", "redelivered") and e.event_id not in done]


def rate(events: list[PilotEvent], start: float, end: float) -> float:
    return sum(1 for e in events if e.kind == "done" and start <= e.wall < end) / (end - start)


async def kill_one_pilot(system: BenchSystem, first_level_tasks: int) -> tuple[float, Path, int]:
    """Wait until a third of the first level is done, then SIGKILL a pilot holding an event; (time, job dir, pid)."""
    guard = time.monotonic() + SCAN_GUARD
    while True:
        if time.monotonic() > guard:
            raise TimeoutError(f"the scan's pilots did not get going within {SCAN_GUARD:.0f}s")
        dirs = system.pilot_dirs()
        logs = {d: read_pilot_log(d / "stderr") for d in dirs}
        done = sum(1 for events in logs.values() for e in events if e.kind == "done")
        if len(dirs) == 2 and done >= KILL_AT_FRACTION * first_level_tasks:
            break
        system.supervisor.check()
        await asyncio.sleep(0.2)
    victim = dirs[0]
    pid = pilot_pid_of(system, victim)
    deadline = time.monotonic() + 10
    while True:  # catch it with an event in hand (not between two events)
        if in_hand(read_pilot_log(victim / "stderr")) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.001)
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    say(f"  SIGKILL to pilot {pid} ({victim.name}) after {done} events done")
    return killed_at, victim, pid


def pilot_pid_of(system: BenchSystem, jobdir: Path) -> int:
    """The pilot process whose data directory is `jobdir` (the TMS's local scheduler sets it per job)."""
    for pid in system.pilot_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST={jobdir}".encode() in environ:
            return pid
    raise RuntimeError(f"no pilot process for {jobdir}")


async def measure(nsides_text: str, seed: int) -> dict[str, object]:
    nsides = parse_nsides(nsides_text)
    event = make_event(seed)
    first_level = 12 * int(next(iter(nsides))) ** 2 * 2  # pixels x the reco's 2 vertex seeds
    async with BenchSystem("recovery", pilot_log_level="DEBUG") as system:
        scan_id, posted = await system.post(system.request(event, RECO, nsides, 2))
        killed_at, victim, _ = await kill_one_pilot(system, first_level)
        manifest, completed = await system.wait_complete(scan_id)
        system.workflows.append(str(manifest["ewms_workflow_id"]))
        await system.pilots_gone()
        logs = {d: read_pilot_log(d / "stderr") for d in system.pilot_dirs()}
    killed = logs.pop(victim)
    survivor = next(iter(logs.values()))
    lost = in_hand(killed)
    redelivered = {e.event_id: e.wall for e in survivor if e.kind == "redelivered"}
    done = {e.event_id: e.wall for e in survivor if e.kind == "done"}
    both_working = max(min(e.wall for e in events if e.kind == "done") for events in (killed, survivor))
    before = max(killed_at - WINDOW, both_working)
    return {
        "scan_id": scan_id,
        "state": manifest["scan_state"],
        "progress": manifest.get("progress") or {},
        "dead_tasks": len(manifest.get("dead_tasks") or []),
        "scan_seconds": completed - posted,
        "killed_at_seconds": killed_at - posted,
        "in_flight": lost,
        "redelivery": [redelivered.get(e, float("nan")) - killed_at for e in lost],
        "recovery": [done.get(e, float("nan")) - killed_at for e in lost],
        "rate_before": rate(killed, before, killed_at) + rate(survivor, before, killed_at),
        "rate_after": rate(survivor, killed_at, killed_at + WINDOW),
        "survivor_redelivered": len(redelivered),
        "killed_done": sum(1 for e in killed if e.kind == "done"),
        "survivor_done": len(done),
    }


def run(nsides_text: str, seed: int) -> Part:
    part = Part("(d) Recovery after a pilot is SIGKILLed mid-scan")
    found = asyncio.run(measure(nsides_text, seed))
    lost = found["in_flight"]
    assert isinstance(lost, list)
    recovery = [float(v) for v in found["recovery"]]  # type: ignore[attr-defined]
    redelivery = [float(v) for v in found["redelivery"]]  # type: ignore[attr-defined]
    progress = found["progress"]
    assert isinstance(progress, dict)
    ok = found["state"] == "SCAN_FINISHED_SUCCESSFULLY" and not found["dead_tasks"]
    outcome = f"{found['state']}, {progress.get('tasks_done')} of {progress.get('tasks_expected')} tasks"
    part.add("scan outcome after the kill", f"{outcome}, {found['dead_tasks']} dead", "finished, nothing lost", ok)
    part.add("events in flight at the killed pilot (received, not done)", str(len(lost)))
    if lost:
        part.add("redelivery time: SIGKILL -> the survivor receives them again", f"{max(redelivery) * 1000:.0f} ms")
        worst = max(recovery)
        part.add("recovery time: SIGKILL -> the survivor has done them all", f"{worst * 1000:.0f} ms")
    part.add(
        "events done per second: both pilots, up to 5 s before the kill -> the survivor, 5 s after",
        f"{found['rate_before']:.0f} -> {found['rate_after']:.0f}",
    )
    part.add("redelivered events the survivor received", str(found["survivor_redelivered"]))
    part.add(
        "events done: killed pilot / survivor",
        f"{found['killed_done']} / {found['survivor_done']} (scan {found['scan_seconds']:.0f} s, "
        f"kill at {found['killed_at_seconds']:.0f} s)",
    )
    part.method = [__doc__.split("\n\n", 2)[2].strip(), f"Scan: {RECO}, nsides {nsides_text}, `random_track({seed})`."]
    return part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nsides", default="8:0,64:12")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print_part(run(args.nsides, args.seed))


if __name__ == "__main__":
    main()
