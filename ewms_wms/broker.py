"""The WMS's hands on RabbitMQ: a workflow's queues, their dead-letter policies, its broker user.

Queues are declared through `ewms_mq` exactly as `oms-mqclient` declares them (quorum, no other
arguments); the delivery limit and the route to `<queue>.dlq` are a policy per queue, set over
the management API (DESIGN §4.1, issue 12). Every call here is idempotent, so a provisioning
attempt that died half-way is simply run again.

The per-workflow user may configure and read only its own queues (and read their DLQs). It may
write to the default exchange, which RabbitMQ checks per exchange, not per routing key: read
isolation holds between workflows, write isolation cannot on the default exchange.
"""

import asyncio
import dataclasses
import logging
import re

import ewms_mq
from ewms_mq import BrokerAddress, ManagementAPI, RabbitMQBroker, dlq_name

LOGGER = logging.getLogger(__name__)
RECONNECT_TIMEOUT = 30.0  # past this the attempt fails and the provisioner's backoff takes over
_NOTHING = "^$"


@dataclasses.dataclass(frozen=True)
class BrokerUser:
    """A workflow's own broker login."""

    name: str
    password: str = dataclasses.field(repr=False)


def _alternation(names: list[str]) -> str:
    return "^(" + "|".join(re.escape(n) for n in names) + ")$" if names else _NOTHING


def permissions(queues: list[str]) -> dict[str, str]:
    """Regexes letting a user open (declare), publish to and consume from `queues`, and read their DLQs."""
    return {
        "configure": _alternation(queues),
        "write": _alternation(["amq.default", *queues]),
        "read": _alternation([*queues, *(dlq_name(q) for q in queues)]),
    }


def dlq_only_permissions(queues: list[str]) -> dict[str, str]:
    """After the queues are gone: only reading what was dead-lettered."""
    return {"configure": _NOTHING, "write": _NOTHING, "read": _alternation([dlq_name(q) for q in queues])}


class BrokerAdmin:
    """Declares, polices and deletes queues; creates and restricts per-workflow users."""

    def __init__(self, broker_url: str, management_url: str | None, max_deliveries: int) -> None:
        self.address: BrokerAddress = ewms_mq.parse_address(broker_url)
        self.api = ManagementAPI.for_broker(self.address, management_url)
        self.max_deliveries = max_deliveries
        self._broker: RabbitMQBroker | None = None
        self._connect_lock = asyncio.Lock()

    async def _connection(self) -> RabbitMQBroker:
        async with self._connect_lock:
            if self._broker is None:
                self._broker = await ewms_mq.connect(self.address.url(), reconnect_timeout=RECONNECT_TIMEOUT)
            return self._broker

    async def _on_broker(self, action: str, queues: list[str], dlq: bool) -> None:
        """Run `declare_queue`/`delete_queue` for each queue; a dead connection is dropped for the next try."""
        broker = await self._connection()
        try:
            for queue in queues:
                await getattr(broker, action)(queue, dlq=dlq)
        except (ewms_mq.BrokerUnreachable, ewms_mq.BrokerAuthError):
            await self._drop(broker)
            raise

    async def _drop(self, broker: RabbitMQBroker) -> None:
        async with self._connect_lock:
            if self._broker is broker:
                self._broker = None
        try:
            await broker.close()
        except ewms_mq.MQError as exc:
            LOGGER.info("closing a failed broker connection: %s", exc)

    async def provision(self, queues: list[str], user: BrokerUser | None) -> None:
        """The queues and their DLQs exist with their policies, and `user` (if any) may use them."""
        if user is not None:
            await self.ensure_user(user, queues)
        await self._on_broker("declare_queue", queues, dlq=True)
        for queue in queues:
            await ewms_mq.apply_dlq_policy(
                self.api, queue, vhost=self.address.vhost, max_deliveries=self.max_deliveries
            )

    async def delete_queues(self, queues: list[str], user: str | None) -> None:
        """Remove the queues and their policies; keep the DLQs (and let the user only read those)."""
        if user is not None:
            await self._set_permissions(user, dlq_only_permissions(queues))
        await self._on_broker("delete_queue", queues, dlq=False)
        for queue in queues:
            await ewms_mq.remove_dlq_policy(self.api, queue, vhost=self.address.vhost)

    async def delete_dlqs(self, queues: list[str], user: str | None) -> None:
        """Remove the DLQs and the workflow's user: nothing of the workflow is left on the broker."""
        await self._on_broker("delete_queue", [dlq_name(q) for q in queues], dlq=False)
        if user is not None:
            await self.api.delete_user(user)

    async def ensure_user(self, user: BrokerUser, queues: list[str]) -> None:
        """Create (or reset) the user with its password and the permissions for `queues` only."""
        await self.api.put_user(user.name, user.password)
        await self._set_permissions(user.name, permissions(queues))

    async def _set_permissions(self, user: str, perms: dict[str, str]) -> None:
        await self.api.set_permissions(user, vhost=self.address.vhost, **perms)

    async def close(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.close()
