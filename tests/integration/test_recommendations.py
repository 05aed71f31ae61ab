"""Recommendations in the worker: a Complete Journey slice through the events agent with a
real Redis; shared item statistics counted once per purchase; `crmstream recommend`."""

from __future__ import annotations

import asyncio
import json
import math
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.models.recommend import DEFAULT_PARAMS, ItemStats, basket_update, growth
from crmstream.schemas import Item, Purchase
from crmstream.streams import topics
from crmstream.streams.cli import main
from crmstream.streams.datasets.completejourney import load_lines
from crmstream.streams.items import ItemStore, bucket_keys, bucket_of, neighbours_key
from crmstream.streams.profiles import Delivery
from crmstream.streams.tools.backfill import to_basket_purchases
from tests.integration.conftest import Feeder, make_app

pytestmark = pytest.mark.integration


async def redis_stats(
    redis_url: str, items: list[str]
) -> dict[str, tuple[float, dict[str, float]]]:
    """Each item's decayed count and neighbours as Redis holds them."""
    store = ItemStore(redis_url)
    try:
        pipe = store.client.pipeline(transaction=False)
        for item in items:
            pipe.zscore(bucket_keys(bucket_of(item))[1], item)
            pipe.zrange(neighbours_key(item), 0, -1, withscores=True)
        replies = await pipe.execute()
    finally:
        await store.close()
    return {
        item: (float(replies[2 * i] or 0.0), dict(replies[2 * i + 1]))
        for i, item in enumerate(items)
    }


def assert_counted_once(stored, purchases) -> None:
    """``stored`` (see :func:`redis_stats`) is every purchase counted exactly once."""
    reference = ItemStats()
    for purchase in purchases:
        items = [x.sku for x in purchase.items or ()]
        reference.learn(basket_update(items, purchase.occurred_at.timestamp(), reference.params))
    assert stored.keys() == reference.count.keys()
    compared = 0
    for item, (count, together) in stored.items():
        assert math.isclose(count, reference.count[item], rel_tol=1e-9), item
        expected = reference.neighbours.get(item, {})
        if len(expected) >= reference.params.cap:  # trimmed: which ties survive may differ
            continue
        compared += 1
        assert together.keys() == expected.keys(), item
        for other, weight in together.items():
            assert math.isclose(weight, expected[other], rel_tol=1e-9), (item, other)
    assert compared >= len(stored) // 2


async def test_complete_journey_slice_gets_recommendations(stack, monkeypatch, capsys):
    lines = load_lines(households=3)
    purchases = list(to_basket_purchases(lines, "completejourney"))[:120]
    app, runtime, _ = make_app(stack, batch_size=20)
    async with app.agents["events"].test_context() as agent:
        feeder = Feeder(agent)
        for purchase in purchases:
            value = msgspec.json.encode(purchase)
            await feeder.put(topics.PURCHASES, value, key=purchase.customer_id.encode())
        # A redelivery of the first ten purchases (same offsets) changes nothing.
        for offset, purchase in enumerate(purchases[:10]):
            value = msgspec.json.encode(purchase)
            key = purchase.customer_id.encode()
            summary = await feeder.put(topics.PURCHASES, value, key=key, offset=offset)
            assert summary.applied == 0
        # Nor does a re-sent copy of a purchase (a new offset), nor its redelivery (as after
        # a crash between the profile's write and the item statistics' update).
        copy = msgspec.json.encode(purchases[5])
        key = purchases[5].customer_id.encode()
        resent = await feeder.put(topics.PURCHASES, copy, key=key)
        again = await feeder.put(topics.PURCHASES, copy, key=key, offset=len(purchases))
        assert (resent.applied, resent.duplicates, again.duplicates) == (0, 1, 1)

    items = sorted({x.sku for p in purchases for x in p.items or ()})
    assert_counted_once(await redis_stats(stack.redis_url, items), purchases)

    customer = purchases[-1].customer_id
    profile = await runtime.profiles.get(customer)
    assert profile is not None
    # No rule reads next_best_offer: the worker stores none, readers score them.
    assert profile.recommendations == []
    assert profile.items.baskets == sum(p.customer_id == customer for p in purchases)
    top = await runtime.items.recommend(profile)
    assert len(top) == 10
    bought = {x.item for x in profile.items.items}
    reasons = {r.reason.split(" ")[0] for r in top}
    assert reasons <= {"you", "bought", "popular"}
    assert any(r.item in bought for r in top)
    await runtime.profiles.close()

    monkeypatch.setenv("CRM_REDIS_URL", stack.redis_url)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["recommend", customer, "--k", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["customer_id"] == customer
    assert len(printed["recommendations"]) == 5
    assert {"item", "score", "reason"} == set(printed["recommendations"][0])
    assert await asyncio.to_thread(main, ["recommend", customer, "--k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[0].startswith("  1. cj-")
    assert await asyncio.to_thread(main, ["recommend", "nobody"]) == 1


async def test_without_co_occurrence_only_counts_are_kept(stack):
    at = datetime(2026, 5, 1, tzinfo=UTC)
    baskets = [["nco-a", "nco-b"], ["nco-a", "nco-c"], ["nco-a", "nco-b"]]
    purchases = [
        Purchase(
            event_id=f"nco-{n}",
            customer_id="nco-customer",
            occurred_at=at + timedelta(days=n),
            amount=3.0,
            items=[Item(sku=sku) for sku in basket],
        )
        for n, basket in enumerate(baskets)
    ]
    app, runtime, _ = make_app(stack, recommend_co_occurrence=False)
    async with app.agents["events"].test_context() as agent:
        feeder = Feeder(agent)
        for purchase in purchases:
            value = msgspec.json.encode(purchase)
            await feeder.put(topics.PURCHASES, value, key=purchase.customer_id.encode())
    stored = await redis_stats(stack.redis_url, ["nco-a", "nco-b", "nco-c"])
    weights = [growth(p.occurred_at.timestamp(), DEFAULT_PARAMS.tau_days) for p in purchases]
    assert math.isclose(stored["nco-a"][0], sum(weights), rel_tol=1e-9)
    assert math.isclose(stored["nco-b"][0], weights[0] + weights[2], rel_tol=1e-9)
    assert all(together == {} for _, together in stored.values())  # no pairs counted
    profile = await runtime.profiles.get("nco-customer")
    assert profile is not None
    top = await runtime.items.recommend(profile, k=3)
    assert [r.item for r in top][:1] == ["nco-a"]
    assert not any(r.reason.startswith("bought with") for r in top)
    await runtime.profiles.close()
    await runtime.items.close()


async def dump_items(redis_url: str) -> dict[str, object]:
    """Every item statistics key of a database and its content."""
    store = ItemStore(redis_url)
    try:
        client = store.client
        out: dict[str, object] = {}
        async for key in client.scan_iter(match="crm:items:*"):
            if await client.type(key) == "hash":
                out[key] = await client.hgetall(key)
            else:
                out[key] = await client.zrange(key, 0, -1, withscores=True)
        return out
    finally:
        await store.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_one_call_for_all_buckets_counts_as_a_call_per_bucket(stack, seed):
    """On one Redis server a batch's buckets are counted in one script call: the same
    counts and marks as one call per bucket (what a cluster needs), redeliveries included."""
    rng = random.Random(seed)
    at = datetime(2026, 5, 1, tzinfo=UTC)
    skus = [f"sku-{n}" for n in range(60)]
    deliveries = []
    offsets = {0: 0, 1: 0}
    for n in range(120):
        partition = rng.randrange(2)
        items = [Item(sku=sku) for sku in rng.sample(skus, rng.randint(1, 6))]
        purchase = Purchase(
            event_id=f"one-{seed}-{n}",
            customer_id=f"c{rng.randrange(20)}",
            occurred_at=at + timedelta(hours=n),
            amount=5.0,
            items=items,
        )
        deliveries.append(
            Delivery(
                topics.PURCHASES,
                partition,
                offsets[partition],
                purchase.customer_id,
                purchase.event_id,
                purchase,
            )
        )
        offsets[partition] += 1
    # Batches as the worker sends them, the second overlapping the first (a redelivery).
    batches = [deliveries[:50], deliveries[30:90], deliveries[90:]]
    dumps = []
    for db, batched in ((1, True), (2, False)):
        url = f"{stack.redis_url.removesuffix('/0')}/{db}"
        store = ItemStore(url, batch_scripts=batched)
        try:
            calls = [await store.learn(batch) for batch in batches]
        finally:
            await store.close()
        assert min(calls) > 1  # several buckets per batch: the merged path was taken
        dumps.append(await dump_items(url))
    merged, per_bucket = dumps
    assert len(per_bucket) > 60
    assert merged == per_bucket
    # and every purchase counted once
    stored = await redis_stats(f"{stack.redis_url.removesuffix('/0')}/1", skus)
    assert_counted_once(
        {k: v for k, v in stored.items() if v[0] > 0}, [d.record for d in deliveries]
    )
