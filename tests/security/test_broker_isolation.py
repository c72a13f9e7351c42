"""A workflow's broker credentials (per-workflow users, the WMS's default) on the real RabbitMQ: they open the
workflow's own queues and nothing of another workflow's — no consuming, no declaring, no purging or deleting, no
binding, no reading its dead-letter queue — nor any queue of their own choosing, nor the management API. After the
workflow's queues are removed they read only its own DLQs.

Credentials come from the WMS's answers exactly as clients get them (`broker_address` + `auth_token`). Writing to
another workflow's queue is not checked: RabbitMQ grants writes per exchange, and every queue hangs off the default
exchange (see ewms_wms/broker.py); reading is what isolates workflows.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pika
import pika.exceptions
import pytest

import ewms_mq
from tests.integration.conftest import WMSUnderTest

WMSFactory = Callable[..., Awaitable[WMSUnderTest]]
QUORUM = {"x-queue-type": "quorum"}


def _url(profile: dict[str, Any]) -> str:
    return ewms_mq.parse_address(profile["broker_address"], profile["auth_token"]).url()


class Probe:
    """A blocking pika connection with one workflow's credentials; each attempt on a fresh channel."""

    def __init__(self, url: str) -> None:
        params = pika.URLParameters(url)
        params.connection_attempts = 1
        params.socket_timeout = 10
        self.connection = pika.BlockingConnection(params)

    def refused(self, action: Callable[[Any], Any]) -> int | None:
        """The broker's reply code when `action(channel)` is refused (403 ACCESS_REFUSED...), None when allowed."""
        channel = self.connection.channel()
        try:
            action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            return int(exc.reply_code)
        channel.close()
        return None

    def close(self) -> None:
        self.connection.close()


def _attacks(queue: str) -> dict[str, Callable[[Any], Any]]:
    """Everything a client could try on somebody else's `queue` (name -> action on a channel)."""
    return {
        "basic.get": lambda ch: ch.basic_get(queue, auto_ack=True),
        "basic.consume": lambda ch: ch.basic_consume(queue, lambda *a: None),
        "queue.declare": lambda ch: ch.queue_declare(queue, durable=True, arguments=QUORUM),
        "queue.purge": lambda ch: ch.queue_purge(queue),
        "queue.delete": lambda ch: ch.queue_delete(queue),
        "queue.bind": lambda ch: ch.queue_bind(queue, "amq.topic", routing_key="#"),
    }


def _publish(url: str, queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def _management_status(management_url: str, user: str, password: str) -> int:
    """What the management API answers a workflow user (it must not let one in)."""
    base = management_url.split("@", 1)[-1] if "@" in management_url else management_url.split("://", 1)[-1]
    request = urllib.request.Request(f"http://{base}/api/queues")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
async def test_a_workflows_credentials_cannot_touch_another_workflows_queues_or_dlqs(
    wms_factory: WMSFactory, amqp_url: str, management_url: str
) -> None:
    wms = await wms_factory()
    mine = await wms.create_workflow(client=wms.client("user", sub="alice"))
    theirs = await wms.create_workflow(client=wms.client("user", sub="bob"))
    assert mine["workflow"]["broker_user"] and theirs["workflow"]["broker_user"]
    assert mine["workflow"]["mq_state"] == theirs["workflow"]["mq_state"] == "activated"
    my_profiles, their_profiles = mine["mqprofiles"], theirs["mqprofiles"]
    my_queues = [p["mqid"] for p in my_profiles]
    their_queues = [p["mqid"] for p in their_profiles]
    their_dlqs = [ewms_mq.dlq_name(q) for q in their_queues]
    # something worth stealing in each of theirs, dead letters included (put there as the broker's admin)
    for queue in [*their_queues, *their_dlqs]:
        await asyncio.to_thread(_publish, amqp_url, queue, b"their secret event")

    def probe() -> dict[str, Any]:
        me = Probe(_url(my_profiles[0]))
        try:
            found: dict[str, Any] = {}
            for queue in [*their_queues, *their_dlqs]:
                for name, action in _attacks(queue).items():
                    found[f"{name} {queue}"] = me.refused(action)
            sneaky = f"sneaky-{uuid.uuid4().hex[:8]}"
            found["declare a queue of my choosing"] = me.refused(lambda ch: ch.queue_declare(sneaky, durable=True))
            found["declare a server-named queue"] = me.refused(lambda ch: ch.queue_declare("", exclusive=True))
            found["declare an exchange"] = me.refused(lambda ch: ch.exchange_declare(sneaky, "fanout"))
            # and the same credentials do work on my own queues (the refusals above are not a broken login)
            own = {
                "declare my queue": me.refused(
                    lambda ch: ch.queue_declare(my_queues[0], durable=True, arguments=QUORUM)
                ),
                "consume my queue": me.refused(lambda ch: ch.basic_get(my_queues[0], auto_ack=True)),
                "read my DLQ": me.refused(lambda ch: ch.basic_get(ewms_mq.dlq_name(my_queues[0]), auto_ack=True)),
            }
            return {"refused": found, "own": own}
        finally:
            me.close()

    outcome = await asyncio.to_thread(probe)
    assert all(code == 403 for code in outcome["refused"].values()), {
        k: v for k, v in outcome["refused"].items() if v != 403
    }
    assert outcome["own"] == {"declare my queue": None, "consume my queue": None, "read my DLQ": None}

    # their messages are all still there, for them
    def drain(url: str, queues: list[str]) -> list[bytes]:
        them = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = them.channel()
            return [body for q in queues for _, _, body in [channel.basic_get(q, auto_ack=True)] if body]
        finally:
            them.close()

    got = await asyncio.to_thread(drain, _url(their_profiles[0]), [*their_queues, *their_dlqs])
    assert got == [b"their secret event"] * len([*their_queues, *their_dlqs])

    user = ewms_mq.parse_address(my_profiles[0]["broker_address"], my_profiles[0]["auth_token"]).username
    status = await asyncio.to_thread(_management_status, management_url, user, my_profiles[0]["auth_token"])
    assert status == 401  # a workflow user has no management tag


@pytest.mark.slow
async def test_once_its_queues_are_removed_a_workflow_reads_only_its_own_dlqs(
    wms_factory: WMSFactory, amqp_url: str
) -> None:
    wms = await wms_factory()
    mine = await wms.create_workflow(client=wms.client("user", sub="alice"))
    theirs = await wms.create_workflow(client=wms.client("user", sub="bob"))
    my_queues = [p["mqid"] for p in mine["mqprofiles"]]
    their_dlqs = [ewms_mq.dlq_name(p["mqid"]) for p in theirs["mqprofiles"]]
    workflow_id = mine["workflow"]["workflow_id"]
    assert (await wms.client("user", sub="alice").post(f"/v1/workflows/{workflow_id}/actions/abort", {})).status == 200
    await wms.wms.janitor.run_once()
    assert (await wms.admin.get(f"/v1/workflows/{workflow_id}")).json["mq_state"] == "deleted"
    for dlq in [ewms_mq.dlq_name(my_queues[0]), *their_dlqs]:
        await asyncio.to_thread(_publish, amqp_url, dlq, b"dead letter")

    def probe() -> dict[str, int | None]:
        me = Probe(_url(mine["mqprofiles"][0]))
        try:
            return {
                "re-declare my removed queue": me.refused(
                    lambda ch: ch.queue_declare(my_queues[0], durable=True, arguments=QUORUM)
                ),
                "read my DLQ": me.refused(lambda ch: ch.basic_get(ewms_mq.dlq_name(my_queues[0]), auto_ack=True)),
                **{f"read their DLQ {q}": me.refused(_attacks(q)["basic.get"]) for q in their_dlqs},
            }
        finally:
            me.close()

    outcome = await asyncio.to_thread(probe)
    assert outcome.pop("re-declare my removed queue") == 403
    assert outcome.pop("read my DLQ") is None
    assert set(outcome.values()) == {403}
