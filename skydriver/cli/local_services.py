"""The whole system on this machine: the WMS, one TMS (`local` pilots) and skydriver (`local` scanners).

Each run gets fresh random secrets (never printed or logged: they reach the services through their
environment only), tokens minted from them in files of mode 600, free ports, and databases of its
own, so a run never sees a previous run's workflows or backlog. The broker and MongoDB are the dev
services: `scripts/dev-services` starts them when we run from a checkout, otherwise they are taken
from `AMQP_URL`, `RABBITMQ_MANAGEMENT_URL` and `MONGODB_URL` (or the flags).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from rest_tools.client import RestClient

from ewms_config import mask_url
from ewms_rest.client import RestError, call
from ewms_rest.tokens import mint_token

from .deployment import checkout_root, write_private
from .supervisor import ServiceFailed, Supervisor, log_tail

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGODB_URL = "mongodb://127.0.0.1:27017"
LOCATION = "local"
TOKEN_LIFETIME_S = 7 * 24 * 3600  # long enough for a --keep-running session; the secret dies with the run
WMS_ISSUER = "ewms-wms"
SKYDRIVER_ISSUER = "skydriver"
# the services' configuration is local-scan's to set: a stray exported variable must not change it
WITHHELD_PREFIXES = ("WMS_", "TMS_", "SKYDRIVER_", "SKYSCAN_", "EWMS_")
CLEANUP_POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class Backends:
    amqp_url: str
    mongodb_url: str
    management_url: str | None  # None: the WMS derives it from the broker URL


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker and database (default: scripts/dev-services in a checkout)")
    group.add_argument("--amqp-url", default=os.environ.get("AMQP_URL"), help="RabbitMQ ($AMQP_URL)")
    group.add_argument("--management-url", default=os.environ.get("RABBITMQ_MANAGEMENT_URL"),
                       help="RabbitMQ management API ($RABBITMQ_MANAGEMENT_URL)")  # fmt: skip
    group.add_argument("--mongodb-url", default=os.environ.get("MONGODB_URL"), help="MongoDB ($MONGODB_URL)")
    group.add_argument("--no-dev-services", action="store_true", help="never run scripts/dev-services")


async def backends(args: argparse.Namespace, log_dir: Path) -> Backends:
    """The broker and database to use, started by scripts/dev-services when needed and possible."""
    found = {"AMQP_URL": args.amqp_url, "MONGODB_URL": args.mongodb_url}
    root = checkout_root()
    if not all(found.values()) and root and not args.no_dev_services:
        found = {**await _dev_services(root, args.mongodb_url, log_dir / "dev-services.log"), **_given(found)}
    chosen = Backends(
        amqp_url=found["AMQP_URL"] or DEFAULT_AMQP_URL,
        mongodb_url=found["MONGODB_URL"] or DEFAULT_MONGODB_URL,
        management_url=args.management_url,
    )
    for name, url in (("RabbitMQ", chosen.amqp_url), ("MongoDB", chosen.mongodb_url)):
        await _reachable(name, url)
    return chosen


def _given(urls: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in urls.items() if value}


async def _dev_services(root: Path, mongodb_url: str | None, log: Path) -> dict[str, str | None]:
    """Run scripts/dev-services (idempotent: it only starts what is down) and read its KEY=value lines."""
    env = {**os.environ, **({"MONGODB_URL": mongodb_url} if mongodb_url else {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(root / "scripts" / "dev-services"), env=env, stdout=asyncio.subprocess.PIPE, stderr=err
        )
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise ServiceFailed(f"scripts/dev-services failed (exit {proc.returncode}); the end of {log}:\n{log_tail(log)}")
    pairs = (line.partition("=") for line in out.decode().splitlines())
    urls: dict[str, str | None] = {key: value for key, sep, value in pairs if sep}
    if mongodb_url:
        urls.pop("MONGODB_URL", None)  # it prints a given one masked
    return urls


async def _reachable(name: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    default_port = {"amqp": 5672, "amqps": 5671}.get(parts.scheme, 27017)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        raise ServiceFailed(
            f"{name} at {mask_url(url)} does not answer: start it (scripts/dev-services in a checkout) "
            "or point --amqp-url/--mongodb-url at one"
        ) from None
    writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class LocalSystem:
    """The running services of one run, and what it takes to talk to them."""

    skydriver_url: str
    wms_url: str
    token_file: Path  # role `user` at skydriver: for you
    wms_admin_token_file: Path  # role `admin` at the WMS: to see the queues of every workflow go
    user_token: str = dataclasses.field(repr=False)
    wms_admin_token: str = dataclasses.field(repr=False)


class Launch:
    """One run's secrets, tokens, ports and directories; `start` brings the services up in order."""

    def __init__(self, home: Path, run_id: str, backends: Backends, *, workers: int, reco_runner: str, grace: float):
        self.home = home
        self.run_id = run_id
        self.backends = backends
        self.workers = workers
        self.reco_runner = reco_runner
        self.grace = grace
        self._wms_secret = secrets.token_urlsafe(48)
        self._skydriver_secret = secrets.token_urlsafe(48)
        self.tokens_dir = home / "run" / "tokens"

    def _token_file(self, name: str, token: str) -> Path:
        return write_private(self.tokens_dir / f"{name}.token", token + "\n")

    def _wms_token(self, subject: str, role: str) -> str:
        return mint_token(self._wms_secret, subject, role, issuer=WMS_ISSUER, lifetime_seconds=TOKEN_LIFETIME_S)

    async def start(self, supervisor: Supervisor) -> LocalSystem:
        wms_port, skydriver_port = free_port(), free_port()
        wms = supervisor.start("wms", "ewms_wms", self.wms_env(wms_port), f"http://127.0.0.1:{wms_port}")
        await supervisor.wait_healthy(wms, "/v1/")
        assert wms.url is not None
        supervisor.start("tms", "ewms_tms", self.tms_env(wms.url))
        skydriver_env = self.skydriver_env(skydriver_port, wms.url)
        skydriver = supervisor.start("skydriver", "skydriver", skydriver_env, f"http://127.0.0.1:{skydriver_port}")
        await supervisor.wait_healthy(skydriver, "/")
        supervisor.check()  # the TMS has no health route: it must at least still be running
        wms_admin_token = self._wms_token("local-scan", "admin")
        user_token = mint_token(
            self._skydriver_secret, "local-user", "user", issuer=SKYDRIVER_ISSUER, lifetime_seconds=TOKEN_LIFETIME_S
        )
        return LocalSystem(
            skydriver_url=f"http://127.0.0.1:{skydriver_port}",
            wms_url=wms.url,
            token_file=self._token_file("user", user_token),
            wms_admin_token_file=self._token_file("wms-admin", wms_admin_token),
            user_token=user_token,
            wms_admin_token=wms_admin_token,
        )

    def wms_env(self, port: int) -> dict[str, str]:
        env = {
            "WMS_MONGODB_URL": self.backends.mongodb_url,
            "WMS_MONGODB_DATABASE": f"ewms_wms_local_{self.run_id}",
            "WMS_BROKER_URL": self.backends.amqp_url,
            "WMS_AUTH_SECRET": self._wms_secret,
            "WMS_HOST": "127.0.0.1",
            "WMS_PORT": str(port),
            "WMS_LOG_FORMAT": "text",
            "WMS_PROVISION_POLL_SECONDS": "1",
            "WMS_JANITOR_POLL_SECONDS": "1",
            "WMS_DLQ_RETENTION_SECONDS": "0",  # a local run's dead letters are in the scan's dead_tasks already
        }
        if self.backends.management_url:
            env["WMS_RABBITMQ_MANAGEMENT_URL"] = self.backends.management_url
        return env

    def tms_env(self, wms_url: str) -> dict[str, str]:
        return {
            "TMS_WMS_URL": wms_url,
            "TMS_WMS_TOKEN_FILE": str(self._token_file("tms-wms", self._wms_token("tms-local", "tms"))),
            "TMS_CLUSTER_LOCATION": LOCATION,
            "TMS_SCHEDULER": "local",
            "TMS_STATE_DIR": str(self.home / "state" / "tms"),
            "TMS_LOCAL_STOP_PILOTS_ON_EXIT": "true",
            "TMS_LOCAL_KILL_GRACE": str(self.grace),
            "TMS_STARTER_INTERVAL": "1",
            "TMS_WATCHER_INTERVAL": "1",
            "TMS_STOPPER_INTERVAL": "1",
            "TMS_MAX_BACKOFF": "5",
        }

    def skydriver_env(self, port: int, wms_url: str) -> dict[str, str]:
        return {
            "SKYDRIVER_MONGODB_URL": self.backends.mongodb_url,
            "SKYDRIVER_MONGODB_DATABASE": f"skydriver_local_{self.run_id}",
            "SKYDRIVER_AUTH_SECRET": self._skydriver_secret,
            "SKYDRIVER_HOST": "127.0.0.1",
            "SKYDRIVER_PORT": str(port),
            "SKYDRIVER_WMS_URL": wms_url,
            "SKYDRIVER_WMS_TOKEN_FILE": str(self._token_file("skydriver-wms", self._wms_token("skydriver", "user"))),
            "SKYDRIVER_LAUNCHER": "local",
            "SKYDRIVER_LOCAL_STATE_DIR": str(self.home / "state" / "scanners"),
            "SKYDRIVER_RECO_RUNNER": self.reco_runner,
            "SKYDRIVER_DEFAULT_CLUSTERS": json.dumps({LOCATION: self.workers}),
            "SKYDRIVER_STARTER_INTERVAL": "0.5",
            "SKYDRIVER_LOG_FORMAT": "text",
        }


async def queues_removed(wms_url: str, admin_token: str, within_s: float, workflow_ids: list[str] | None) -> bool:
    """Whether the WMS removed the queues, DLQs and broker users of these workflows (all when None) in time.

    Stopping the services earlier would leave them on the broker for good: the janitor that removes
    them runs in the WMS, once the TMS has confirmed every pilot of a workflow gone.
    """
    query: dict[str, Any] = {"mq_state": {"$ne": "dlqs-deleted"}}
    if workflow_ids is not None:
        query["workflow_id"] = {"$in": workflow_ids}
    body = {"query": query, "projection": ["workflow_id"]}
    client = RestClient(wms_url, token=admin_token, timeout=10, retries=0)
    try:
        async with asyncio.timeout(within_s):
            while True:
                answer = await call(client, "POST", "/v1/query/workflows", body, service="the WMS")
                if not answer["workflows"]:
                    return True
                await asyncio.sleep(CLEANUP_POLL_S)
    except (RestError, TimeoutError):
        return False
    finally:
        client.close()
