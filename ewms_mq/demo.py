"""A queue round trip a new user can run: `ewms-mq-demo` (README's first command runs it).

Declares a queue with its dead-letter policy, publishes a batch of events with confirms,
consumes them ack-last, shows a poison event landing in `<queue>.dlq`, and cleans up.
"""

import argparse
import asyncio
import sys
import time
import uuid

import ewms_mq


async def run(url: str, management_url: str | None, events: int) -> None:
    queue = f"demo-{uuid.uuid4().hex[:8]}"
    broker = await ewms_mq.connect(url)
    print(f"connected to {broker.address.masked()}")
    api = ewms_mq.ManagementAPI.for_broker(broker.address, management_url)
    try:
        await broker.declare_queue(queue)
        await ewms_mq.apply_dlq_policy(api, queue, max_deliveries=3)
        print(f"declared quorum queue {queue} (+ {ewms_mq.dlq_name(queue)}), at most 3 deliveries per event")

        start = time.perf_counter()
        await broker.publish_many(queue, [{"event": i} for i in range(events)] + [{"event": "poison"}])
        print(f"published {events + 1} events, all confirmed, in {time.perf_counter() - start:.2f} s")

        done, retries = 0, 0
        start = time.perf_counter()
        async with broker.consume(queue, prefetch=50, idle_timeout=2) as messages:
            async for msg in messages:
                if msg.data["event"] == "poison":
                    retries += 1
                    await msg.nack(requeue=True)  # fails every time: the policy parks it
                    continue
                done += 1
                await msg.ack()
        elapsed = time.perf_counter() - start - 2  # minus the idle wait that ended the loop
        print(f"consumed and acked {done} events ({done / max(elapsed, 1e-6):.0f}/s); poison tried {retries} times")
        dead = (await broker.queue_depth(ewms_mq.dlq_name(queue))).messages
        print(f"dead-letter queue holds {dead} event(s)")
    finally:
        await ewms_mq.remove_dlq_policy(api, queue)
        await broker.delete_queue(queue)
        await broker.close()
    print("queues and policy removed; demo done")


def main() -> None:
    parser = argparse.ArgumentParser(description="EWMS message-queue round trip against a real RabbitMQ")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/", help="broker URL or EWMS address")
    parser.add_argument("--management-url", default=None, help="RabbitMQ management API (default: host:15672)")
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    try:
        asyncio.run(run(args.url, args.management_url, args.events))
    except ewms_mq.MQError as exc:
        sys.exit(f"ewms-mq-demo: {exc}\n(is the broker running? `scripts/dev-services` starts it)")


if __name__ == "__main__":
    main()
