"""Labels are settled from the pairs of snapshots stored in the due index
(``crm:due:<p>:pair``): a worker learns exactly the labels it would learn from its
customers' own snapshots, and exactly what an offline replay with every snapshot in memory
learns, while its customers keep about one snapshot each and far fewer states are read.
Run against the real embedded Redis, through the worker's whole batch path."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
import redis
from faust.types import Message
from kafka.partitioner.default import murmur2

from crmstream.models.propensity import PropensityModel, PurchasePropensity
from crmstream.schemas import Purchase, decode, encode
from crmstream.streams import topics
from crmstream.streams.app import create_app
from crmstream.streams.due import DueIndex, Found, due_key, pair_key, pairs_key
from crmstream.streams.ingest import ingest
from crmstream.streams.redis_client import connect
from crmstream.streams.replicas import Replica
from crmstream.streams.settings import Settings
from tests.helpers import Discard, consumed, load_profiles

pytestmark = pytest.mark.integration

PARTITIONS = 2
START = datetime(2024, 1, 1, tzinfo=UTC)


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


def run(redis_url: str, messages: list[Message], checkpoint_every: int = 0) -> tuple[dict, int]:
    """Ingest ``messages`` in batches of 100 on a fresh Redis (checkpointing the models
    every ``checkpoint_every`` batches); the models' labels and hazard weights per
    partition, and how many other customers' states were read."""
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
        for n, start in enumerate(range(0, len(messages), 100), 1):
            loop.run_until_complete(ingest(runtime, messages[start : start + 100]))
            if checkpoint_every and n % checkpoint_every == 0:
                loop.run_until_complete(replicas.checkpoint())
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


def test_pairs_save_reads(stack, monkeypatch):
    """A worker that settles labels from the stored pairs reads fewer customers' states
    than one that keeps its customers' snapshots and reads them when labels fall due (the
    labels of a customer's latest snapshot still read their state), and learns every label
    that one does, and a few it lost (the next test shows that the pairs learn exactly
    what an offline replay learns)."""
    messages = purchases(seed=3)
    with_pairs, reads = run(stack.redis_url, messages)
    stored = redis.Redis.from_url(stack.redis_url)
    assert stored.hlen(pair_key(0)) + stored.hlen(pair_key(1)) > 100
    assert stored.zcard(due_key(0)) > 0

    find, retention = DueIndex.add_and_find, Replica.retention

    async def without_pairs(self, added, ranges, pairs=None):
        found = await find(self, added, ranges, None)
        return Found(found.due, {})

    def keep_snapshots(self):
        return dataclasses.replace(retention(self), paired=-1)

    monkeypatch.setattr(DueIndex, "add_and_find", without_pairs)
    monkeypatch.setattr(Replica, "retention", keep_snapshots)
    without, reads_without = run(stack.redis_url, messages)
    assert stored.hlen(pair_key(0)) + stored.hlen(pair_key(1)) == 0
    assert sum(sum(labels.values()) for labels, _, _ in with_pairs.values()) > 500
    for partition, (labels, _, _) in with_pairs.items():
        lost = without[partition][0]
        assert lost[True] <= labels[True] and lost[False] <= labels[False]
        assert labels[True] + labels[False] - lost[True] - lost[False] < 10
    assert reads < 0.75 * reads_without, (reads, reads_without)


@pytest.mark.parametrize("seed", [3, 5])
def test_customers_keep_few_snapshots_and_learn_what_an_offline_replay_learns(stack, seed):
    """Snapshots followed by a learned purchase leave the customer's state (their pair is in
    the due index): frequent buyers keep one or two, not one per purchase of the last
    months, and the models still learn exactly the labels of a replay that keeps every
    snapshot in memory, with checkpoints (which forget pairs) along the way."""
    messages = purchases(seed)
    learned, _ = run(stack.redis_url, messages, checkpoint_every=7)
    stored = redis.Redis.from_url(stack.redis_url)
    assert stored.hlen(pair_key(0)) + stored.hlen(pair_key(1)) > 100
    assert stored.zcard(pairs_key(0)) == stored.hlen(pair_key(0))
    # A customer keeps their snapshots of the last batch that had their purchases, and the
    # one before (forgotten at their next event); the batches are of 100 messages.
    last_batch: dict[str, list[int]] = {}
    for index, message in enumerate(messages):
        batch, customer = index // 100, message.key.decode()
        seen = last_batch.setdefault(customer, [batch, 0])
        seen[:] = [batch, seen[1] + 1] if seen[0] == batch else [batch, 1]
    states = load_profiles(stack.redis_url, sorted(last_batch))
    kept = {c: len(p.model_state.snapshots) for c, p in states.items()}
    assert len(kept) == 40
    assert all(kept[c] <= n + 1 for c, (_, n) in last_batch.items()), (kept, last_batch)
    for partition in range(PARTITIONS):
        offline = None
        for message in messages:
            if message.partition != partition:
                continue
            purchase = decode(message.value, Purchase)
            if offline is None:
                offline = PurchasePropensity()
            offline.learn_purchase(purchase.customer_id, purchase.occurred_at, purchase.amount)
        labels, weights, _ = learned[partition]
        assert sum(labels.values()) > 200
        assert labels == dict(offline.labels)
        assert weights == dict(offline.hazard.regression.weights)


async def test_the_index_finds_exactly_the_snapshots_whose_labels_fall_due(stack):
    """One script call per partition adds a batch's snapshots (more than the script adds
    per command) and finds each period's range: the same labels as checking every
    snapshot's due times by hand, and nothing of a partition whose clock did not move."""
    redis.Redis.from_url(stack.redis_url).flushdb()
    model = PropensityModel(horizon_days=90, period_days=30, max_periods=12)
    rng = random.Random(7)
    snapshots = [(f"c{n}", n, round(rng.uniform(0, 400), 3)) for n in range(1300)]
    client = connect(stack.redis_url)
    index = DueIndex(client)
    after, upto = 300.0, 330.5
    found = await index.add_and_find({0: snapshots, 1: snapshots[:5]}, {0: (model, after, upto)})
    assert await client.zcard(due_key(0)) == 1300
    assert await client.zcard(due_key(1)) == 5
    expected = sorted(
        (period, day, f"c{offset}", offset)
        for _, offset, day in snapshots
        for period, delay in [*((k, (k + 1) * 30.0) for k in range(12)), (-1, 90.0)]
        if after < day + delay <= upto
    )
    got = [(d.period, d.day, d.customer_id, d.offset) for d in found.due[0]]
    assert sorted(got) == expected
    assert len(got) > 100
    assert list(found.due) == [0]
    await client.aclose()
