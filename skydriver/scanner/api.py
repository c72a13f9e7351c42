"""skydriver's system routes, as the scanner of one scan calls them.

A scan outlives skydriver restarts: the pilots' work goes on in the queues while skydriver is
redeployed. So every call here is retried, with backoff, for as long as skydriver is unavailable
(no answer, a timeout, 5xx, 429), up to `retry_timeout`; only then does `ServiceUnavailable`
reach the caller. A refusal (`ServiceRefused`, 4xx: the scan was deleted, a bug) is not retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from rest_tools.client import RestClient

from ewms_rest.client import ServiceUnavailable, call

LOGGER = logging.getLogger(__name__)
REST_LOGGER = "skydriver.scanner.rest"  # rest_tools logs every refusal with a traceback at INFO: kept quiet
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 15.0
SERVICE = "skydriver"


class SkyDriverAPI:
    """The routes of one scan: its request, event, manifest, result, checkpoints and workflow."""

    def __init__(self, client: RestClient, scan_id: str, *, retry_timeout: float) -> None:
        self.client = client
        self.scan_id = scan_id
        self.retry_timeout = retry_timeout
        self._quoted_id = urllib.parse.quote(scan_id, safe="")
        self._scan_path = f"/scan/{self._quoted_id}"

    @classmethod
    def connect(
        cls, url: str, token: str, scan_id: str, *, timeout: float = 30.0, retry_timeout: float
    ) -> SkyDriverAPI:
        """A client with a `system` token; no retries inside rest_tools (this class backs off itself)."""
        client = RestClient(url, token=token, timeout=timeout, retries=0, logger=logging.getLogger(REST_LOGGER))
        return cls(client, scan_id, retry_timeout=retry_timeout)

    async def scan_request(self) -> dict[str, Any]:
        """The request as stored: reco_algo, nsides, predictive_scanning_threshold, reco_options, ..."""
        answer: dict[str, Any] = await self._call("GET", f"/scan-request/{self._quoted_id}")
        return answer

    async def event(self) -> dict[str, Any]:
        """The event document (skydriver stores it as an object; a JSON string is read too)."""
        answer = await self._call("GET", f"{self._scan_path}/i3-event")
        event = answer["event_i3live_json"]
        return json.loads(event) if isinstance(event, str) else dict(event)

    async def manifest(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", f"{self._scan_path}/manifest")
        return answer

    async def patch_manifest(self, **fields: Any) -> dict[str, Any]:
        """`progress`, `scan_metadata`, `dead_tasks`, `scanner_error`; every PATCH is also a heartbeat."""
        answer: dict[str, Any] = await self._call("PATCH", f"{self._scan_path}/manifest", fields)
        return answer

    async def put_result(
        self, skyscan_result: dict[str, Any], *, is_final: bool, summary: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"skyscan_result": skyscan_result, "is_final": is_final, "summary": summary}
        answer: dict[str, Any] = await self._call("PUT", f"{self._scan_path}/result", body)
        return answer

    async def record(
        self, *, published: Iterable[tuple[int, int]] = (), results: Iterable[Mapping[str, Any]] = ()
    ) -> int:
        """POST a checkpoint (tasks sent, results received); returns its sequence number."""
        body = {"published": [list(pair) for pair in published], "results": [dict(r) for r in results]}
        answer = await self._call("POST", f"{self._scan_path}/checkpoint", body)
        return int(answer["seq"])

    async def checkpoint(self) -> dict[str, list[Any]]:
        """Everything recorded so far: `{"published": [[nside, pixel], ...], "results": [PixelResult dicts]}`."""
        answer: dict[str, list[Any]] = await self._call("GET", f"{self._scan_path}/checkpoint")
        return answer

    async def workflow_finished(self) -> None:
        """Tell the WMS (through skydriver) the workflow is done, so the TMSs remove the remaining pilots."""
        await self._call("POST", f"{self._scan_path}/ewms/actions/finished", {})

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        deadline = time.monotonic() + self.retry_timeout
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                return await call(self.client, method, path, body, service=SERVICE)
            except ServiceUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise ServiceUnavailable(f"{exc} (gave up after {self.retry_timeout:g} s)") from None
                LOGGER.warning("%s %s: %s; trying again in %.1f s", method, path, exc, delay)
                await asyncio.sleep(delay)  # backoff between attempts
                delay = min(delay * 2, MAX_RETRY_DELAY)
