"""ewms_mq — the message-queue client every part of SkyDriver + EWMS uses (DESIGN §4.1).

broker = await ewms_mq.connect("amqp://guest:guest@127.0.0.1:5672/")
await broker.declare_queue("q")
await broker.publish("q", {"pixel": 12})             # returns once confirmed
async with broker.consume("q", prefetch=10, idle_timeout=30) as messages:
    async for msg in messages:
        ...                                           # publish the result first,
        await msg.ack()                               # then ack (ack-last)
"""

from .address import BrokerAddress, parse_address
from .errors import (
    BrokerAuthError,
    BrokerUnreachable,
    DecodeError,
    InvalidAddress,
    ManagementError,
    MQError,
    PublishFailed,
    QueueNotFound,
)
from .management import ManagementAPI, apply_dlq_policy, policy_name, remove_dlq_policy
from .rabbitmq import Consumer, Message, QueueDepth, RabbitMQBroker, dlq_name
from .wire import WireFormat

SUPPORTED_BROKER_TYPES = ("rabbitmq",)


async def connect(
    address: str,
    *,
    auth_token: str | None = None,
    broker_type: str = "rabbitmq",
    heartbeat: int | None = None,
    wire_format: WireFormat = WireFormat.ENVELOPE,
    reconnect_timeout: float = 300.0,
) -> RabbitMQBroker:
    """Open a connection to the broker at `address` (URL or EWMS form, token as password)."""
    if broker_type.lower() not in SUPPORTED_BROKER_TYPES:
        raise MQError(f"unsupported broker type {broker_type!r}; supported: {', '.join(SUPPORTED_BROKER_TYPES)}")
    broker = RabbitMQBroker(
        parse_address(address, auth_token),
        heartbeat=heartbeat,
        wire_format=wire_format,
        reconnect_timeout=reconnect_timeout,
    )
    await broker.open()
    return broker


__all__ = [
    "SUPPORTED_BROKER_TYPES",
    "BrokerAddress",
    "BrokerAuthError",
    "BrokerUnreachable",
    "Consumer",
    "DecodeError",
    "InvalidAddress",
    "MQError",
    "ManagementAPI",
    "ManagementError",
    "Message",
    "PublishFailed",
    "QueueDepth",
    "QueueNotFound",
    "RabbitMQBroker",
    "WireFormat",
    "apply_dlq_policy",
    "connect",
    "dlq_name",
    "parse_address",
    "policy_name",
    "remove_dlq_policy",
]
