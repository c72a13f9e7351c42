"""The WMS as the TMS sees it: its TMS routes (DESIGN §4.3), through `rest_tools.client.RestClient`.

Errors are `ewms_rest.client`'s two kinds, which the loops treat differently: `ServiceUnavailable`
(no answer, a timeout, a 5xx or 429 — try again later, with backoff) and `ServiceRefused` (the WMS
answered and said no: 404, 409, ... — act on it).
"""

from __future__ import annotations

import logging
from typing import Any

from rest_tools.client import ClientCredentialsAuth, RestClient

from ewms_rest.client import ServiceRefused, call

from .config import Config

LOGGER = logging.getLogger(__name__)
ACTIVE_PHASES = ("condor-submit", "pending-stopper", "condor-rm")
ACTIVE_FIELDS = ["taskforce_uuid", "cluster_id", "n_workers", "phase", "workflow_id"]


def rest_client(config: Config) -> RestClient:
    """A client with the configured credentials; no retries of its own (the loops back off)."""
    logger = logging.getLogger("ewms_tms.rest")
    common: dict[str, Any] = {"timeout": config.wms_timeout, "retries": 0, "logger": logger}
    if config.oauth_token_url:
        return ClientCredentialsAuth(
            config.wms_url,
            token_url=config.oauth_token_url,
            client_id=config.oauth_client_id,
            client_secret=config.oauth_client_secret,
            **common,
        )
    return RestClient(config.wms_url, token=config.token(), **common)


class WMS:
    """The TMS routes, for one cluster location and one claimant."""

    def __init__(self, client: RestClient, location: str, claimant: str) -> None:
        self.client = client
        self.location = location
        self.claimant = claimant

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await call(self.client, method, path, body, service="the WMS")

    # -- starter ----------------------------------------------------------------------------------

    async def claim_pending_starter(self) -> dict[str, Any] | None:
        """The next taskforce to start here (a lease held for this claimant), or None."""
        answer = await self.call(
            "GET",
            "/v1/tms/pending-starter/taskforces",
            {"cluster_location": self.location, "claimant": self.claimant},
        )
        return answer or None

    async def confirm_submit(self, uuid: str, body: dict[str, Any]) -> None:
        await self.call("POST", f"/v1/tms/condor-submit/taskforces/{uuid}", body)

    async def report_submit_failed(self, uuid: str, error: str) -> None:
        await self.call("POST", f"/v1/tms/condor-submit/taskforces/{uuid}/failed", {"error": error[:16000]})

    async def mq_profile(self, mqid: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", f"/v1/mqs/mq-profiles/{mqid}")
        return answer

    async def taskforce(self, uuid: str) -> dict[str, Any] | None:
        """The taskforce, or None if the WMS does not know it."""
        try:
            answer: dict[str, Any] = await self.call("GET", f"/v1/taskforces/{uuid}")
        except ServiceRefused as exc:
            if exc.status == 404:
                return None
            raise
        return answer

    # -- stopper ----------------------------------------------------------------------------------

    async def next_pending_stopper(self) -> dict[str, Any] | None:
        answer = await self.call("GET", "/v1/tms/pending-stopper/taskforces", {"cluster_location": self.location})
        return answer or None

    async def confirm_rm(self, uuid: str) -> None:
        await self.call("POST", f"/v1/tms/condor-rm/taskforces/{uuid}")

    async def report_rm_failed(self, uuid: str, error: str) -> None:
        await self.call("POST", f"/v1/tms/condor-rm/taskforces/{uuid}/failed", {"error": error[:16000]})

    # -- watcher ----------------------------------------------------------------------------------

    async def active_taskforces(self) -> list[dict[str, Any]]:
        """Every taskforce here that has (or had) jobs not yet confirmed complete, all pages."""
        query = {"cluster_location": self.location, "phase": {"$in": list(ACTIVE_PHASES)}}
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            body: dict[str, Any] = {"query": query, "projection": ACTIVE_FIELDS}
            if after:
                body["after"] = after
            answer = await self.call("POST", "/v1/query/taskforces", body)
            found.extend(answer["taskforces"])
            after = answer.get("next_after")
            if not after:
                return [tf for tf in found if tf.get("cluster_id") is not None]

    async def report_statuses(self, compound: dict[str, Any], errors: dict[str, Any]) -> list[dict[str, Any]]:
        """Send one batch; returns the WMS's per-taskforce results (207 is read as a normal answer)."""
        body = {"compound_statuses_by_taskforce": compound, "top_task_errors_by_taskforce": errors}
        answer = await self.call("POST", "/v1/tms/statuses/taskforces", body)
        results: list[dict[str, Any]] = answer.get("results", []) if isinstance(answer, dict) else []
        return results

    async def confirm_complete(self, uuid: str, ended: float) -> None:
        await self.call("POST", f"/v1/tms/condor-complete/taskforces/{uuid}", {"condor_complete_ts": ended})
