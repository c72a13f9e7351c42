"""ewms_mq vs raw pika on the same broker, queue type and message size, in one run.

    python bench/mq_throughput.py [--messages 20000] [--url amqp://guest:guest@127.0.0.1:5672/]

Raw pika uses BlockingConnection, the way most pika code is written: publish without and
with publisher confirms (each publish waits for its confirm), consume+ack with prefetch.
ewms_mq is measured doing the same work, and also as it is meant to be used for bulk
(`publish_many`, confirms pipelined), with oms-mqclient's zstd envelope and with plain JSON.
Targets (issue 2): consume+ack >= 0.7 x raw, publish with confirms >= 0.7 x raw with confirms.
"""

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable

import pika

import ewms_mq
from ewms_mq import WireFormat

PAYLOAD_BYTES = 100
PREFETCH = 100
QUORUM = {"x-queue-type": "quorum"}


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def raw_pika(url: str, queue: str, count: int, confirm: bool) -> tuple[float, float]:
    """(publish msg/s, consume+ack msg/s) with a BlockingConnection."""
    body = b"x" * PAYLOAD_BYTES
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments=QUORUM)
    if confirm:
        channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2)
    start = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", queue, body, properties)
    published = time.perf_counter() - start

    channel.basic_qos(prefetch_count=PREFETCH)
    seen = 0

    def on_message(ch: pika.adapters.blocking_connection.BlockingChannel, method, _props, _body) -> None:  # type: ignore[no-untyped-def]
        nonlocal seen
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == count:
            ch.stop_consuming()

    start = time.perf_counter()
    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    consumed = time.perf_counter() - start
    channel.queue_delete(queue)
    connection.close()
    return _rate(count, published), _rate(count, consumed)


async def ewms(url: str, queue: str, count: int, wire_format: WireFormat, batch: bool) -> tuple[float, float]:
    """(publish msg/s, consume+ack msg/s) with ewms_mq; every publish is confirmed."""
    data = "x" * (PAYLOAD_BYTES - 2)  # a JSON string of 100 bytes
    async with await ewms_mq.connect(url, wire_format=wire_format) as broker:
        await broker.declare_queue(queue, dlq=False)
        start = time.perf_counter()
        if batch:
            for offset in range(0, count, 1000):
                await broker.publish_many(queue, [data] * min(1000, count - offset))
        else:
            for _ in range(count):
                await broker.publish(queue, data)
        published = time.perf_counter() - start
        seen = 0
        start = time.perf_counter()
        async with broker.consume(queue, prefetch=PREFETCH) as messages:
            async for msg in messages:
                _ = msg.data  # decode, as a real consumer would
                await msg.ack()
                seen += 1
                if seen == count:
                    break
        consumed = time.perf_counter() - start
        await broker.delete_queue(queue, dlq=False)
    return _rate(count, published), _rate(count, consumed)


def _queue() -> str:
    return f"bench-mq-{uuid.uuid4().hex[:8]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    n, url = args.messages, args.url
    print(f"{n} messages of {PAYLOAD_BYTES} B, quorum queue, prefetch {PREFETCH}, broker {url.split('@')[-1]}")

    results: dict[str, float] = {}

    def run(label: str, fn: Callable[[], tuple[float, float]]) -> None:
        pub, con = fn()
        results[f"{label} publish"], results[f"{label} consume+ack"] = pub, con
        print(f"  {label:<34} publish {pub:9.0f} msg/s   consume+ack {con:9.0f} msg/s", flush=True)

    run("raw pika, no confirms", lambda: raw_pika(url, _queue(), n, confirm=False))
    run("raw pika, confirm each", lambda: raw_pika(url, _queue(), n, confirm=True))
    run("ewms_mq envelope, confirm each", lambda: asyncio.run(ewms(url, _queue(), n, WireFormat.ENVELOPE, False)))
    run("ewms_mq json, confirm each", lambda: asyncio.run(ewms(url, _queue(), n, WireFormat.JSON, False)))
    run("ewms_mq envelope, publish_many", lambda: asyncio.run(ewms(url, _queue(), n, WireFormat.ENVELOPE, True)))
    run("ewms_mq json, publish_many", lambda: asyncio.run(ewms(url, _queue(), n, WireFormat.JSON, True)))

    raw_confirm = results["raw pika, confirm each publish"]
    raw_consume = max(results["raw pika, no confirms consume+ack"], results["raw pika, confirm each consume+ack"])
    print("ratios (target >= 0.70):")
    for label in ("ewms_mq envelope, confirm each", "ewms_mq json, confirm each"):
        print(f"  {label:<34} publish/raw-confirm {results[label + ' publish'] / raw_confirm:5.2f}")
    for label in ("ewms_mq envelope, publish_many", "ewms_mq json, publish_many"):
        print(f"  {label:<34} publish/raw-confirm {results[label + ' publish'] / raw_confirm:5.2f}")
    for label in ("ewms_mq envelope, confirm each", "ewms_mq json, confirm each"):
        print(f"  {label:<34} consume+ack/raw     {results[label + ' consume+ack'] / raw_consume:5.2f}")
    envelope_cost = (
        results["ewms_mq json, confirm each consume+ack"] / results["ewms_mq envelope, confirm each consume+ack"]
    )
    print(f"  envelope vs plain JSON, consume+ack: envelope is {envelope_cost:4.2f}x slower")


if __name__ == "__main__":
    main()
