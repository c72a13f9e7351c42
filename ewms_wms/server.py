"""Wiring: the REST application, the database, the broker admin and the two loops, as one service.

`WMS(config).start()` binds the port (0 picks a free one, as tests do), ensures the database
indexes and starts the provisioner and janitor loops; `stop()` undoes all of it. Tests may
start it without the loops and drive `wms.provisioner.run_once()` / `wms.janitor.run_once()`
themselves, with their own clock.
"""

import logging
import time
import urllib.parse
from collections.abc import Callable

import tornado.httpserver
import tornado.netutil
import tornado.web

from ewms_rest.app import build_app
from ewms_rest.logs import keep_secrets_out_of_logs
from ewms_rest.service import HTTPService
from ewms_rest.validation import RequestValidator, load_openapi

from .broker import BrokerAdmin
from .config import Config, mask_url
from .context import AppContext
from .database import Database
from .handlers import HANDLERS, NotFoundHandler
from .janitor import Janitor
from .loops import WorkflowLocks
from .model import BrokerSettings
from .provisioner import Provisioner

LOGGER = logging.getLogger(__name__)


def broker_settings(config: Config) -> BrokerSettings:
    """How clients are told to reach the broker."""
    public = config.public_address
    host_part = f"{public.host}:{public.port}"
    if public.vhost != "/":
        host_part += "/" + urllib.parse.quote(public.vhost, safe="")
    return BrokerSettings(
        host_part=host_part,
        per_workflow_users=config.per_workflow_broker_users,
        shared_user=public.username,
        shared_password=public.password,
    )


def build_wms_app(ctx: AppContext) -> tornado.web.Application:
    """The WMS's tornado application: its handlers, JSON 404 for the rest."""
    return build_app(HANDLERS, ctx, ctx.config.rest_tools_auth(), "ewms-wms", NotFoundHandler)


class WMS:
    """The Workflow Management Service."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        keep_secrets_out_of_logs()
        self.config = config
        self.clock = clock
        self.db = Database(config.mongodb_url, config.mongodb_database)
        self.admin = BrokerAdmin(config.broker_url, config.rabbitmq_management_url, config.max_deliveries)
        locks = WorkflowLocks()
        self.provisioner = Provisioner(self.db, self.admin, config, clock, locks)
        self.janitor = Janitor(self.db, self.admin, config, clock, locks)
        self.http = HTTPService()

    @property
    def port(self) -> int | None:
        return self.http.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self, *, run_loops: bool = True) -> None:
        await self.db.ensure_indexes()
        openapi = load_openapi("ewms_wms")
        ctx = AppContext(
            config=self.config,
            db=self.db,
            validator=RequestValidator(openapi),
            openapi=openapi,
            provisioner=self.provisioner,
            janitor=self.janitor,
            broker=broker_settings(self.config),
            clock=self.clock,
        )
        self.http.listen(build_wms_app(ctx), self.config.host, self.config.port, self.config.max_body_bytes)
        if run_loops:
            self.http.run_loops(self.provisioner.run(), self.janitor.run())
        self._log_start()

    def _log_start(self) -> None:
        config = self.config
        LOGGER.info(
            "WMS listening on %s (database %s/%s, broker %s)",
            self.url, mask_url(config.mongodb_url), config.mongodb_database, config.broker_address.masked(),
        )  # fmt: skip
        if not config.per_workflow_broker_users:
            LOGGER.warning(
                "per-workflow broker users are off (WMS_PER_WORKFLOW_BROKER_USERS): every workflow's clients get "
                "the shared credentials of %s and can read each other's queues",
                config.public_address.masked(),
            )

    async def stop(self) -> None:
        await self.http.close()
        await self.provisioner.close()
        await self.admin.close()
        await self.db.close()
