"""Partition models across crashes: checkpoints on an interval, replay learns each event
once, and checkpoints are authenticated before they are unpickled."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.schemas import Feedback, Purchase
from crmstream.streams import topics
from crmstream.streams.checkpoints import CheckpointRefused, CheckpointStore, checkpoint_key
from tests.integration.conftest import Feeder, make_app

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 1, tzinfo=UTC)
TEXTS = ("arrived smashed and late", "lovely, crisp and fresh", "fine I guess", "awful box")


def stream(n: int = 160, seed: int = 3) -> list[tuple[str, bytes, str]]:
    """Purchases over 200 days by 12 customers, and rated feedback: (topic, value, key)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        customer = f"c{rng.randrange(12)}"
        at = START + timedelta(days=200 * i / n)
        if i % 5 == 4:
            record = Feedback(
                event_id=f"f{i}",
                customer_id=customer,
                occurred_at=at,
                rating=rng.choice((1, 2, 4, 5)),
                text=rng.choice(TEXTS),
            )
            out.append((topics.FEEDBACK, msgspec.json.encode(record), customer))
        else:
            record = Purchase(
                event_id=f"p{i}",
                customer_id=customer,
                occurred_at=at,
                amount=round(rng.lognormvariate(3.3, 0.6), 2),
            )
            out.append((topics.PURCHASES, msgspec.json.encode(record), customer))
    return out


def fingerprint(replica) -> dict:
    """What the models learned, comparably."""
    purchases = replica.models.purchases
    probe = {"amount": 0.6, "units": 0.2, "vs_mean": 0.7, "gap": 0.1}
    return {
        "learned": replica.learned,
        "offsets": replica.offsets,
        "labels": dict(purchases.propensity.labels),
        "hazard": dict(purchases.propensity.hazard.regression.weights),
        "clock": purchases.propensity.clock,
        "anomaly_seen": purchases.anomaly.seen,
        "anomaly_probe": purchases.anomaly.score_one(probe),
        "centres": {k: dict(v) for k, v in purchases.segments.kmeans.centers.items()},
        "sizes": dict(purchases.segments.sizes),
        "sentiment": replica.models.conversations.sentiment.n_learned,
    }


async def feed_all(feed: Feeder, records) -> None:
    for topic, value, key in records:
        await feed.put(topic, value, key=key.encode())


async def test_a_crash_between_checkpoints_replays_and_learns_each_event_once(stack):
    records = stream()
    # A clean pass, no crash, in a Redis database of its own.
    clean_app, clean, _ = make_app(stack, redis_url=stack.redis_url.rsplit("/", 1)[0] + "/1")
    async with clean_app.agents["events"].test_context() as agent:
        await feed_all(Feeder(agent), records)
    expected = fingerprint(clean.replicas[0])
    assert expected["labels"] and expected["sentiment"] > 0

    # The same stream, with a checkpoint after 70 events and a crash after 120.
    app, runtime, sink = make_app(stack)
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        await feed_all(feed, records[:70])
        await runtime.checkpoint(app)
        checkpointed = dict(runtime.replicas[0].offsets)
        await feed_all(feed, records[70:120])
    sent_before_crash = len(sink.sent)
    # Kafka may commit only what the checkpoint includes.
    committable = runtime.replicas.committable()
    assert committable == {
        (name.rpartition(":")[0], 0): offset + 1 for name, offset in checkpointed.items()
    }

    # A new worker restores the checkpoint; Kafka redelivers from the committed offsets,
    # and here even a few events before them (as after a commit that did not go through).
    restarted, again, resent = make_app(stack)
    async with restarted.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        for topic, value, key in records:
            feed_offset = feed.offsets[(topic, 0)]
            feed.offsets[(topic, 0)] += 1
            if feed_offset <= checkpointed.get(f"{topic}:0", -1) - 5:
                continue  # committed: not redelivered
            await feed.put(topic, value, key=key.encode(), offset=feed_offset)
    assert fingerprint(again.replicas[0]) == expected
    # The replayed events' outputs are not sent again (the profile guard skips them).
    first_run_ids = {o.value for o in sink.sent}
    assert not first_run_ids & {o.value for o in resent.sent}
    assert sent_before_crash == len(sink.sent)


async def test_a_tampered_or_foreign_checkpoint_is_refused(stack):
    store = CheckpointStore(stack.redis_url, b"secret")
    marker = {"models": "harmless"}
    await store.save({5: marker})
    assert await store.load([5]) == {5: marker}
    blob = await store.client.get(checkpoint_key(5))
    tampered = blob[:-3] + pickle.dumps(1)[:3]
    await store.client.set(checkpoint_key(5), tampered)
    with pytest.raises(CheckpointRefused, match="failed authentication"):
        await store.load([5])
    await store.client.set(checkpoint_key(5), blob)
    with pytest.raises(CheckpointRefused, match="CRM_CHECKPOINT_SECRET"):
        await CheckpointStore(stack.redis_url, b"another").load([5])
    # An unsigned pickle (what older versions wrote) is never unpickled either.
    await store.client.set(checkpoint_key(5), pickle.dumps(marker))
    with pytest.raises(CheckpointRefused, match="format"):
        await store.load([5])
    await store.close()


async def test_a_revoked_partition_is_checkpointed_and_never_written_again(stack):
    app, runtime, _ = make_app(stack)
    async with app.agents["events"].test_context() as agent:
        await feed_all(Feeder(agent), stream(20))
        await runtime.retire(app, [0])
        before = await runtime.checkpoints.client.get(checkpoint_key(0))
        assert before is not None
        await Feeder(agent).put(*stream(21)[-1][:2], offset=100)
        await runtime.checkpoint(app)
        assert await runtime.checkpoints.client.get(checkpoint_key(0)) == before
