"""Wiring: the REST application, the database, the WMS client, the launcher and the two loops, as one service.

`SkyDriver(config).start()` binds the port (0 picks a free one, as tests do), ensures the database
indexes and starts the starter and watchdog loops; `stop()` undoes all of it. Tests may start it
without the loops and drive `starter.run_once()` / `watchdog.run_once()` themselves, with their
own clock, and may hand in the launcher to use.
"""

import importlib.metadata
import logging
import platform
import time
from collections.abc import Callable

import tornado.httpserver
import tornado.netutil
import tornado.web

from ewms_rest.app import build_app
from ewms_rest.logs import keep_secrets_out_of_logs
from ewms_rest.service import HTTPService
from ewms_rest.validation import RequestValidator, load_openapi

from .config import Config, mask_url
from .context import AppContext
from .database import Database
from .ewms import EWMSClient
from .handlers import HANDLERS, SkyDriverNotFound
from .launchers import ScannerLauncher, make_launcher
from .scans import Scans
from .starter import Starter
from .watchdog import Watchdog

LOGGER = logging.getLogger(__name__)
DISTRIBUTION = "skydriver-ewms"
# what a manifest's `versions` names besides the service itself: what the scan's results depend on
LIBRARIES = ("numpy", "healpy", "scipy", "pika", "pymongo", "tornado", "wipac-rest-tools")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """skydriver's version, Python's and the libraries'; recorded in every manifest."""
    return {"skydriver": _version(DISTRIBUTION), "python": platform.python_version()} | {
        lib: _version(lib) for lib in LIBRARIES
    }


def build_skydriver_app(ctx: AppContext) -> tornado.web.Application:
    """skydriver's tornado application: its handlers, JSON 404 for the rest."""
    return build_app(HANDLERS, ctx, ctx.config.rest_tools_auth(), "skydriver", SkyDriverNotFound)


class SkyDriver:
    """The skydriver service."""

    def __init__(
        self, config: Config, *, clock: Callable[[], float] = time.time, launcher: ScannerLauncher | None = None
    ) -> None:
        keep_secrets_out_of_logs()
        self.config = config
        self.db = Database(config.mongodb_url, config.mongodb_database)
        self.ewms = EWMSClient(
            config.wms_url,
            config.wms_bearer_token(),
            timeout=config.wms_timeout,
            reco_image=config.reco_image,
            reco_runner=config.reco_runner,
        )
        self.launcher = launcher or make_launcher(config)
        self.scans = Scans(config, self.db, self.ewms, self.launcher, clock, versions())
        self.starter = Starter(self.scans)
        self.watchdog = Watchdog(self.scans)
        self.http = HTTPService()

    @property
    def port(self) -> int | None:
        return self.http.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self, *, run_loops: bool = True) -> None:
        await self.db.ensure_indexes()
        openapi = load_openapi("skydriver")
        ctx = AppContext(self.config, self.db, self.scans, RequestValidator(openapi), openapi, self.scans.versions)
        port = self.http.listen(
            build_skydriver_app(ctx), self.config.host, self.config.port, self.config.max_body_bytes
        )
        self.scans.callback_url = self.config.callback_url(port)
        if run_loops:
            self.http.run_loops(self.starter.run(), self.watchdog.run())
        LOGGER.info(
            "skydriver listening on %s (database %s/%s, WMS %s, %s launcher; scanners call back at %s)",
            self.url, mask_url(self.config.mongodb_url), self.config.mongodb_database, self.config.wms_url,
            self.launcher.name, self.scans.callback_url,
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop serving and the loops; scanners keep running (a restarted skydriver finds them again)."""
        await self.http.close()
        await self.launcher.aclose()
        await self.ewms.aclose()
        await self.db.close()
