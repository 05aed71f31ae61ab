"""Purchases to profiles and tier changes, end to end on the embedded broker and Redis."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.models.tiers import TierPolicy
from crmstream.schemas import Purchase, TierChange
from crmstream.streams import topics
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import committed_total, read_topic, wait_until

pytestmark = pytest.mark.integration

CUSTOMERS = 200
DISTINCT = 5000
DUPLICATE_SHARE = 0.05


def make_purchases(seed: int = 7) -> tuple[list[Purchase], list[Purchase]]:
    """Distinct purchases, and the stream to publish: those plus 5% re-sent by event_id.

    Some purchases cost more than they earn (negative margin), so CLV also falls and the
    stream contains demotions as well as promotions.
    """
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    distinct = []
    for i in range(DISTINCT):
        amount = round(rng.lognormvariate(3.2, 0.9), 2)
        cost = round(amount * (2.5 if rng.random() < 0.15 else rng.uniform(0.2, 0.7)), 2)
        distinct.append(
            Purchase(
                event_id=f"evt-{i}",
                customer_id=f"cust-{rng.randrange(CUSTOMERS):03d}",
                occurred_at=start + timedelta(minutes=i),
                amount=amount,
                cost=cost,
                currency="USD",
            )
        )
    stream = list(distinct)
    for original in rng.sample(distinct, int(DISTINCT * DUPLICATE_SHARE)):
        # A re-send arrives later than the original, sometimes much later.
        position = rng.randrange(stream.index(original) + 1, len(stream) + 1)
        stream.insert(position, original)
    return distinct, stream


def expected_state(distinct: list[Purchase], policy: TierPolicy):
    """Per customer: orders, revenue, and the ordered tier transitions."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"orders": 0, "revenue": 0.0})
    clv: dict[str, float] = defaultdict(float)
    tier: dict[str, str] = defaultdict(lambda: "bronze")
    transitions: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for p in distinct:
        totals[p.customer_id]["orders"] += 1
        totals[p.customer_id]["revenue"] += p.amount
        clv[p.customer_id] += p.amount - (p.cost or 0.0)
        new = policy.decide(tier[p.customer_id], clv[p.customer_id])
        if new != tier[p.customer_id]:
            transitions[p.customer_id].append((tier[p.customer_id], new))
            tier[p.customer_id] = new
    return totals, transitions


def profiles(redis_url: str, customer_ids) -> dict:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            return {c: await store.get(c) for c in customer_ids}
        finally:
            await store.close()

    return asyncio.run(fetch())


def test_purchases_apply_exactly_once_and_replay_changes_nothing(stack, start_worker):
    distinct, stream = make_purchases()
    totals, transitions = expected_state(distinct, TierPolicy())
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    assert sum(len(t) for t in transitions.values()) > 100
    assert any(
        TierPolicy().thresholds[1] and a > b
        for ts in transitions.values()
        for a, b in (
            (
                ["bronze", "silver", "gold", "platinum"].index(f),
                ["bronze", "silver", "gold", "platinum"].index(t),
            )
            for f, t in ts
        )
    ), "the data set should contain demotions"

    with start_worker() as worker:
        with Publisher(bootstrap) as publisher:
            for purchase in stream:
                publisher.publish(topics.PURCHASES, purchase)
            publisher.flush()

        def all_applied():
            current = profiles(stack.redis_url, totals)
            return all(p is not None for p in current.values()) and sum(
                p.orders for p in current.values()
            ) == len(distinct)

        wait_until(all_applied, 120, "every distinct purchase to be applied")
        wait_until(
            lambda: committed_total(bootstrap, "crmstream", topics.PURCHASES) == len(stream),
            60,
            "the worker to commit every offset",
        )
        assert worker.stop() == 0, worker.log()[-3000:]

    first = profiles(stack.redis_url, totals)
    for customer_id, expected in totals.items():
        profile = first[customer_id]
        assert profile.orders == expected["orders"], customer_id
        assert profile.revenue == pytest.approx(expected["revenue"], rel=1e-9), customer_id

    def tier_changes():
        seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
        records = read_topic(bootstrap, topics.TIER_CHANGES)
        for record in records:
            change = msgspec.json.decode(record.value, type=TierChange)
            assert record.key == change.customer_id.encode()
            seen[change.customer_id].append((change.from_tier, change.to_tier))
        return records, dict(seen)

    records, observed = tier_changes()
    assert observed == dict(transitions)
    assert len({msgspec.json.decode(r.value)["change_id"] for r in records}) == len(records)
    for customer_id, steps in transitions.items():
        assert first[customer_id].tier == steps[-1][1]

    # Re-consume everything from offset 0 in a new consumer group: nothing may change.
    with start_worker(app_id="crmstream-replay") as replay:
        wait_until(
            lambda: committed_total(bootstrap, "crmstream-replay", topics.PURCHASES) == len(stream),
            120,
            "the replaying worker to consume every offset",
        )
        assert replay.stop() == 0, replay.log()[-3000:]
    assert profiles(stack.redis_url, totals) == first
    replayed_records, replayed = tier_changes()
    assert len(replayed_records) == len(records)
    assert replayed == observed


def test_a_record_batch_larger_than_the_partition_fetch_size_is_still_applied(stack, start_worker):
    """``CRM_FETCH_PARTITION_BYTES`` bounds what a fetch takes of a partition, but a record
    batch larger than it comes whole (the consumer would otherwise never get past it)."""
    distinct, _ = make_purchases(seed=11)
    distinct = distinct[:400]
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with start_worker(fetch_partition_bytes="1024") as worker:
        # One producer batch of up to 64 kB per partition, each many times the fetch size.
        with Publisher(bootstrap, linger_ms=500, batch_size=65536) as publisher:
            for purchase in distinct:
                publisher.publish(topics.PURCHASES, purchase)
            publisher.flush()
        customers = {p.customer_id for p in distinct}

        def applied() -> int:
            return sum(p.orders for p in profiles(stack.redis_url, customers).values() if p)

        wait_until(lambda: applied() == len(distinct), 90, "every purchase to be applied")
        assert worker.stop() == 0, worker.log()[-3000:]
