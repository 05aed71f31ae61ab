"""A client crmstream did not write: confluent-kafka (librdkafka) publishes purchases that a
worker applies, and reads ``crm.tier-changes`` with a consumer group of its own: the
README's two snippets, run as written against the embedded broker and a worker."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer

from crmstream.streams import topics
from crmstream.streams.metrics import COUNTS_KEY
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.routing import partition_for
from tests.helpers import read_topic, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
CUSTOMERS = 100
PURCHASES = 1000
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet(marker: str, bootstrap: str) -> str:
    """The README's Python block containing ``marker``, pointed at ``bootstrap``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if marker in b]
    return block.replace("localhost:9092", bootstrap)


def purchase(n: int) -> dict:
    return {
        "event_id": f"cf-{n}",
        "customer_id": f"cust-{n % CUSTOMERS}",
        "occurred_at": f"2026-03-{1 + n // CUSTOMERS:02d}T10:00:00Z",
        "amount": 60.0,
    }


def profiles(redis_url: str, customer_ids) -> dict[str, int]:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            return {c: getattr(await store.get(c), "orders", 0) for c in customer_ids}
        finally:
            await store.close()

    return asyncio.run(fetch())


def produce(bootstrap: str, events: list[dict], **config) -> list[tuple[bytes, int]]:
    """Publish with confluent-kafka; the (key, partition) of every delivered record."""
    delivered: list[tuple[bytes, int]] = []
    errors: list[object] = []

    def report(error, message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append((message.key(), message.partition()))

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **config})
    for event in events:
        producer.produce(
            topics.PURCHASES,
            key=event["customer_id"],
            value=json.dumps(event),
            on_delivery=report,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    return delivered


def test_confluent_kafka_publishes_and_consumes(stack, start_worker):
    bootstrap = stack.kafka_url.removeprefix("kafka://")
    customers = [f"cust-{c}" for c in range(CUSTOMERS)]
    with start_worker(checkpoint_interval="1") as worker:
        delivered = produce(
            bootstrap, [purchase(n) for n in range(PURCHASES)], partitioner="murmur2_random"
        )
        assert len(delivered) == PURCHASES
        # murmur2_random places every key where Kafka's default partitioner does.
        assert all(p == partition_for(key, PARTITIONS) for key, p in delivered)
        wait_until(
            lambda: profiles(stack.redis_url, customers) == dict.fromkeys(customers, 10),
            120,
            "every purchase applied",
            every=1,
        )

        # librdkafka's default partitioner puts most keys elsewhere: applied, and counted.
        extra = [{**purchase(n), "event_id": f"cf-default-{n}"} for n in range(200)]
        placed = produce(bootstrap, extra)
        misplaced = sum(p != partition_for(key, PARTITIONS) for key, p in placed)
        assert misplaced > 100
        wait_until(
            lambda: profiles(stack.redis_url, customers) == dict.fromkeys(customers, 12),
            120,
            "the default partitioner's purchases applied",
            every=1,
        )
        client = redis.Redis.from_url(stack.redis_url)
        try:
            wait_until(
                lambda: (
                    client.hget(COUNTS_KEY, f"misrouted:{topics.PURCHASES}")
                    == str(misplaced).encode()
                ),
                30,
                f"{misplaced} misrouted purchases counted",
            )
        finally:
            client.close()

        # The README's producer snippet, as written: alice's purchase makes her silver.
        exec(readme_snippet("from confluent_kafka import Producer", bootstrap), {})
        wait_until(lambda: profiles(stack.redis_url, ["alice"]) == {"alice": 1}, 60, "alice")
        expected = wait_until(
            lambda: (
                (
                    changes := {
                        json.loads(r.value)["change_id"]: r.key
                        for r in read_topic([bootstrap], topics.TIER_CHANGES)
                    }
                )
                and b"alice" in changes.values()
                and changes
            ),
            30,
            "alice's tier change",
        )
        assert len(expected) > CUSTOMERS  # everyone reached silver, at least, and alice
        # The README's consumer snippet, as written: its own group reads every tier change.
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(readme_snippet("from confluent_kafka import Consumer", bootstrap), {})
        seen = {}
        for line in printed.getvalue().splitlines():
            key, value = line.split(" ", 1)
            seen[json.loads(value)["change_id"]] = key.encode()
        assert seen == expected
        (alice,) = [
            json.loads(line.split(" ", 1)[1])
            for line in printed.getvalue().splitlines()
            if line.startswith("alice ")
        ]
        assert alice["to_tier"] == "silver"
        assert worker.stop() == 0
