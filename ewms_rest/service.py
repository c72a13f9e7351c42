"""What running a REST service takes, the same for the WMS and skydriver: a listening port, loops beside it,
and a process that stops cleanly on SIGTERM or SIGINT.

`HTTPService` binds the tornado app (port 0 picks a free one, as tests do) and owns the background
loops, so `close()` stops both in the right order. `run_service` is a service's `main()`: a
configuration error is one line naming the variable and exit code 2, never a traceback.
"""

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import tornado.httpserver
import tornado.netutil
import tornado.web

from ewms_config import ConfigError

from . import logs

LOGGER = logging.getLogger(__name__)
C = TypeVar("C")


class HTTPService:
    """A tornado app on a port, and the asyncio tasks (loops) that run beside it."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._loops: list[asyncio.Task[None]] = []

    def listen(self, app: tornado.web.Application, host: str, port: int, max_body_bytes: int) -> int:
        """Serve `app` on host:port; returns the port bound (the free one chosen for port 0)."""
        sockets = tornado.netutil.bind_sockets(port, host)
        self._http = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=max_body_bytes)
        self._http.add_sockets(sockets)
        self.port = int(sockets[0].getsockname()[1])
        return self.port

    def run_loops(self, *loops: Coroutine[Any, Any, None]) -> None:
        self._loops = [asyncio.create_task(loop) for loop in loops]

    async def close(self) -> None:
        """Stop taking requests, end open connections, cancel the loops."""
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve_until_signalled(service: Service) -> None:
    """Start the service, wait for SIGTERM or SIGINT, stop it cleanly."""
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    LOGGER.info("stopping")
    await service.stop()


def run_service(
    program: str,
    load_config: Callable[[], C],
    make_service: Callable[[C], Service],
    log_settings: Callable[[C], tuple[str, str]],
) -> None:
    """A service's `main()`: read the config (exit 2 naming the problem), set up logs, serve until signalled."""
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"{program}: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.setup(*log_settings(config))
    asyncio.run(serve_until_signalled(make_service(config)))
