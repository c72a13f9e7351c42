"""skydriver's REST API as the CLI calls it: one method per route, every failure one readable `CliError`.

Requests go through `rest_tools`' `RestClient` (what IceCube's own scripts use) and
`ewms_rest.client.call`, which sorts failures into "unreachable" and "refused"; here each becomes a
sentence saying what to do about it. Retries are off: a person at a terminal wants the answer now.
"""

from __future__ import annotations

import argparse
import dataclasses
import http
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from rest_tools.client import RestClient

from ewms_rest.client import ServiceRefused, ServiceUnavailable, call

from .deployment import Deployment, default_home
from .errors import CliError, Exit

# rest_tools logs every refused request with a traceback at INFO: the CLI says it in one line instead
_REST_LOGGER = logging.getLogger("skydriver.cli.rest")
_REST_LOGGER.setLevel(logging.CRITICAL)

_HINTS = {
    401: "the token is missing, expired or not one skydriver accepts: check --token, --token-file or SKYDRIVER_TOKEN",
    403: "the token lacks the role this needs (people and the alert hook need 'user')",
}


@dataclasses.dataclass(frozen=True)
class Connection:
    url: str
    token: str = dataclasses.field(repr=False)


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (default: $SKYDRIVER_URL / $SKYDRIVER_TOKEN, else local mode's)")
    group.add_argument("--url", help="skydriver's address, e.g. http://127.0.0.1:8000")
    group.add_argument("--token", help="bearer token (prefer --token-file: a command line is visible to others)")
    group.add_argument("--token-file", type=Path, help="file holding the bearer token ($SKYDRIVER_TOKEN_FILE)")
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")


def connection_from(args: argparse.Namespace) -> Connection:
    """Flags first, then the environment, then a deployment `local-scan --keep-running` left behind."""
    local = Deployment.load(default_home())
    url = args.url or os.environ.get("SKYDRIVER_URL") or (local.skydriver_url if local else None)
    if not url:
        raise CliError(
            "no skydriver to talk to: pass --url or set SKYDRIVER_URL "
            "(or start one here with `skydriver local-scan --keep-running`)",
            Exit.USAGE,
        )
    return Connection(url.rstrip("/"), _token(args, local))


def _token(args: argparse.Namespace, local: Deployment | None) -> str:
    if args.token:
        return str(args.token)
    if args.token_file:
        return _read_token(args.token_file)
    if os.environ.get("SKYDRIVER_TOKEN"):
        return os.environ["SKYDRIVER_TOKEN"]
    if os.environ.get("SKYDRIVER_TOKEN_FILE"):
        return _read_token(Path(os.environ["SKYDRIVER_TOKEN_FILE"]))
    if local:
        return _read_token(Path(local.token_file))
    raise CliError("no token: pass --token-file or --token, or set SKYDRIVER_TOKEN", Exit.USAGE)


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read the token file {path}: {exc.strerror}", Exit.USAGE) from None
    if not token:
        raise CliError(f"the token file {path} is empty", Exit.USAGE)
    return token


def refusal_message(exc: ServiceRefused, what: str) -> str:
    """`404 Not Found: scan 1f2e… does not exist` — the status, skydriver's own words, and a hint."""
    phrase = http.HTTPStatus(exc.status).phrase if exc.status in http.HTTPStatus._value2member_map_ else "Error"
    message = f"skydriver answered {exc.status} {phrase} for {what}: {exc.message}"
    hint = _HINTS.get(exc.status)
    return f"{message} ({hint})" if hint else message


class SkyDriverAPI:
    """The user routes of docs/skydriver.md. Use as `async with SkyDriverAPI(connection) as api:`."""

    def __init__(self, connection: Connection, timeout: float = 30.0) -> None:
        self.url = connection.url
        self._rest = RestClient(connection.url, token=connection.token, timeout=timeout, retries=0, logger=_REST_LOGGER)

    async def __aenter__(self) -> SkyDriverAPI:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._rest.close()

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str = "") -> Any:
        """One request; `what` names the object in messages ("scan 1f2e…")."""
        try:
            return await call(self._rest, method, path, body, service="skydriver")
        except ServiceUnavailable as exc:
            raise CliError(f"{exc} (is skydriver running? check --url or SKYDRIVER_URL)", Exit.UNREACHABLE) from None
        except ServiceRefused as exc:
            raise CliError(refusal_message(exc, what or f"{method} {path}"), Exit.REFUSED) from None

    async def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", "/", what="the health check")
        return answer

    async def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        manifest: dict[str, Any] = await self.call("POST", "/scan", request, what="the scan request")
        return manifest

    async def scan_get(self, scan_id: str, route: str = "", **query: Any) -> dict[str, Any]:
        """GET /scan/{id}{route} (route: "/status", "/manifest", "/result", "/i3-event" or "")."""
        answer: dict[str, Any] = await self.call("GET", f"/scan/{scan_id}{route}", query, what=f"scan {scan_id}")
        return answer

    async def find(self, query: dict[str, Any], include_deleted: bool = False) -> list[dict[str, Any]]:
        body = {"filter": query, "include_deleted": include_deleted}
        answer = await self.call("POST", "/scans/find", body, what="the search")
        manifests: list[dict[str, Any]] = answer["manifests"]
        return manifests

    async def stop(self, scan_id: str, delete_completed: bool = False) -> dict[str, Any]:
        body = {"delete_completed_scan": True} if delete_completed else {}
        answer: dict[str, Any] = await self.call("DELETE", f"/scan/{scan_id}", body, what=f"scan {scan_id}")
        return answer

    async def rescan(self, scan_id: str, abort_first: bool = False, replace_scan: bool = False) -> dict[str, Any]:
        body = {"abort_first": abort_first, "replace_scan": replace_scan}
        path = f"/scan/{scan_id}/actions/rescan"
        manifest: dict[str, Any] = await self.call("POST", path, body, what=f"scan {scan_id}")
        return manifest
