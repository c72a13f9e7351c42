"""`python -m ewms_pilot` / `ewms-pilot`: one pilot, configured by its environment.

Exit codes (also in docs/pilot.md), so a TMS can tell a broken node from a broken
workflow without reading logs:

    0  done (idle, no first message, max runtime, drained after SIGTERM/SIGINT)
    1  one or more tasks failed (after EWMS_PILOT_QUARANTINE_TIME)
    2  configuration error (the message names the variable)
    3  broker unreachable, credentials refused, or queue missing
    4  start-up failure on this host (no container platform, image, callable, init step)
    5  internal error in the pilot

stdout carries the JSON summary (last line); logs and the closing failure report go to
stderr.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import signal
import sys
import traceback

from .brokers import BrokerError, BrokerStartupError
from .brokers import connect as connect_brokers
from .chirp import Chirper
from .config import ConfigError, PilotConfig
from .errors import StartupError
from .layout import PilotLayout
from .pilot import Pilot, StopReason
from .summary import Stats, failure_report, write_summary
from .tasks import TaskRunner, build_init_launcher, build_runner, run_init
from .tasks.callable import stuck_callable_threads

LOGGER = logging.getLogger("ewms_pilot")
FIRST_PARTY_LOGGERS = ("ewms_pilot", "ewms_mq")


class ExitCode(enum.IntEnum):
    OK = 0
    TASK_FAILED = 1
    CONFIG = 2
    BROKER = 3
    STARTUP = 4
    INTERNAL = 5


def setup_logging(config: PilotConfig) -> None:
    """Our loggers at EWMS_PILOT_CL_LOG, everyone else's at EWMS_PILOT_CL_LOG_THIRD_PARTY."""
    logging.basicConfig(
        level=config.cl_log_third_party,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    for name in FIRST_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(config.cl_log)


class Session:
    """One pilot run from start-up to exit: turns every outcome into an exit code."""

    def __init__(self, config: PilotConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.chirper = Chirper(config.htchirp, config.htchirp_dest, config.htchirp_ratelimit_interval)
        self.stop_reason = "not-started"
        self.signalled = asyncio.Event()
        self._pilot: Pilot | None = None
        self._starting: asyncio.Task[ExitCode] | None = None

    def on_signal(self, name: str) -> None:
        """During start-up a signal aborts it; during the loop the pilot drains; later it
        only ends the quarantine."""
        first = not self.signalled.is_set()
        self.signalled.set()
        if self._pilot is not None:
            self._pilot.on_signal(name)
        elif first and self._starting is not None and not self._starting.done():
            LOGGER.warning("%s during start-up: exiting", name)
            self._starting.cancel()

    async def run(self) -> int:
        self.chirper.set(Status="Started", StartedTimestamp=int(self.stats.started_wall))
        code = await self._run_guarded()
        if code not in (ExitCode.OK, ExitCode.CONFIG) and self.config.quarantine_time and not self.signalled.is_set():
            await self._quarantine()
        await self._finish(code)
        return int(code)

    async def _run_guarded(self) -> ExitCode:
        self._starting = asyncio.create_task(self._start_and_consume())
        try:
            return await self._starting
        except asyncio.CancelledError:
            if not self.signalled.is_set() or not self._starting.cancelled():
                raise
            self.stop_reason = StopReason.SIGNAL
            return ExitCode.TASK_FAILED if self.stats.failed else ExitCode.OK
        except ConfigError as exc:
            return self._fail(ExitCode.CONFIG, "config-error", f"configuration error: {exc}")
        except (BrokerStartupError, BrokerError) as exc:
            return self._fail(ExitCode.BROKER, "broker-error", f"broker error: {exc}")
        except StartupError as exc:
            return self._fail(ExitCode.STARTUP, "startup-error", f"start-up failed: {exc}")
        except Exception:
            return self._fail(ExitCode.INTERNAL, "internal-error", f"internal error:\n{traceback.format_exc()}")

    def _fail(self, code: ExitCode, reason: str, message: str) -> ExitCode:
        LOGGER.error(message)
        self.stop_reason = reason
        self.chirper.set(Status="FatalError", Error=message)
        return code

    async def _start_and_consume(self) -> ExitCode:
        config = self.config
        layout = PilotLayout.from_parent(config.data_dir_parent_path_on_host, config.infile_ext, config.outfile_ext)
        await _prepare_layout(layout)
        runner = await build_runner(config, layout)
        try:
            await self._init_and_consume(layout, runner)
        finally:
            await runner.aclose()
        if self.stop_reason == StopReason.BROKER_ERROR:
            return ExitCode.BROKER
        return ExitCode.TASK_FAILED if self.stats.failed else ExitCode.OK

    async def _init_and_consume(self, layout: PilotLayout, runner: TaskRunner) -> None:
        config = self.config
        init = await build_init_launcher(config, layout)
        if init is not None:
            self.chirper.set(Status="RunningInitCommand")
            await run_init(config, layout, init)
        async with await connect_brokers(config) as brokers:
            self.chirper.set(Status="AwaitingFirstMessage")
            self._pilot = Pilot(
                config, runner, brokers.incoming, brokers.outgoing, stats=self.stats, chirper=self.chirper
            )
            if self.signalled.is_set():  # a signal arrived while connecting
                self._pilot.on_signal("signal")
            self.stop_reason = await self._pilot.run()

    async def _quarantine(self) -> None:
        """Hold the slot so HTCondor does not hand this broken node the next job at once."""
        LOGGER.warning("quarantining for %gs (EWMS_PILOT_QUARANTINE_TIME)", self.config.quarantine_time)
        await self.chirper.flush()
        try:
            async with asyncio.timeout(self.config.quarantine_time):
                await self.signalled.wait()
            LOGGER.warning("signal received: ending quarantine early")
        except TimeoutError:
            pass

    async def _finish(self, code: ExitCode) -> None:
        """Summary on stdout (and SUMMARY_PATH); the failure report as stderr's last lines."""
        self.chirper.set(Status="Done" if code == ExitCode.OK else "FatalError")
        await self.chirper.flush()
        document = self.stats.summary(str(self.stop_reason), int(code))
        if self.config.summary_path:
            try:
                await asyncio.to_thread(write_summary, document, self.config.summary_path)
            except OSError as exc:
                LOGGER.error("cannot write EWMS_PILOT_SUMMARY_PATH=%s: %s", self.config.summary_path, exc)
        print(json.dumps(document), flush=True)
        if self.stats.failed:
            print(failure_report(self.stats.failures, self.stats.failed), file=sys.stderr, flush=True)


async def _prepare_layout(layout: PilotLayout) -> None:
    try:
        await asyncio.to_thread(layout.prepare)
    except OSError as exc:
        raise StartupError(
            f"cannot create the data directory {layout.root}: {exc} "
            "(set EWMS_PILOT_DATA_DIR_PARENT_PATH_ON_HOST to a writable directory)"
        ) from None


async def amain(config: PilotConfig) -> int:
    """Run one session with SIGTERM/SIGINT wired to a graceful drain."""
    session = Session(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, session.on_signal, sig.name)
    return await session.run()


def main() -> None:
    """Console entry point."""
    try:
        config = PilotConfig.from_env()
    except ConfigError as exc:
        print(f"ewms-pilot: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(ExitCode.CONFIG)
    setup_logging(config)
    LOGGER.info("starting an EWMS pilot: %s", config)
    code = asyncio.run(amain(config))
    if stuck_callable_threads():
        # a timed-out sync callable cannot be stopped, and would block interpreter exit
        LOGGER.warning("%d callable thread(s) still running: exiting without waiting", stuck_callable_threads())
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
