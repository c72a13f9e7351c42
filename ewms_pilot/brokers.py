"""The pilot's broker connections: the only module that imports `ewms_mq`.

Input and output queues may live on different brokers with different tokens (EWMS gives
each queue its own address and token), so there is one connection per distinct
(address, token) pair, shared when both queues are on the same one.
"""

from __future__ import annotations

import contextlib
import logging
from types import TracebackType

import ewms_mq

from .config import ConfigError, PilotConfig
from .errors import StartupError

LOGGER = logging.getLogger(__name__)

BrokerError = ewms_mq.MQError


class BrokerStartupError(StartupError):
    """The broker cannot be reached, refused us, or lacks a queue (exit code 3)."""


class Brokers:
    """The incoming and outgoing connections (possibly the same one)."""

    def __init__(
        self, incoming: ewms_mq.RabbitMQBroker, outgoing: ewms_mq.RabbitMQBroker, all_: list[ewms_mq.RabbitMQBroker]
    ) -> None:
        self.incoming = incoming
        self.outgoing = outgoing
        self._all = all_

    async def close(self) -> None:
        for broker in self._all:
            try:
                await broker.close()
            except Exception as exc:  # closing is best effort at exit
                LOGGER.warning("closing a broker connection failed: %r", exc)

    async def __aenter__(self) -> Brokers:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def connect(config: PilotConfig) -> Brokers:
    """Open one connection per distinct (address, token)."""
    wanted = {
        "INCOMING": (
            config.queue_incoming_broker_address,
            config.queue_incoming_auth_token,
            config.queue_incoming_broker_type or "rabbitmq",
        ),
        "OUTGOING": (
            config.queue_outgoing_broker_address,
            config.queue_outgoing_auth_token,
            config.queue_outgoing_broker_type or "rabbitmq",
        ),
    }
    opened: dict[tuple[str, str, str], ewms_mq.RabbitMQBroker] = {}
    try:
        for direction, key in wanted.items():
            if key not in opened:
                opened[key] = await _connect_one(direction, *key)
    except BaseException:
        for broker in opened.values():
            with contextlib.suppress(Exception):
                await broker.close()
        raise
    return Brokers(opened[wanted["INCOMING"]], opened[wanted["OUTGOING"]], list(opened.values()))


async def _connect_one(direction: str, address: str, token: str, broker_type: str) -> ewms_mq.RabbitMQBroker:
    variable = f"EWMS_PILOT_QUEUE_{direction}_BROKER_ADDRESS"
    try:
        return await ewms_mq.connect(address, auth_token=token or None, broker_type=broker_type)
    except ewms_mq.BrokerAuthError as exc:
        raise BrokerStartupError(f"{variable}/_AUTH_TOKEN: the broker refused the credentials: {exc}") from None
    except ewms_mq.MQError as exc:
        if isinstance(exc, ValueError):  # an address that cannot be parsed is a config error
            raise ConfigError(variable, str(exc)) from None
        raise BrokerStartupError(f"{variable}: cannot connect to the broker: {exc}") from None
    except ValueError as exc:
        raise ConfigError(variable, str(exc)) from None
