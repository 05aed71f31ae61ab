"""Labels that teach nothing are dropped before anyone's state is read: a worker that
records which snapshots' next purchase arrived (``crm:due:<p>:done``) learns exactly the
labels a worker without that record learns, and reads fewer other customers' states.
Run against the real embedded Redis, through the worker's whole batch path."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
import redis
from faust.types import Message
from kafka.partitioner.default import murmur2

from crmstream.schemas import Purchase, encode
from crmstream.streams import topics
from crmstream.streams.app import create_app
from crmstream.streams.due import DueIndex, done_key, due_key
from crmstream.streams.ingest import ingest
from crmstream.streams.settings import Settings
from tests.helpers import consumed

pytestmark = pytest.mark.integration

PARTITIONS = 2
START = datetime(2024, 1, 1, tzinfo=UTC)


class Discard:
    async def send(self, outputs) -> None:
        pass


def purchases(seed: int) -> list[Message]:
    """Two years of purchases of 40 customers, each at their own rhythm, in time order."""
    rng = random.Random(seed)
    events = []
    for n in range(40):
        customer, day = f"d{n}", rng.uniform(0, 30)
        rhythm = rng.choice([3.0, 12.0, 45.0, 120.0])
        while day < 730:
            events.append((day, customer))
            day += rng.expovariate(1 / rhythm)
    events.sort()
    offsets = [0] * PARTITIONS
    messages = []
    for k, (day, customer) in enumerate(events):
        record = Purchase(
            event_id=f"p{k}",
            customer_id=customer,
            occurred_at=START + timedelta(days=day),
            amount=round(rng.uniform(5, 300), 2),
        )
        partition = (murmur2(customer.encode()) & 0x7FFFFFFF) % PARTITIONS
        value = encode(record)
        messages.append(consumed(topics.PURCHASES, partition, offsets[partition], customer, value))
        offsets[partition] += 1
    return messages


def run(redis_url: str, messages: list[Message]) -> tuple[dict, int]:
    """Ingest ``messages`` in batches of 100 on a fresh Redis; the models' labels and
    hazard weights per partition, and how many other customers' states were read."""
    redis.Redis.from_url(redis_url).flushdb()
    loop = asyncio.new_event_loop()
    settings = Settings(redis_url=redis_url, partitions=PARTITIONS)
    _, runtime = create_app(settings, sink=Discard())
    replicas = runtime.replicas
    read = replicas._model_states
    others = 0

    async def counted(customers):
        nonlocal others
        customers = list(customers)
        others += len(customers)
        return await read(customers)

    replicas._model_states = counted
    try:
        for start in range(0, len(messages), 100):
            loop.run_until_complete(ingest(runtime, messages[start : start + 100]))
        learned = {}
        for partition in range(PARTITIONS):
            propensity = replicas[partition].models.purchases.propensity
            learned[partition] = (
                dict(propensity.labels),
                dict(propensity.hazard.regression.weights),
                propensity.rolling_auc.get(),
            )
        return learned, others
    finally:
        loop.run_until_complete(runtime.profiles.close())
        loop.run_until_complete(runtime.checkpoints.close())
        loop.close()


def test_dropped_labels_change_nothing_learned_and_save_reads(stack, monkeypatch):
    messages = purchases(seed=3)
    with_record, reads = run(stack.redis_url, messages)
    stored = redis.Redis.from_url(stack.redis_url)
    assert stored.zcard(done_key(0)) + stored.zcard(done_key(1)) > 100
    assert stored.zcard(due_key(0)) > 0

    find = DueIndex.add_and_find

    async def without_record(self, added, ranges, settled=None):
        return await find(self, added, ranges, None)

    monkeypatch.setattr(DueIndex, "add_and_find", without_record)
    without, reads_without = run(stack.redis_url, messages)
    assert stored.zcard(done_key(0)) + stored.zcard(done_key(1)) == 0
    assert sum(sum(labels.values()) for labels, _, _ in with_record.values()) > 500
    assert with_record == without
    assert reads < 0.9 * reads_without, (reads, reads_without)
