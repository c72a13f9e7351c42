"""RabbitMQ behind asyncio: the only module that imports pika.

pika's `AsyncioConnection` runs the AMQP connection on the caller's event loop, so
heartbeats keep flowing for as long as the loop is free, however long a caller holds a
message. Every callback-style pika call is turned into an awaitable here; nothing blocks.

Reliability in one paragraph: a publish returns only when the broker confirmed it; a lost
connection is re-opened with backoff and unconfirmed publishes are sent again (at least
once); consumers re-subscribe by themselves, and messages they had not acked come back
from the broker, so a reconnect never loses an event (duplicates are the consumer's to
tolerate, DESIGN §4.1).
"""

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import ssl
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from .address import BrokerAddress
from .errors import BrokerAuthError, BrokerUnreachable, MQError, PublishFailed, QueueNotFound
from .wire import WireFormat, decode, encode

LOGGER = logging.getLogger(__name__)

QUORUM_ARGUMENTS = {"x-queue-type": "quorum"}  # exactly what oms-mqclient declares
DLQ_SUFFIX = ".dlq"
_NOT_FOUND = 404
_CHANNEL_RETRIES = 3


def dlq_name(queue: str) -> str:
    """The dead-letter queue of `queue`."""
    return queue + DLQ_SUFFIX


@dataclasses.dataclass(frozen=True)
class QueueDepth:
    """What a passive declare tells about a queue."""

    messages: int  # ready, not counting unacked deliveries
    consumers: int


def _resolve(future: "asyncio.Future[Any]", value: Any) -> None:
    """Set a result unless the future was already settled (cancelled or failed)."""
    if not future.done():
        future.set_result(value)


class _ConnectionLost(Exception):
    """Internal: the channel under an operation went away; retry after reconnecting."""


class _AsyncChannel:
    """A pika channel whose RPCs are awaitable and fail when the channel closes."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.close_reason: BaseException | None = None
        self._waiters: set[asyncio.Future[Any]] = set()
        self._on_close_hooks: list[Callable[[BaseException], None]] = []
        channel.add_on_close_callback(self._on_close)

    @property
    def is_open(self) -> bool:
        return self.close_reason is None and bool(self.channel.is_open)

    def on_close(self, hook: Callable[[BaseException], None]) -> None:
        self._on_close_hooks.append(hook)

    def _on_close(self, _channel: Channel, reason: BaseException) -> None:
        self.close_reason = reason
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(reason)
        for hook in self._on_close_hooks:
            hook(reason)

    async def call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """Run a pika channel RPC and return its reply frame."""
        if self.close_reason is not None:
            raise self.close_reason
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            method(**kwargs, callback=functools.partial(_resolve, future))
            return await future
        finally:
            self._waiters.discard(future)

    async def close(self) -> None:
        """Close and wait for the broker's CloseOk: every ack sent before is then processed."""
        if self.close_reason is not None:
            return
        closed = asyncio.get_running_loop().create_future()
        self.on_close(lambda _reason: _resolve(closed, None))
        with contextlib.suppress(pika.exceptions.ChannelWrongStateError):
            self.channel.close()
        await closed


def _root_cause(exc: BaseException | str) -> str:
    """The innermost reason pika wraps a failed connection attempt in (e.g. 'connection refused')."""
    while isinstance(exc, BaseException):
        inner = getattr(exc, "exceptions", None) or [a for a in exc.args if isinstance(a, BaseException)]
        if not inner:
            break
        exc = inner[-1]
    return str(exc) or repr(exc)


def _is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code == _NOT_FOUND


class RabbitMQBroker:
    """One AMQP connection: queue admin, confirmed publishing and consumers.

    Make one with `ewms_mq.connect(...)`; close it with `await broker.close()` or use it
    as an async context manager.
    """

    def __init__(
        self,
        address: BrokerAddress,
        *,
        heartbeat: int | None = None,
        wire_format: WireFormat = WireFormat.ENVELOPE,
        reconnect_timeout: float = 300.0,
    ) -> None:
        self.address = address
        self.wire_format = wire_format
        self.reconnect_timeout = reconnect_timeout
        self._params = _connection_parameters(address, heartbeat)
        self._connection: AsyncioConnection | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._failure: MQError | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._publisher: _Publisher | None = None
        self._publisher_lock = asyncio.Lock()
        self._consumers: weakref.WeakSet[Consumer] = weakref.WeakSet()  # whose queued acks `close` sends first
        self.reconnects = 0  # how often a lost connection was re-opened

    # -- connection life cycle ------------------------------------------------------------

    async def open(self) -> None:
        """Open the connection, raising a clear error when it cannot be had."""
        self._connection = await self._open_connection()
        self._ready.set()
        LOGGER.info("connected to %s", self.address.masked())

    async def _open_connection(self) -> AsyncioConnection:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def on_open_error(_conn: AsyncioConnection, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(self._open_error(exc))

        AsyncioConnection(
            self._params,
            on_open_callback=functools.partial(_resolve, opened),
            on_open_error_callback=on_open_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=loop,
        )
        return await opened

    def _open_error(self, exc: BaseException | str) -> MQError:
        where = self.address.masked()
        if isinstance(exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError):
            return BrokerAuthError(f"broker at {where} refused the credentials for user {self.address.username!r}")
        if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
            return BrokerAuthError(f"broker at {where} denied access to vhost {self.address.vhost!r}")
        return BrokerUnreachable(f"cannot connect to broker at {where}: {_root_cause(exc)}")

    def _on_connection_closed(self, connection: AsyncioConnection, reason: BaseException) -> None:
        if connection is not self._connection:
            return  # a connection that never opened, or an old one
        self._ready.clear()
        if self._closing:
            return
        LOGGER.warning("connection to %s lost (%s); reconnecting", self.address.masked(), reason)
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.2
        while not self._closing:
            try:
                self._connection = await self._open_connection()
            except BrokerAuthError as exc:
                self._fail(exc)
                return
            except BrokerUnreachable as exc:
                if time.monotonic() + delay > deadline:
                    self._fail(BrokerUnreachable(f"{exc} (gave up after {self.reconnect_timeout:.0f} s)"))
                    return
                await asyncio.sleep(delay)  # backoff between attempts, not a synchronisation stand-in
                delay = min(delay * 2, 5.0)
                continue
            LOGGER.info("reconnected to %s", self.address.masked())
            self.reconnects += 1
            self._ready.set()
            return

    def _fail(self, exc: MQError) -> None:
        LOGGER.error("%s", exc)
        self._failure = exc
        self._ready.set()  # wake every waiter so it sees the failure

    async def wait_ready(self) -> AsyncioConnection:
        """The open connection, waiting through a reconnect if one is under way."""
        await self._ready.wait()
        if self._failure is not None:
            raise self._failure
        if self._closing or self._connection is None:
            raise MQError(f"connection to {self.address.masked()} is closed")
        return self._connection

    async def open_channel(self) -> _AsyncChannel:
        """A new channel on the current connection."""
        while True:
            connection = await self.wait_ready()
            opened: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
            try:
                connection.channel(on_open_callback=functools.partial(_resolve, opened))
            except pika.exceptions.ConnectionWrongStateError:
                self._ready.clear()  # the close callback is about to run; wait for the reconnect
                continue
            channel = _AsyncChannel(await opened)
            return channel

    async def close(self) -> None:
        """Close the connection; unacked deliveries go back to their queues (acks made before are sent)."""
        for consumer in list(self._consumers):
            consumer._send_acks()
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        connection = self._connection
        if connection is None or connection.is_closed:
            return
        closed = asyncio.Event()
        connection.add_on_close_callback(lambda *_: closed.set())
        if not connection.is_closing:
            connection.close()
        await closed.wait()

    async def __aenter__(self) -> "RabbitMQBroker":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- queues ---------------------------------------------------------------------------

    async def declare_queue(self, name: str, *, dlq: bool = True) -> None:
        """Declare `name` (and `<name>.dlq`) as durable quorum queues, as oms-mqclient does.

        No other arguments: the delivery limit and dead-lettering come from a policy
        (`ewms_mq.management`), so EWMS's own clients can redeclare the queue without a 406.
        """
        for queue in [name, dlq_name(name)] if dlq else [name]:
            await self._admin(
                lambda ch, q=queue: ch.call(  # type: ignore[misc]
                    ch.channel.queue_declare, queue=q, durable=True, arguments=QUORUM_ARGUMENTS
                )
            )

    async def delete_queue(self, name: str, *, dlq: bool = True) -> None:
        """Delete `name` (and its DLQ); a missing queue is not an error."""
        for queue in [name, dlq_name(name)] if dlq else [name]:
            await self._admin(lambda ch, q=queue: ch.call(ch.channel.queue_delete, queue=q))  # type: ignore[misc]

    async def queue_depth(self, name: str) -> QueueDepth:
        """Ready messages and consumers of `name`; `QueueNotFound` when it does not exist."""
        frame = await self._admin(lambda ch: ch.call(ch.channel.queue_declare, queue=name, passive=True), queue=name)
        return QueueDepth(messages=frame.method.message_count, consumers=frame.method.consumer_count)

    async def _admin(self, operation: Callable[[_AsyncChannel], Any], queue: str | None = None) -> Any:
        """Run one admin RPC on a short-lived channel, mapping broker refusals to errors."""
        channel = await self.open_channel()
        try:
            return await operation(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == _NOT_FOUND and queue is not None:
                raise QueueNotFound(f"queue {queue!r} not found on {self.address.masked()}") from None
            raise MQError(f"broker at {self.address.masked()} refused: {exc.reply_text}") from None
        finally:
            await channel.close()

    # -- publishing -----------------------------------------------------------------------

    async def publish(
        self,
        queue: str,
        data: Any,
        *,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
        wire_format: WireFormat | None = None,
    ) -> str:
        """Publish one message and return its id once the broker confirmed it."""
        body, properties = self._prepare(data, headers, message_id, wire_format)
        await self._publish_confirmed(queue, body, properties)
        return str(properties.message_id)

    async def publish_many(
        self, queue: str, items: Iterable[Any], *, wire_format: WireFormat | None = None
    ) -> list[str]:
        """Publish a batch, pipelining the confirms; returns when every message is confirmed."""
        prepared = [self._prepare(data, None, None, wire_format) for data in items]
        await asyncio.gather(*(self._publish_confirmed(queue, b, p) for b, p in prepared))
        return [str(p.message_id) for _, p in prepared]

    def _prepare(
        self, data: Any, headers: dict[str, Any] | None, message_id: str | None, wire_format: WireFormat | None
    ) -> tuple[bytes, pika.BasicProperties]:
        wire_format = wire_format or self.wire_format
        body, content_type, content_encoding = encode(data, headers, wire_format)
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id or uuid.uuid4().hex,
            content_type=content_type,
            content_encoding=content_encoding,
            timestamp=int(time.time()),
            # the envelope carries the headers itself; other formats use AMQP headers
            headers=None if wire_format is WireFormat.ENVELOPE else headers,
        )
        return body, properties

    async def _publish_confirmed(self, queue: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Send until confirmed: across reconnects (bounded by `reconnect_timeout`), and up to
        `_CHANNEL_RETRIES` times when the broker itself closes the channel."""
        broker_closes = 0
        while True:
            publisher = await self._get_publisher()
            try:
                await publisher.publish(queue, body, properties)
                return
            except _ConnectionLost as exc:
                if self._failure is not None:
                    raise self._failure from None
                broker_closes += publisher.closed_by_broker
                if broker_closes >= _CHANNEL_RETRIES:
                    raise PublishFailed(f"broker closed the publishing channel: {exc}") from None
                LOGGER.info("publish of %s interrupted (%s); sending again", properties.message_id, exc)

    async def _get_publisher(self) -> "_Publisher":
        async with self._publisher_lock:
            if self._publisher is None or not self._publisher.is_open:
                self._publisher = await _Publisher.open(self)
            return self._publisher

    # -- consuming ------------------------------------------------------------------------

    def consume(self, queue: str, *, prefetch: int = 1, idle_timeout: float | None = None) -> "Consumer":
        """An async context manager and iterator of `Message`s from `queue`.

        Iteration ends after `idle_timeout` seconds without a message (None: never).
        """
        consumer = Consumer(self, queue, prefetch=prefetch, idle_timeout=idle_timeout)
        self._consumers.add(consumer)
        return consumer


class _Publisher:
    """A confirm-mode channel: each publish gets a future resolved by the broker's ack."""

    def __init__(self, broker: RabbitMQBroker, channel: _AsyncChannel) -> None:
        self._broker = broker
        self._channel = channel
        self._next_tag = 1
        self._pending: collections.OrderedDict[int, tuple[asyncio.Future[None], str]] = collections.OrderedDict()
        self._returned: set[str] = set()
        self.closed_by_broker = False
        channel.on_close(self._on_close)

    @classmethod
    async def open(cls, broker: RabbitMQBroker) -> "_Publisher":
        channel = await broker.open_channel()
        publisher = cls(broker, channel)
        channel.channel.add_on_return_callback(publisher._on_return)
        await channel.call(channel.channel.confirm_delivery, ack_nack_callback=publisher._on_confirm)
        return publisher

    @property
    def is_open(self) -> bool:
        return self._channel.is_open

    async def publish(self, queue: str, body: bytes, properties: pika.BasicProperties) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tag = self._next_tag
        self._next_tag += 1
        self._pending[tag] = (future, properties.message_id)
        try:
            # mandatory: an unroutable message (no such queue) comes back instead of vanishing
            self._channel.channel.basic_publish("", queue, body, properties, mandatory=True)
        except (pika.exceptions.ChannelWrongStateError, pika.exceptions.StreamLostError) as exc:
            self._pending.pop(tag, None)
            raise _ConnectionLost(str(exc)) from None
        await future
        if properties.message_id in self._returned:
            self._returned.discard(properties.message_id)
            raise QueueNotFound(f"queue {queue!r} not found on {self._broker.address.masked()} (message returned)")

    def _on_return(self, _ch: Channel, _method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        self._returned.add(properties.message_id)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        tags = self._confirmed_tags(method.delivery_tag, method.multiple)
        for tag in tags:
            future, message_id = self._pending.pop(tag)
            if future.done():
                continue
            if ok:
                future.set_result(None)
            else:
                future.set_exception(PublishFailed(f"broker rejected message {message_id} (nack)"))

    def _confirmed_tags(self, delivery_tag: int, multiple: bool) -> list[int]:
        if not multiple:
            return [delivery_tag] if delivery_tag in self._pending else []
        tags = []
        for tag in self._pending:
            if tag > delivery_tag:
                break
            tags.append(tag)
        return tags

    def _on_close(self, reason: BaseException) -> None:
        self.closed_by_broker = isinstance(reason, pika.exceptions.ChannelClosedByBroker)
        pending, self._pending = self._pending, collections.OrderedDict()
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(_ConnectionLost(str(reason)))


class Message:
    """One delivery. `ack`/`nack`/`reject` it exactly once, from the event loop's thread."""

    __slots__ = ("_channel", "_consumer", "_decoded", "_settled", "body", "delivery_tag", "properties")

    def __init__(
        self,
        consumer: "Consumer",
        channel: _AsyncChannel,
        delivery_tag: int,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        self._consumer = consumer
        self._channel = channel
        self.delivery_tag = delivery_tag
        self.properties = properties
        self.body = body
        self._decoded: tuple[Any, dict[str, Any] | None] | None = None
        self._settled = False

    def _decode(self) -> tuple[Any, dict[str, Any] | None]:
        if self._decoded is None:
            self._decoded = decode(self.body, self.properties.content_type)
        return self._decoded

    @property
    def data(self) -> Any:
        """The payload: a JSON value, or bytes. Raises `DecodeError` for a corrupt envelope."""
        return self._decode()[0]

    @property
    def headers(self) -> dict[str, Any]:
        """The envelope's headers, or the AMQP headers of a non-envelope message."""
        envelope_headers = self._decode()[1]
        if envelope_headers is not None:
            return envelope_headers
        return {k: v for k, v in (self.properties.headers or {}).items() if not k.startswith("x-")}

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id  # type: ignore[no-any-return]

    @property
    def delivery_count(self) -> int:
        """How often the broker delivered this message before (0 on the first delivery)."""
        return int((self.properties.headers or {}).get("x-delivery-count", 0))

    @property
    def redelivered(self) -> bool:
        return self.delivery_count > 0

    async def ack(self) -> None:
        """Done: the broker forgets the message.

        The ack leaves at the end of this turn of the event loop (or when the consumer or the
        connection closes, if sooner), together with the others made in the same turn: see
        `Consumer._send_acks`. Acks made one after the other without waiting on anything else
        in between (`for m in done: await m.ack()`) are one turn.
        """
        if self._settled:
            raise MQError(f"message {self.message_id} was already acked, nacked or rejected")
        self._settled = True
        self._consumer._queue_ack(self)

    async def nack(self, requeue: bool = True) -> None:
        """Not done: back to the queue (`requeue=True`) for another try, counted by the broker."""
        self._settle(lambda ch: ch.basic_nack(self.delivery_tag, requeue=requeue), "nack")

    async def reject(self) -> None:
        """Never retry: dead-lettered when the queue has a dead-letter policy, else dropped."""
        self._settle(lambda ch: ch.basic_reject(self.delivery_tag, requeue=False), "reject")

    def _settle(self, action: Callable[[Channel], None], verb: str) -> None:
        if self._settled:
            raise MQError(f"message {self.message_id} was already acked, nacked or rejected")
        self._settled = True
        self._consumer._settled(self)
        if not self._channel.is_open:
            # the channel died with the connection: the broker has already put it back
            LOGGER.info("%s of %s skipped: its channel closed, the broker redelivers it", verb, self.message_id)
            return
        try:
            action(self._channel.channel)
        except (pika.exceptions.ChannelWrongStateError, pika.exceptions.StreamLostError) as exc:
            LOGGER.info("%s of %s lost with the connection (%s); the broker redelivers it", verb, self.message_id, exc)


_STOP = object()  # ends iteration
_WAKE = object()  # re-evaluates the idle deadline


class Consumer:
    """Messages from one queue on a channel of its own, re-subscribing after reconnects."""

    def __init__(self, broker: RabbitMQBroker, queue: str, *, prefetch: int, idle_timeout: float | None) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        self._broker = broker
        self.queue = queue
        self.prefetch = prefetch
        self.idle_timeout = idle_timeout
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._channel: _AsyncChannel | None = None
        self._consumer_tag: str | None = None
        self._stopped = False
        self._unsettled: set[Message] = set()
        self._acks: list[Message] = []  # acked by the caller in this turn of the loop, not sent yet
        self._acks_scheduled = False
        self._resubscribe_task: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()

    @property
    def unsettled(self) -> int:
        """Delivered messages not yet acked, nacked or rejected."""
        return len(self._unsettled)

    async def __aenter__(self) -> "Consumer":
        await self._subscribe()
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._send_acks()
        await self.stop()
        if self._resubscribe_task is not None:
            self._resubscribe_task.cancel()
        if self._channel is not None:
            await self._channel.close()  # anything still unacked goes back to the queue

    async def _subscribe(self) -> None:
        channel = await self._broker.open_channel()
        try:
            await channel.call(channel.channel.basic_qos, prefetch_count=self.prefetch)
            frame = await channel.call(
                channel.channel.basic_consume,
                queue=self.queue,
                # bound now: deliveries can arrive before this coroutine resumes
                on_message_callback=functools.partial(self._on_message, channel),
            )
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == _NOT_FOUND:
                raise QueueNotFound(f"queue {self.queue!r} not found on {self._broker.address.masked()}") from None
            raise MQError(f"broker refused to consume {self.queue!r}: {exc.reply_text}") from None
        self._consumer_tag = frame.method.consumer_tag
        channel.channel.add_on_cancel_callback(self._on_cancelled_by_broker)
        channel.on_close(self._on_channel_closed)
        self._channel = channel
        self._last_activity = time.monotonic()

    def _on_message(
        self,
        channel: _AsyncChannel,
        _ch: Channel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        message = Message(self, channel, method.delivery_tag, properties, body)
        self._unsettled.add(message)
        self._inbox.put_nowait(message)

    def _on_cancelled_by_broker(self, _frame: pika.frame.Method) -> None:
        self._inbox.put_nowait(QueueNotFound(f"queue {self.queue!r} was deleted while consuming"))

    def _on_channel_closed(self, reason: BaseException) -> None:
        if self._stopped:
            return
        if _is_not_found(reason):
            self._inbox.put_nowait(QueueNotFound(f"queue {self.queue!r} not found: {reason}"))
            return
        LOGGER.warning("consumer of %r lost its channel (%s); re-subscribing", self.queue, reason)
        self._resubscribe_task = asyncio.get_running_loop().create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            await self._subscribe()
        except MQError as exc:
            self._inbox.put_nowait(exc)
            return
        LOGGER.info("consumer of %r re-subscribed", self.queue)
        self._inbox.put_nowait(_WAKE)  # restart the idle clock of a waiting iterator

    def _settled(self, message: Message) -> None:
        self._unsettled.discard(message)

    def _queue_ack(self, message: Message) -> None:
        """Queue the ack for the batch sent at the end of this turn of the loop."""
        self._unsettled.discard(message)
        self._acks.append(message)
        if not self._acks_scheduled:
            self._acks_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)

    def _send_acks(self) -> None:
        """Send the acks queued in this turn of the loop, as few frames as the broker allows.

        Every ack is one Raft command on a quorum queue and one frame from us, per message. When
        several messages are done in one turn (the confirms of their outputs arrived together, a
        batch of results was recorded), one `basic.ack` with `multiple` covers all those older
        than every message still outstanding on the channel — it acks every unacked delivery up
        to its tag, so it may not reach one that is still running. The others go one by one, at
        once: an ack held back would hold its prefetch slot and, after a crash, its event's redo.
        """
        self._acks_scheduled = False
        queued, self._acks = self._acks, []
        by_channel: dict[_AsyncChannel, list[int]] = {}
        for message in queued:
            by_channel.setdefault(message._channel, []).append(message.delivery_tag)
        for channel, tags in by_channel.items():
            if not channel.is_open:
                # the channel died with the connection: the broker has already put them back
                LOGGER.info("%d ack(s) skipped: their channel closed, the broker redelivers them", len(tags))
                continue
            outstanding = [m.delivery_tag for m in self._unsettled if m._channel is channel]
            oldest = min(outstanding, default=None)
            covered = [t for t in tags if oldest is None or t < oldest]
            alone = [t for t in tags if oldest is not None and t > oldest]
            try:
                if covered:
                    channel.channel.basic_ack(max(covered), multiple=len(covered) > 1)
                for tag in alone:
                    channel.channel.basic_ack(tag)
            except (pika.exceptions.ChannelWrongStateError, pika.exceptions.StreamLostError) as exc:
                LOGGER.info("%d ack(s) lost with the connection (%s); the broker redelivers them", len(tags), exc)

    async def stop(self) -> None:
        """Take no more messages: cancel the subscription and requeue the undelivered.

        Messages already handed to the caller can still be acked or nacked.
        """
        if self._stopped:
            return
        self._stopped = True
        channel = self._channel
        if channel is not None and channel.is_open and self._consumer_tag is not None:
            # if the channel closes meanwhile, the broker requeues on its own
            with contextlib.suppress(pika.exceptions.AMQPError):
                await channel.call(channel.channel.basic_cancel, consumer_tag=self._consumer_tag)
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if isinstance(item, Message):
                await item.nack(requeue=True)
        self._inbox.put_nowait(_STOP)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        while True:
            item = await self._next_item()
            if item is _STOP:
                self._inbox.put_nowait(_STOP)  # keep later calls ending too
                raise StopAsyncIteration
            if item is _WAKE:
                continue
            if isinstance(item, BaseException):
                raise item
            self._last_activity = time.monotonic()
            return item  # type: ignore[no-any-return]

    async def _next_item(self) -> Any:
        if self.idle_timeout is None:
            return await self._inbox.get()
        while True:
            remaining = self._last_activity + self.idle_timeout - time.monotonic()
            if remaining <= 0:
                return _STOP if self._is_subscribed() else await self._inbox.get()
            try:
                return await asyncio.wait_for(self._inbox.get(), remaining)
            except TimeoutError:
                continue

    def _is_subscribed(self) -> bool:
        return self._channel is not None and self._channel.is_open


def _connection_parameters(address: BrokerAddress, heartbeat: int | None) -> pika.ConnectionParameters:
    kwargs: dict[str, Any] = {
        "host": address.host,
        "port": address.port,
        "virtual_host": address.vhost,
        "credentials": pika.PlainCredentials(address.username, address.password),
        "connection_attempts": 1,
        "socket_timeout": 10,
    }
    if heartbeat is not None:
        kwargs["heartbeat"] = heartbeat
    if address.tls:
        kwargs["ssl_options"] = pika.SSLOptions(ssl.create_default_context(), address.host)
    return pika.ConnectionParameters(**kwargs)
