"""`python -m ewms_tms` / `ewms-tms`: run one TMS until SIGTERM or SIGINT.

Exit codes: 0 after a stop signal, 2 for a configuration error (the message names the variable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from .config import Config, ConfigError
from .server import TMS

LOGGER = logging.getLogger("ewms_tms")
QUIET_LOGGERS = ("ewms_tms.rest", "urllib3")  # rest_tools logs every 4xx with a traceback at INFO


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


async def serve(config: Config) -> None:
    """Run the TMS; on a stop signal, cancel its loops and close it cleanly."""
    tms = TMS(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(tms.run())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        LOGGER.info("stopping")
        for task in (runner, stopper):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await tms.aclose()


def main() -> None:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"ewms-tms: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    setup_logging(config.log_level)
    LOGGER.info("configuration: %s", config)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
