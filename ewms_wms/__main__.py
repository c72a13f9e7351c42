"""`python -m ewms_wms` / `ewms-wms`: run the WMS until SIGTERM or SIGINT."""

import asyncio
import logging
import signal
import sys

from ewms_rest import logs

from .config import Config, ConfigError
from .server import WMS

LOGGER = logging.getLogger("ewms_wms")


async def serve(config: Config) -> None:
    """Start the service, wait for a stop signal, stop cleanly."""
    wms = WMS(config)
    await wms.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    LOGGER.info("stopping")
    await wms.stop()


def main() -> None:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"ewms-wms: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.setup(config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
