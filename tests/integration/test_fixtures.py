"""The shared fixtures themselves work: broker, management API, queue cleanup, MongoDB, private RabbitMQ."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pika
import pytest
from pymongo import AsyncMongoClient

if TYPE_CHECKING:
    from tests.conftest import ManagementAPI, PrivateRabbitMQ, QueueFactory


def _declare_quorum(ch: Any, name: str) -> None:
    ch.queue_declare(queue=name, durable=True, arguments={"x-queue-type": "quorum"})


def _queue_exists(amqp_url: str, name: str) -> bool:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        conn.channel().queue_declare(queue=name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return False
    finally:
        conn.close()


def test_amqp_url_reachable(amqp_url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        assert conn.is_open
        assert conn.channel().is_open
    finally:
        conn.close()


def test_management_url_answers(management_url: str, management_api: ManagementAPI) -> None:
    assert management_url.startswith("http://") and "@" in management_url
    status, body = management_api("GET", "/api/overview")
    assert status == 200
    assert isinstance(body, dict) and "rabbitmq_version" in body


def test_queue_factory_cleans_up_queues_dlqs_and_policies(
    queue_factory: QueueFactory, amqp_url: str, management_url: str, management_api: ManagementAPI
) -> None:
    a, b = queue_factory(), queue_factory("out")
    assert a != b and a.startswith("test-test_queue_factory") and b.endswith("-out")
    policy = f"ewms-dlq-{a}"
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        for q in (a, f"{a}.dlq", b):
            _declare_quorum(ch, q)
    finally:
        conn.close()
    quoted = urllib.parse.quote(policy, safe="")
    status, _ = management_api(
        "PUT",
        f"/api/policies/%2F/{quoted}",
        {"pattern": f"^{a}$", "definition": {"delivery-limit": 3}, "apply-to": "queues"},
    )
    assert status in (201, 204)

    assert management_api("GET", f"/api/policies/%2F/{quoted}")[0] == 200

    # what the fixture's teardown does (it runs again after the test: cleanup is idempotent)
    queue_factory.cleanup(amqp_url, management_url)

    for q in (a, f"{a}.dlq", b):
        assert not _queue_exists(amqp_url, q), q
    assert management_api("GET", f"/api/policies/%2F/{quoted}")[0] == 404


def test_queue_name_is_unique_and_usable(queue_name: str, queue_factory: QueueFactory, amqp_url: str) -> None:
    assert queue_name.startswith("test-test_queue_name_is_unique")
    assert queue_name in queue_factory.names
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        _declare_quorum(conn.channel(), queue_name)
    finally:
        conn.close()


async def test_mongo_url_round_trip(mongo_url: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        coll = client[f"fixture_test_{uuid.uuid4().hex[:8]}"]["things"]
        inserted = await coll.insert_one({"name": "pixel", "nside": 8, "llh": -1.5})
        found = await coll.find_one({"_id": inserted.inserted_id})
        assert found is not None
        assert (found["name"], found["nside"], found["llh"]) == ("pixel", 8, -1.5)
        assert await coll.count_documents({"nside": 8}) == 1
    finally:
        await client.close()


@pytest.mark.slow
def test_private_rabbitmq_keeps_persistent_message_across_restart(private_rabbitmq: PrivateRabbitMQ) -> None:
    node = private_rabbitmq
    assert node.url == f"amqp://guest:guest@127.0.0.1:{node.port}/"
    queue = f"survivor-{uuid.uuid4().hex[:8]}"
    body = b"persistent pixel event"

    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    ch = conn.channel()
    ch.confirm_delivery()
    _declare_quorum(ch, queue)
    ch.basic_publish(
        exchange="",
        routing_key=queue,
        body=body,
        properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        mandatory=True,
    )
    conn.close()

    t0 = time.monotonic()
    node.restart()
    restart_s = time.monotonic() - t0
    print(f"private node timings: {node.timings} (restart {restart_s:.1f}s)")

    conn = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        ch = conn.channel()
        # a quorum queue elects its leader shortly after boot: poll until the message can be read
        deadline = time.monotonic() + 30
        method, _props, got = ch.basic_get(queue=queue, auto_ack=True)
        while method is None and time.monotonic() < deadline:
            time.sleep(0.1)
            method, _props, got = ch.basic_get(queue=queue, auto_ack=True)
        assert method is not None, "message lost across restart"
        assert got == body
    finally:
        conn.close()


def test_private_rabbitmq_stop_closes_port_and_start_reopens(private_rabbitmq: PrivateRabbitMQ) -> None:
    node = private_rabbitmq
    pid = node.pid
    node.stop()
    assert node.pid is None and not node.is_running()
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        params = pika.URLParameters(node.url)
        params.connection_attempts = 1
        pika.BlockingConnection(params)
    node.start()
    assert node.is_running() and node.pid != pid
    pika.BlockingConnection(pika.URLParameters(node.url)).close()


async def test_private_rabbitmq_async_restart(private_rabbitmq: PrivateRabbitMQ) -> None:
    await private_rabbitmq.arestart()
    assert private_rabbitmq.is_running()


@pytest.mark.slow
def test_private_rabbitmq_with_management(private_rabbitmq_factory: Callable[..., PrivateRabbitMQ]) -> None:
    node = private_rabbitmq_factory(management=True)
    assert node.management_url is not None and node.management_port is not None
    req = urllib.request.Request(f"http://127.0.0.1:{node.management_port}/api/overview")
    req.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.load(resp)
    assert body["node"] == node.nodename
