"""The RabbitMQ management HTTP API: dead-letter policies and per-workflow users.

Queues are declared exactly as `oms-mqclient` declares them (quorum, no other arguments),
because RabbitMQ refuses a redeclaration with different arguments. The delivery limit and
the dead-letter route to `<queue>.dlq` therefore come from a policy matching exactly that
queue: `dead-letter-routing-key` is one fixed value, so one policy serves one queue.
The WMS sets these per workflow; tests and users without a WMS call the same functions.

The same API creates a workflow's own broker user and limits its permissions to that
workflow's queues (see `ManagementAPI.put_user` / `set_permissions`).
"""

import asyncio
import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .address import BrokerAddress
from .errors import ManagementError
from .rabbitmq import dlq_name

DEFAULT_MAX_DELIVERIES = 3  # a message is tried at most this often, then dead-lettered
DEFAULT_MANAGEMENT_PORT = 15672
POLICY_PREFIX = "ewms-dlq-"
POLICY_PRIORITY = 10  # above the broker's defaults, so ours decide for these queues
_HTTP_TIMEOUT = 10.0
_NOT_FOUND = 404


def policy_name(queue: str) -> str:
    """The name of the policy that governs `queue`."""
    return POLICY_PREFIX + queue


def management_url_for(address: BrokerAddress) -> str:
    """The management API next to an AMQP address (same host, port 15672)."""
    scheme = "https" if address.tls else "http"
    return f"{scheme}://{address.host}:{DEFAULT_MANAGEMENT_PORT}"


class ManagementAPI:
    """The few management-API calls this system needs, with the broker's credentials.

    Calls are blocking HTTP (urllib) run in a thread, so the event loop stays free.
    """

    def __init__(self, base_url: str, username: str, password: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or DEFAULT_MANAGEMENT_PORT}"
        # credentials in the URL win over the broker's, as an operator would expect
        user = urllib.parse.unquote(parsed.username) if parsed.username else username
        secret = urllib.parse.unquote(parsed.password) if parsed.password else password
        self._auth = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()

    @classmethod
    def for_broker(cls, address: BrokerAddress, management_url: str | None = None) -> "ManagementAPI":
        return cls(management_url or management_url_for(address), address.username, address.password)

    async def request(self, method: str, path: str, body: Any = None, *, missing_ok: bool = False) -> Any:
        """One API call; with `missing_ok`, a 404 answers None instead of raising."""
        try:
            return await asyncio.to_thread(self._request, method, path, body)
        except ManagementError as exc:
            if missing_ok and exc.status == _NOT_FOUND:
                return None
            raise

    async def put_user(self, name: str, password: str, *, tags: str = "") -> None:
        """Create the user, or reset its password and tags."""
        await self.request("PUT", f"/api/users/{_quote(name)}", {"password": password, "tags": tags})

    async def set_permissions(self, user: str, *, configure: str, write: str, read: str, vhost: str = "/") -> None:
        """Replace `user`'s permissions on `vhost` (each a regex of resource names)."""
        body = {"configure": configure, "write": write, "read": read}
        await self.request("PUT", f"/api/permissions/{_quote(vhost)}/{_quote(user)}", body)

    async def delete_user(self, name: str) -> None:
        """Delete the user; one already gone is fine."""
        await self.request("DELETE", f"/api/users/{_quote(name)}", missing_ok=True)

    def _request(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": self._auth, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise ManagementError(f"{method} {self.base_url}{path}: HTTP {exc.code} {detail}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ManagementError(f"management API at {self.base_url} unreachable: {exc}") from None
        return json.loads(payload) if payload else None


def _quote(segment: str) -> str:
    """One URL path segment (vhost "/" is "%2F")."""
    return urllib.parse.quote(segment, safe="")


async def apply_dlq_policy(
    api: ManagementAPI,
    queue: str,
    *,
    vhost: str = "/",
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
) -> None:
    """Dead-letter a message of `queue` to `<queue>.dlq` once it was delivered `max_deliveries` times.

    RabbitMQ's `delivery-limit` counts *re*deliveries (a limit of 2 allows 3 deliveries), so
    the policy carries `max_deliveries - 1`; callers think in attempts, as DESIGN §4.1 does.
    """
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries must be at least 1, not {max_deliveries}")
    definition = {
        "pattern": f"^{re.escape(queue)}$",
        "apply-to": "queues",
        "priority": POLICY_PRIORITY,
        "definition": {
            "delivery-limit": max_deliveries - 1,
            "dead-letter-exchange": "",
            "dead-letter-routing-key": dlq_name(queue),
        },
    }
    await api.request("PUT", f"/api/policies/{_quote(vhost)}/{_quote(policy_name(queue))}", definition)


async def remove_dlq_policy(api: ManagementAPI, queue: str, *, vhost: str = "/") -> None:
    """Remove the policy of `queue`; a missing policy is not an error."""
    await api.request("DELETE", f"/api/policies/{_quote(vhost)}/{_quote(policy_name(queue))}", missing_ok=True)
