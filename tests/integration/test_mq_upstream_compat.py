"""oms-mqclient (EWMS's own client library, the real one from PyPI) and ewms_mq share queues.

Issue 12, points 1-3: same queue declaration (so no 406 on redeclare), same wire format
both ways, EWMS's address form with a token as password, dead-lettering by policy.
"""

from collections.abc import Callable

import mqclient

import ewms_mq

QueueFactory = Callable[[], str]


def _ewms_address(amqp_url: str) -> tuple[str, str]:
    """The URL as EWMS hands it out: `user@host:port/vhost` plus the password as a token."""
    a = ewms_mq.parse_address(amqp_url)
    return f"{a.username}@{a.host}:{a.port}", a.password


def _upstream_queue(amqp_url: str, name: str) -> mqclient.Queue:
    address, token = _ewms_address(amqp_url)
    return mqclient.Queue("rabbitmq", address=address, name=name, auth_token=token, timeout=2)


async def test_upstream_publisher_feeds_ewms_consumer_under_policy(
    amqp_url: str, management_url: str, queue_factory: QueueFactory
) -> None:
    queue = queue_factory()
    address, token = _ewms_address(amqp_url)
    async with await ewms_mq.connect(address, auth_token=token) as broker:
        await broker.declare_queue(queue)
        await ewms_mq.apply_dlq_policy(ewms_mq.ManagementAPI.for_broker(broker.address, management_url), queue)

        sent = [{"pixel": i, "nside": 8} for i in range(20)] + ["a string", 7, None]
        async with _upstream_queue(amqp_url, queue).open_pub() as pub:  # redeclares our queue: no 406
            for item in sent:
                await pub.send(item)

        received = []
        async with broker.consume(queue, prefetch=10, idle_timeout=1) as messages:
            async for msg in messages:
                received.append(msg.data)
                await msg.ack()
        assert received == sent
        assert (await broker.queue_depth(ewms_mq.dlq_name(queue))).messages == 0


async def test_ewms_publisher_feeds_upstream_consumer(amqp_url: str, queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    sent = [{"llh": 1.5 * i, "index": i} for i in range(20)]
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        await broker.publish_many(queue, sent)
    received = []
    async with _upstream_queue(amqp_url, queue).open_sub() as sub:
        async for item in sub:
            received.append(item)
    assert received == sent


async def test_poison_from_upstream_publisher_reaches_dlq(
    amqp_url: str, management_url: str, queue_factory: QueueFactory
) -> None:
    queue = queue_factory()
    async with await ewms_mq.connect(amqp_url) as broker:
        await broker.declare_queue(queue)
        await ewms_mq.apply_dlq_policy(ewms_mq.ManagementAPI.for_broker(broker.address, management_url), queue)
        async with _upstream_queue(amqp_url, queue).open_pub() as pub:
            await pub.send({"poison": True})
        tries = 0
        async with broker.consume(queue, idle_timeout=1) as messages:
            async for msg in messages:
                tries += 1
                await msg.nack(requeue=True)
        assert tries == ewms_mq.management.DEFAULT_MAX_DELIVERIES
        async with broker.consume(ewms_mq.dlq_name(queue), idle_timeout=5) as dead:
            msg = await anext(dead)
            assert msg.data == {"poison": True}
            await msg.ack()
