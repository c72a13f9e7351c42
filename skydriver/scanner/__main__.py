"""`python -m skydriver.scanner`: the scanner of one scan, configured by `SKYSCAN_*` (set by skydriver's launcher).

Exit codes: 0 when the final skymap is stored, or after SIGTERM/SIGINT (nothing unrecorded was acked:
a restarted scanner continues where this one stopped); 1 after a fatal problem, reported to skydriver
as the scan's `scanner_error`; 2 for a configuration error (the message names the variable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from ewms_config import ConfigError
from ewms_rest import logs

from .api import REST_LOGGER, SkyDriverAPI
from .config import ScannerConfig
from .server import run_scanner

LOGGER = logging.getLogger("skydriver.scanner")


async def serve(config: ScannerConfig) -> int:
    """Run the scan until it ends or a stop signal comes; the exit code."""
    api = SkyDriverAPI.connect(
        config.skydriver_url, config.skydriver_token, config.scan_id, retry_timeout=config.skydriver_retry_timeout
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scanning = asyncio.create_task(run_scanner(config, api))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({scanning, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if scanning.done():
        return scanning.result()
    LOGGER.info("stop signal: stopping; results not yet recorded go back to the queue")
    scanning.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await scanning
    return 0


def main() -> None:
    try:
        config = ScannerConfig.from_env()
    except ConfigError as exc:
        print(f"skydriver.scanner: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    logs.setup(config.log_level, config.log_format)
    for name in (REST_LOGGER, "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    LOGGER.info("configuration: %s", config)
    sys.exit(asyncio.run(serve(config)))


if __name__ == "__main__":
    main()
