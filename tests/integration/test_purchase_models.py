"""Purchase models across a worker crash: every purchase is learned exactly once."""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import signal
from datetime import UTC, datetime, timedelta

import pytest

from crmstream.models.anomaly import purchase_features
from crmstream.models.purchase_models import learn_purchase
from crmstream.schemas import Purchase, decode
from crmstream.streams import topics
from crmstream.streams.cli import main
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.replicas import checkpoint_key
from crmstream.streams.settings import Settings
from crmstream.streams.tools.publisher import Publisher
from crmstream.streams.tools.quality import read_quality
from tests.helpers import committed_total, read_topic, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
CUSTOMERS = 150
PURCHASES = 3000


def make_purchases(seed: int = 11) -> list[Purchase]:
    """Purchases over 300 days by customers who buy at their own pace, some re-sent."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stream = []
    for i in range(PURCHASES):
        stream.append(
            Purchase(
                event_id=f"buy-{i}",
                customer_id=f"cust-{int(rng.paretovariate(1.2)) % CUSTOMERS:03d}",
                occurred_at=start + timedelta(minutes=144 * i),
                amount=round(rng.lognormvariate(3.3, 0.6), 2),
            )
        )
    for original in rng.sample(stream, 100):
        stream.insert(rng.randrange(stream.index(original) + 1, len(stream) + 1), original)
    return stream


def checkpoints(redis_url: str) -> dict[int, dict]:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            keys = [checkpoint_key("purchases", p) for p in range(PARTITIONS)]
            blobs = await store.raw_client.mget(keys)
            return {p: pickle.loads(b) for p, b in enumerate(blobs) if b is not None}
        finally:
            await store.close()

    return asyncio.run(fetch())


def quality(redis_url: str) -> dict:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            return await read_quality(store, PARTITIONS)
        finally:
            await store.close()

    return asyncio.run(fetch())


def learned_total(redis_url: str) -> int:
    return sum(state["learned"] for state in checkpoints(redis_url).values())


def reference_models(bootstrap: list[str]) -> dict[int, dict]:
    """Each partition's models taught every distinct purchase once, in offset order."""
    settings = Settings(partitions=PARTITIONS)
    models: dict[int, dict] = {}
    seen: set[str] = set()
    for record in sorted(
        read_topic(bootstrap, topics.PURCHASES), key=lambda r: (r.partition, r.offset)
    ):
        purchase = decode(record.value, Purchase)
        if purchase.event_id in seen:
            continue
        seen.add(purchase.event_id)
        partition_models = models.setdefault(record.partition, settings.purchase_models())
        learn_purchase(partition_models, purchase, purchase.amount, None)
    return models


def test_purchase_models_continue_after_a_crash_without_relearning(
    stack, start_worker, monkeypatch, capsys
):
    stream = make_purchases()
    distinct = len({p.event_id for p in stream})
    half = len(stream) // 2
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    env = {"partitions": str(PARTITIONS), "batch_size": "50"}

    with Publisher(bootstrap) as publisher:
        for purchase in stream[:half]:
            publisher.publish(topics.PURCHASES, purchase)
        publisher.flush()
    with start_worker(**env) as first:
        wait_until(lambda: learned_total(stack.redis_url) >= half // 3, 90, "the models to learn")
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
        assert "restored purchases models" in second.log()

    restored = checkpoints(stack.redis_url)
    assert sum(state["learned"] for state in restored.values()) == distinct
    expected = reference_models(bootstrap)
    assert restored.keys() == expected.keys()
    probe_day = datetime(2026, 12, 1, tzinfo=UTC)
    for partition, state in restored.items():
        models, reference = state["models"], expected[partition]
        assert models["propensity"].histories == reference["propensity"].histories
        assert models["propensity"].labels == reference["propensity"].labels
        assert models["anomaly"].seen == reference["anomaly"].seen
        assert models["segments"].members == reference["segments"].members
        assert models["segments"].kmeans.centers == reference["segments"].kmeans.centers
        probe = purchase_features(500.0, 3, 4, 120.0, 2.0)
        assert models["anomaly"].score_one(probe) == reference["anomaly"].score_one(probe)
        for customer_id in reference["propensity"].histories:
            assert models["propensity"].predict_customer(customer_id, probe_day) == (
                reference["propensity"].predict_customer(customer_id, probe_day)
            )

    # What `crmstream models` reports is what the checkpoints hold.
    report = quality(stack.redis_url)["purchases"]
    assert report.keys() == expected.keys()
    assert sum(r["learned"] for r in report.values()) == distinct
    assert sum(r["anomaly"]["purchases"] for r in report.values()) == distinct
    for partition, r in report.items():
        customers = len(expected[partition]["propensity"].histories)
        assert r["propensity"]["customers"] == customers
        assert sum(s["customers"] for s in r["segments"].values()) == customers
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
