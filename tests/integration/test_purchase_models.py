"""Purchase models and the shared item statistics of recommendations across a worker crash:
every purchase is learned exactly once."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from datetime import UTC, datetime, timedelta

import pytest

from crmstream.models.offline import OfflinePartition
from crmstream.models.purchase_models import PurchaseModels
from crmstream.schemas import Purchase, decode
from crmstream.schemas.inputs import Item
from crmstream.streams import topics
from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.cli import main
from crmstream.streams.settings import Settings
from crmstream.streams.tools.publisher import Publisher
from crmstream.streams.tools.quality import read_quality
from tests.helpers import (
    committed_total,
    learned_total,
    load_checkpoints,
    read_topic,
    wait_until,
)
from tests.integration.test_recommendations import assert_counted_once, redis_stats

pytestmark = pytest.mark.integration

PARTITIONS = 4
CUSTOMERS = 150
PURCHASES = 3000


def make_purchases(seed: int = 11) -> list[Purchase]:
    """Purchases over 300 days by 150 customers, some re-sent."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stream = []
    for i in range(PURCHASES):
        skus = rng.sample(range(25), rng.randint(1, 4))
        stream.append(
            Purchase(
                event_id=f"buy-{i}",
                customer_id=f"cust-{rng.randrange(CUSTOMERS):03d}",
                occurred_at=start + timedelta(minutes=144 * i),
                amount=round(rng.lognormvariate(3.3, 0.6), 2),
                items=[Item(sku=f"sku-{n}") for n in skus],
            )
        )
    for original in rng.sample(stream, 100):
        stream.insert(rng.randrange(stream.index(original) + 1, len(stream) + 1), original)
    return stream


def quality(redis_url: str) -> dict:
    async def fetch():
        store = CheckpointStore(redis_url, Settings().checkpoint_hmac_key())
        try:
            return await read_quality(store, PARTITIONS)
        finally:
            await store.close()

    return asyncio.run(fetch())


def reference_models(bootstrap: list[str]) -> dict[int, PurchaseModels]:
    """Each partition's models taught every distinct purchase once, one at a time, in
    offset order: a single clean pass with no crash and no batching."""
    settings = Settings(partitions=PARTITIONS)
    partitions: dict[int, OfflinePartition] = {}
    seen: set[str] = set()
    for record in sorted(
        read_topic(bootstrap, topics.PURCHASES), key=lambda r: (r.partition, r.offset)
    ):
        purchase = decode(record.value, Purchase)
        if purchase.event_id in seen:
            continue
        seen.add(purchase.event_id)
        if record.partition not in partitions:
            partitions[record.partition] = OfflinePartition(
                settings.purchase_models(), settings.policies()
            )
        partitions[record.partition].apply(purchase, record.offset)
    return {p: partition.models for p, partition in partitions.items()}


def test_purchase_models_continue_after_a_crash_without_relearning(
    stack, start_worker, monkeypatch, capsys
):
    stream = make_purchases()
    distinct = len({p.event_id for p in stream})
    half = len(stream) // 2
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    env = {"partitions": str(PARTITIONS), "batch_size": "50", "checkpoint_interval": "1"}

    with Publisher(bootstrap) as publisher:
        for purchase in stream[:half]:
            publisher.publish(topics.PURCHASES, purchase)
        publisher.flush()
    with start_worker(**env) as first:
        wait_until(
            lambda: learned_total(stack.redis_url, PARTITIONS) >= half // 3,
            90,
            "the models to learn",
        )
        first.process.send_signal(signal.SIGKILL)  # mid-stream, nothing flushed or committed
        first.process.wait()

    with Publisher(bootstrap) as publisher:
        for purchase in stream[half:]:
            publisher.publish(topics.PURCHASES, purchase)
        publisher.flush()
    with start_worker(**env) as second:
        wait_until(
            lambda: committed_total(bootstrap, "crmstream", topics.PURCHASES) == len(stream),
            120,
            "the restarted worker to commit every offset",
        )
        assert second.stop() == 0, second.log()[-3000:]
        assert "restored the models of partition" in second.log()

    # Every distinct purchase's items were counted once in the shared item statistics.
    distinct_purchases = list({p.event_id: p for p in stream}.values())
    skus = sorted({x.sku for p in stream for x in p.items or ()})
    assert_counted_once(asyncio.run(redis_stats(stack.redis_url, skus)), distinct_purchases)

    restored = load_checkpoints(stack.redis_url, PARTITIONS)
    assert sum(state["learned"] for state in restored.values()) == distinct
    expected = reference_models(bootstrap)
    assert restored.keys() == expected.keys()
    probe = {"amount": 0.5, "units": 0.2, "vs_mean": 0.7, "gap": 0.1}
    for partition, state in restored.items():
        models, reference = state["models"].purchases, expected[partition]
        assert models.propensity.labels == reference.propensity.labels
        assert models.propensity.hazard.regression.weights == (
            reference.propensity.hazard.regression.weights
        )
        assert models.anomaly.seen == reference.anomaly.seen
        assert models.anomaly.score_one(probe) == reference.anomaly.score_one(probe)
        assert models.segments.kmeans.centers == reference.segments.kmeans.centers
        assert sum(models.segments.sizes.values()) == sum(reference.segments.sizes.values())

    # What `crmstream models` reports is what the checkpoints hold.
    report = quality(stack.redis_url)["purchases"]
    assert report.keys() == expected.keys()
    assert sum(r["learned"] for r in report.values()) == distinct
    assert sum(r["anomaly"]["purchases"] for r in report.values()) == distinct
    for partition, r in report.items():
        customers = sum(expected[partition].segments.sizes.values())
        assert r["propensity"]["customers"] == customers
        assert r["propensity"]["resolved"] > 0

    # ...and so does the command line, as JSON and as tables.
    monkeypatch.setenv("CRM_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("CRM_PARTITIONS", str(PARTITIONS))
    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {int(p): r["learned"] for p, r in printed["purchases"].items()} == {
        p: r["learned"] for p, r in report.items()
    }
    assert main(["models"]) == 0
    assert "purchase models" in capsys.readouterr().out
