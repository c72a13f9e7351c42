"""`python -m skydriver` / `skydriver-server`: run the skydriver service until SIGTERM or SIGINT."""

import asyncio
import logging
import signal
import sys

from ewms_rest import logs

from .config import Config, ConfigError
from .server import SkyDriver

LOGGER = logging.getLogger("skydriver")


async def serve(config: Config) -> None:
    """Start the service, wait for a stop signal, stop cleanly (scanners keep running)."""
    skydriver = SkyDriver(config)
    await skydriver.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    LOGGER.info("stopping")
    await skydriver.stop()


def main() -> None:
    try:
        config = Config.from_env()
        config.wms_bearer_token()  # a missing token file is a configuration error, not a crash later
    except ConfigError as exc:
        print(f"skydriver-server: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.setup(config.log_level, config.log_format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
