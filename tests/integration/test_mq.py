"""ewms_mq against the real broker: the promises of DESIGN §4.1, one test each."""

import asyncio
from collections.abc import Callable

import pytest

import ewms_mq
from ewms_mq import Message, WireFormat

QueueFactory = Callable[[], str]


async def _drain(broker: ewms_mq.RabbitMQBroker, queue: str, *, idle: float = 1.0) -> list[Message]:
    """Every message currently in `queue`, acked."""
    got = []
    async with broker.consume(queue, prefetch=50, idle_timeout=idle) as messages:
        async for msg in messages:
            got.append(msg)
            await msg.ack()
    return got


async def test_round_trip_every_wire_format(amqp_url: str, queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        await broker.publish(queue, {"pixel": 1}, headers={"scan": "a"})
        await broker.publish(queue, [1, 2], wire_format=WireFormat.JSON)
        await broker.publish(queue, b"\x00raw", wire_format=WireFormat.BYTES)
        got = await _drain(broker, queue)
    assert [m.data for m in got] == [{"pixel": 1}, [1, 2], b"\x00raw"]
    assert got[0].headers == {"scan": "a"}
    assert all(m.message_id and len(m.message_id) == 32 for m in got)
    assert all(m.properties.delivery_mode == 2 and m.properties.timestamp for m in got)
    assert [m.delivery_count for m in got] == [0, 0, 0]


async def test_publish_returns_only_when_the_broker_has_it(amqp_url: str, queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        ids = await broker.publish_many(queue, range(500))
        # no waiting: confirmed means enqueued, so a passive declare sees all of them
        assert (await broker.queue_depth(queue)).messages == 500
        assert len(set(ids)) == 500
        with pytest.raises(ewms_mq.QueueNotFound, match="message returned"):
            await broker.publish(queue + "-missing", 1)


async def test_ack_last_unacked_message_goes_to_another_consumer(amqp_url: str, queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as publisher:
        await publisher.declare_queue(queue)
        await publisher.publish(queue, "event-1")
    first = await ewms_mq.connect(amqp_url)
    async with first.consume(queue) as messages:
        held = await anext(messages)
        assert held.data == "event-1" and held.delivery_count == 0
        await first.close()  # dies holding the message, never acked
    async with await ewms_mq.connect(amqp_url) as second:
        async with second.consume(queue, idle_timeout=10) as messages:
            again = await anext(messages)
            assert again.data == "event-1" and again.message_id == held.message_id
            assert again.delivery_count == 1 and again.redelivered
            await again.ack()
        assert (await second.queue_depth(queue)).messages == 0


async def test_acks_made_together_never_cover_a_message_still_outstanding(
    amqp_url: str, queue_factory: QueueFactory
) -> None:
    """Acks of one loop turn go out as one `multiple` ack only below the oldest outstanding message."""
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        await broker.publish_many(queue, range(6))
        holder = await ewms_mq.connect(amqp_url)
        async with holder.consume(queue, prefetch=6) as messages:
            got = [await anext(messages) for _ in range(6)]
            assert [m.data for m in got] == [0, 1, 2, 3, 4, 5]
            # one turn: 0 and 1 (below the outstanding 2), then 3 and 5 (above it); 4 is nacked at once
            await asyncio.gather(got[0].ack(), got[1].ack(), got[3].ack(), got[5].ack(), got[4].nack())
            assert messages.unsettled == 1
            # the broker's view: only 2 is still unacked (4 went back to the queue)
            back = await anext(messages)
            assert back.data == 4 and back.delivery_count == 1
            await back.ack()
            await holder.close()  # dies holding 2
        redelivered = await _drain(broker, queue)
    assert [(m.data, m.delivery_count) for m in redelivered] == [(2, 1)]


async def test_delivery_limit_policy_dead_letters(
    amqp_url: str, management_url: str, queue_factory: QueueFactory
) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        api = ewms_mq.ManagementAPI.for_broker(broker.address, management_url)
        await broker.declare_queue(queue)
        await ewms_mq.apply_dlq_policy(api, queue, max_deliveries=2)
        await broker.publish(queue, "poison")
        await broker.publish(queue, "good")
        deliveries = {"poison": 0, "good": 0}
        async with broker.consume(queue, idle_timeout=2) as messages:
            async for msg in messages:
                deliveries[msg.data] += 1
                await (msg.nack(requeue=True) if msg.data == "poison" else msg.ack())
        assert deliveries == {"poison": 2, "good": 1}
        dead = await _drain(broker, ewms_mq.dlq_name(queue))
        assert [m.data for m in dead] == ["poison"]
        assert dead[0].properties.headers["x-death"][0]["reason"] == "delivery_limit"
        await ewms_mq.remove_dlq_policy(api, queue)
        await ewms_mq.remove_dlq_policy(api, queue)  # idempotent


async def test_reject_dead_letters_at_once(amqp_url: str, management_url: str, queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        await ewms_mq.apply_dlq_policy(ewms_mq.ManagementAPI.for_broker(broker.address, management_url), queue)
        await broker.publish(queue, "bad")
        async with broker.consume(queue) as messages:
            await (await anext(messages)).reject()
        dead = await _drain(broker, ewms_mq.dlq_name(queue))
        assert [m.data for m in dead] == ["bad"]


async def test_heartbeats_flow_while_a_message_is_held(amqp_url: str, queue_factory: QueueFactory) -> None:
    """Hold one message for three heartbeat intervals, then ack it: the ack must count."""
    queue = queue_factory()
    heartbeat = 1
    async with await ewms_mq.connect(amqp_url, heartbeat=heartbeat) as broker:
        await broker.declare_queue(queue)
        await broker.publish(queue, "long task")
        async with broker.consume(queue) as messages:
            msg = await anext(messages)
            await asyncio.sleep(3 * heartbeat + 1)  # the task: holding the message is the point
            await msg.ack()
        assert broker.reconnects == 0
        # had the broker dropped us for missed heartbeats, the message would be back
        assert (await broker.queue_depth(queue)).messages == 0


async def test_idle_timeout_ends_iteration_and_stop_requeues(amqp_url: str, queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        async with broker.consume(queue, idle_timeout=0.5) as messages:
            assert [m async for m in messages] == []
        await broker.publish_many(queue, range(10))
        async with broker.consume(queue, prefetch=10) as messages:
            first = await anext(messages)
            await messages.stop()  # the nine prefetched but not handed out go back
            assert [m async for m in messages] == []
            await first.ack()  # still possible after stop
        rest = await _drain(broker, queue)
        assert sorted(m.data for m in rest) == sorted(set(range(10)) - {first.data})


async def test_clear_errors(amqp_url: str, queue_factory: QueueFactory) -> None:
    address = ewms_mq.parse_address(amqp_url)
    with pytest.raises(ewms_mq.BrokerAuthError, match=r"refused the credentials .*'guest'") as auth:
        await ewms_mq.connect(f"guest:not-the-password@{address.host}:{address.port}")
    assert "not-the-password" not in str(auth.value)
    with pytest.raises(ewms_mq.BrokerUnreachable, match=r"amqp://guest:\*\*\*@127\.0\.0\.1:1/") as down:
        await ewms_mq.connect("guest:s3cret@127.0.0.1:1")
    assert "s3cret" not in str(down.value)
    async with await ewms_mq.connect(amqp_url) as broker:
        missing = queue_factory()
        with pytest.raises(ewms_mq.QueueNotFound, match=missing):
            await broker.queue_depth(missing)
        with pytest.raises(ewms_mq.QueueNotFound, match=missing):
            async with broker.consume(missing):
                pass
    with pytest.raises(ewms_mq.MQError, match="unsupported broker type 'kafka'"):
        await ewms_mq.connect(amqp_url, broker_type="kafka")


async def test_broker_restart_loses_no_confirmed_message(private_rabbitmq, queue_factory: QueueFactory) -> None:  # type: ignore[no-untyped-def]
    """Publish and consume across a broker restart: every confirmed message arrives."""
    queue = queue_factory()
    total = 300
    publisher = await ewms_mq.connect(private_rabbitmq.url, reconnect_timeout=120)
    consumer = await ewms_mq.connect(private_rabbitmq.url, reconnect_timeout=120)
    await publisher.declare_queue(queue)
    received: set[int] = set()
    all_in = asyncio.Event()

    async def consume() -> None:
        async with consumer.consume(queue, prefetch=20) as messages:
            async for msg in messages:
                received.add(msg.data)
                await msg.ack()
                if len(received) == total:
                    all_in.set()
                    return

    consuming = asyncio.create_task(consume())
    for i in range(total):
        if i == total // 2:
            await asyncio.to_thread(private_rabbitmq.restart)
        await publisher.publish(queue, i)
    await asyncio.wait_for(all_in.wait(), timeout=120)
    await consuming
    assert received == set(range(total))
    assert publisher.reconnects == 1 and consumer.reconnects == 1
    await publisher.close()
    await consumer.close()
