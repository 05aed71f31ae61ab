"""Keys and partitions, against a real worker: a record keyed by someone else, or by no
one, is dead-lettered (``key_mismatch``); a tombstone is dead-lettered as ``tombstone``; a
record on the wrong partition for its key is applied, counted and reported once."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from kafka import KafkaProducer

from crmstream.streams import topics
from crmstream.streams.metrics import COUNTS_KEY
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.routing import partition_for
from crmstream.streams.tools.replay import dead_letters
from tests.helpers import wait_until
from tests.integration.test_deadletters import run_cli

pytestmark = pytest.mark.integration

PARTITIONS = 4


def purchase(event_id: str, customer_id: str, amount: float = 10.0) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": customer_id,
            "occurred_at": "2026-05-01T10:00:00Z",
            "amount": amount,
        }
    ).encode()


def orders(redis_url: str, customer_id: str) -> int | None:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            profile = await store.get(customer_id)
            return None if profile is None else profile.orders
        finally:
            await store.close()

    return asyncio.run(fetch())


def test_keys_and_partitions(stack, start_worker):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    right = partition_for(b"carol", PARTITIONS)
    wrong = (right + 1) % PARTITIONS
    with start_worker(checkpoint_interval="1") as worker:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            producer.send(topics.PURCHASES, purchase("p-1", "alice"), key=b"alice")
            producer.send(topics.PURCHASES, purchase("p-2", "alice"), key=b"bob")
            producer.send(topics.PURCHASES, purchase("p-3", "alice"), key=None, partition=0)
            producer.send(topics.PURCHASES, None, key=b"alice")
            for n in range(3):
                producer.send(
                    topics.PURCHASES, purchase(f"p-c{n}", "carol"), key=b"carol", partition=wrong
                )
            producer.flush()
        finally:
            producer.close()

        letters = wait_until(
            lambda: (found := list(dead_letters(bootstrap))) and len(found) >= 3 and found,
            90,
            "three dead letters",
        )
        wait_until(lambda: orders(stack.redis_url, "carol") == 3, 60, "carol's three orders")
        client = redis.Redis.from_url(stack.redis_url)
        try:
            wait_until(
                lambda: client.hget(COUNTS_KEY, f"misrouted:{topics.PURCHASES}") == b"3",
                30,
                "the misrouted counter",
            )
        finally:
            client.close()
        assert orders(stack.redis_url, "alice") == 1
        reasons = sorted((r.reason.code, r.key or "", r.value is None) for _, r in letters)
        assert reasons == [
            ("key_mismatch", "", False),
            ("key_mismatch", "bob", False),
            ("tombstone", "alice", True),
        ]
        listing = run_cli(stack, "deadletter", "list", "--reason", "tombstone")
        assert listing.returncode == 0, listing.stderr
        assert "tombstone at $" in listing.stdout
        assert "(no value)" in listing.stdout and "base64:None" not in listing.stdout
        # Replayed, a key_mismatch dead letter is keyed by its customer_id, and applied.
        replay = run_cli(stack, "deadletter", "replay", "--reason", "key_mismatch")
        assert replay.returncode == 0, replay.stderr
        assert "replayed 2 dead letters" in replay.stdout
        wait_until(lambda: orders(stack.redis_url, "alice") == 3, 60, "alice's replayed orders")
        assert len(list(dead_letters(bootstrap))) == 3
        assert worker.stop() == 0
    log = worker.log()
    warnings = [line for line in log.splitlines() if "holds key 'carol'" in line]
    assert len(warnings) == 1, warnings
    assert f"on partition {right} of {PARTITIONS}" in warnings[0]
    assert "murmur2_random" in warnings[0]
