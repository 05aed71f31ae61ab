"""The events agent in Faust's test context: no broker, a real Redis, recorded outputs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.schemas import Alert, ChatMessage, Feedback, TierChange
from crmstream.streams import topics
from crmstream.streams.checkpoints import checkpoint_key
from crmstream.streams.due import member, pair_key
from crmstream.streams.profiles import lesson_keys
from tests.integration.conftest import Feeder, make_app

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def purchase(event_id: str, amount: float, customer: str = "c1", **extra) -> bytes:
    record = {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "amount": amount,
        **extra,
    }
    return msgspec.json.encode(record)


def dated(event_id: str, amount: float, day: int, customer: str = "c1", **extra) -> bytes:
    """A purchase on day ``day`` of 2026."""
    at = datetime(2026, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
    record = {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "amount": amount,
        **extra,
    }
    return msgspec.json.encode(record)


def chat(n: int, text: str, sender: str = "customer", intent: str | None = None) -> bytes:
    return msgspec.json.encode(
        ChatMessage(
            event_id=f"m{n}",
            customer_id="c1",
            occurred_at=T0 + timedelta(minutes=n),
            conversation_id="k1",
            sender=sender,
            text=text,
            intent=intent,
        )
    )


def feedback(n: int, rating: int, text: str | None = None) -> bytes:
    return msgspec.json.encode(
        Feedback(
            event_id=f"f{n}",
            customer_id="c1",
            occurred_at=T0 + timedelta(minutes=n),
            rating=rating,
            text=text,
        )
    )


def alerts(sink) -> list[Alert]:
    return [msgspec.json.decode(o.value, type=Alert) for o in sink.on(topics.ALERTS)]


async def test_purchase_updates_profile_and_emits_tier_change(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        first = await feed.put(topics.PURCHASES, purchase("e1", 60.0))
        second = await feed.put(topics.PURCHASES, purchase("e2", 50.0, cost=5.0))
    assert (first.applied, first.outputs, second.outputs) == (1, 0, 1)
    profile = await runtime.profiles.get("c1")
    assert (profile.orders, profile.revenue, profile.cost, profile.tier) == (
        2,
        110.0,
        5.0,
        "silver",
    )
    [change] = [msgspec.json.decode(o.value, type=TierChange) for o in sink.on(topics.TIER_CHANGES)]
    assert (change.from_tier, change.to_tier, change.event_id) == ("bronze", "silver", "e2")
    assert change.clv == pytest.approx(105.0)


async def test_foreign_currency_is_converted_and_unknown_currency_dead_lettered(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        converted = await feed.put(topics.PURCHASES, purchase("e1", 10.0, currency="EUR"))
        rejected = await feed.put(topics.PURCHASES, purchase("e2", 10.0, currency="JPY"))
    assert (converted.applied, rejected.deadlettered) == (1, 1)
    assert (await runtime.profiles.get("c1")).revenue == 20.0
    [dead] = sink.on(topics.DEADLETTER)
    headers = dict(dead.headers)
    assert headers["crm.error.code"] == b"unsupported_currency"
    assert headers["crm.error.path"] == b"$.currency"


async def test_invalid_input_is_dead_lettered_with_original_bytes(app_and_sink):
    app, _, sink = app_and_sink
    broken = b'{"event_id": "e1", "customer_id": "c1", "amount": 3'
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        summary = await feed.put(topics.FEEDBACK, broken, key=b"c1")
        still_working = await feed.put(topics.PURCHASES, purchase("e2", 1.0))
    assert (summary.deadlettered, summary.applied) == (1, 0)
    assert still_working.applied == 1
    [dead] = sink.on(topics.DEADLETTER)
    assert (dead.key, dead.value) == (b"c1", broken)
    headers = dict(dead.headers)
    assert headers["crm.error.code"] == b"invalid_json"
    assert headers["__connect.errors.topic"] == topics.FEEDBACK.encode()


async def test_duplicate_event_id_is_skipped(app_and_sink):
    app, runtime, _ = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        await feed.put(topics.PURCHASES, purchase("e1", 10.0))
        duplicate = await feed.put(topics.PURCHASES, purchase("e1", 10.0))
    assert (duplicate.applied, duplicate.duplicates, duplicate.deadlettered) == (0, 1, 0)
    assert (await runtime.profiles.get("c1")).orders == 1


async def test_purchases_are_scored_then_teach_the_partition_models_once(app_and_sink):
    app, runtime, _ = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        for day in range(0, 50, 10):
            await feed.put(topics.PURCHASES, dated(f"e{day}", 40.0, day))
        resent = await feed.put(topics.PURCHASES, dated("e40", 40.0, 40))
        # Kafka redelivers an offset the models already learned: nothing is relearned.
        redelivered = await feed.put(topics.PURCHASES, dated("e40", 40.0, 40), offset=4)
    assert (resent.duplicates, resent.learned) == (1, 0)
    assert (redelivered.duplicates, redelivered.learned) == (1, 0)
    profile = await runtime.profiles.get("c1")
    assert profile.orders == 5
    assert 0.0 <= profile.purchase_propensity <= 1.0
    assert profile.segment in range(runtime.settings.segments)
    assert 0.0 <= profile.last_purchase_anomaly <= 1.0
    # The customer's snapshots live with the customer, not in the models: their latest and
    # the one before (forgotten at their next event); each earlier one is in the due index,
    # paired with the snapshot of the purchase that followed it.
    assert [s.orders for s in profile.model_state.snapshots] == [4, 5]
    pairs = await runtime.profiles.client.hgetall(pair_key(0))
    assert sorted(pairs) == [member("c1", offset) for offset in range(4)]
    # Each purchase's lesson waits for a checkpoint in a sorted set of its own, not in the
    # profile (which would grow with every event until then).
    assert profile.model_state.lessons == []
    [purchase_lessons, *_] = lesson_keys("c1")
    pending = await runtime.profiles.client.zrange(purchase_lessons, 0, -1, withscores=True)
    assert [int(score) for _, score in pending] == [0, 1, 2, 3, 4]
    models = runtime.replicas[0].models.purchases
    assert models.anomaly.seen == 5
    assert models.segments.sizes[profile.segment] == 1
    # Each snapshot's first 30-day period holds a purchase; a period is learned when the
    # watermark (the newest occurred_at less CRM_ALLOWED_LATENESS, an hour) passes its end:
    # by day 40 only that of the snapshot of day 0 has.
    assert models.propensity.labels == {True: 1}
    # Checkpoints are written on an interval, not per batch.
    assert await runtime.checkpoints.client.exists(checkpoint_key(0)) == 0
    await runtime.checkpoint(app)
    assert await runtime.checkpoints.client.exists(checkpoint_key(0)) == 1
    # Once a checkpoint includes them, the customer's next write forgets the lessons.
    async with app.agents["events"].test_context() as agent:
        later = await Feeder(agent).put(topics.PURCHASES, dated("e50", 40.0, 50), offset=6)
    assert later.applied == 1, later
    pending = await runtime.profiles.client.zrange(purchase_lessons, 0, -1, withscores=True)
    assert [int(score) for _, score in pending] == [6]


async def test_an_unusual_purchase_raises_an_anomaly_alert_after_the_warmup(stack):
    app, runtime, sink = make_app(stack, anomaly_warmup=300, tier_gold=1e6, tier_platinum=2e6)
    rng = random.Random(5)
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        for n in range(400):
            amount = round(rng.lognormvariate(3.5, 0.4), 2)
            value = dated(f"e{n}", amount, n // 40, customer=f"c{n % 40}")
            await feed.put(topics.PURCHASES, value, key=f"c{n % 40}".encode())
        ordinary = sink.on(topics.ALERTS)
        huge = dated(
            "huge",
            50_000.0,
            11,
            customer="c3",
            items=[{"sku": "tv", "quantity": 120, "unit_price": 416.0}],
        )
        await feed.put(topics.PURCHASES, huge, key=b"c3")
    assert ordinary == []
    [alert] = alerts(sink)
    assert (alert.kind, alert.customer_id, alert.source_event_ids) == ("anomaly", "c3", ["huge"])
    assert alert.score >= runtime.settings.anomaly_threshold
    profile = await runtime.profiles.get("c3")
    assert profile.last_purchase_anomaly == alert.score


async def test_angry_message_raises_an_alert_and_updates_the_profile(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        calm = await feed.put(topics.CHATS, chat(0, "Hello, quick question about sizes"))
        reply = await feed.put(topics.CHATS, chat(1, "Happy to help!", sender="agent"))
        angry = await feed.put(topics.CHATS, chat(2, "This is terrible, awful service. I hate it."))
    assert (calm.outputs, reply.outputs, angry.outputs) == (0, 0, 1)
    [alert] = alerts(sink)
    assert (alert.kind, alert.customer_id, alert.source_event_ids) == (
        "strongly_negative",
        "c1",
        ["m2"],
    )
    profile = await runtime.profiles.get("c1")
    assert profile.messages == 2  # the agent's reply does not count
    assert profile.last_sentiment < -0.6 and profile.negative_streak == 1


async def test_cancel_intent_is_an_alert_and_the_last_intent(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["events"].test_context() as agent:
        await Feeder(agent).put(topics.CHATS, chat(0, "Please cancel my subscription"))
    assert [a.kind for a in alerts(sink)] == ["churn_intent"]
    assert (await runtime.profiles.get("c1")).last_intent == "cancel"


async def test_labelled_chats_teach_the_intent_model_once(app_and_sink):
    app, runtime, _ = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        await feed.put(topics.CHATS, chat(0, "my box never showed up", intent="delivery"))
        await feed.put(topics.CHATS, chat(1, "no label here"))
        await feed.put(topics.CHATS, chat(0, "my box never showed up", intent="delivery"))
    replica = runtime.replicas[0]
    assert replica.learned == 2  # the re-sent copy is not an event to learn from
    assert replica.models.conversations.intent.n_learned == 1


async def test_low_rating_alerts_and_rated_text_teaches_sentiment(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        low = await feed.put(topics.FEEDBACK, feedback(0, 1, "arrived smashed"))
        neutral = await feed.put(topics.FEEDBACK, feedback(1, 3, "it is a box"))
        high = await feed.put(topics.FEEDBACK, feedback(2, 5))
    assert (low.outputs, neutral.outputs, high.outputs) == (1, 0, 0)
    assert [a.kind for a in alerts(sink)] == ["low_rating"]
    profile = await runtime.profiles.get("c1")
    assert (profile.feedback, profile.last_rating) == (3, 5)
    # Only the 1-star text teaches: 3 stars is ignored, and the 5 stars came without text.
    assert runtime.replicas[0].models.conversations.sentiment.n_learned == 1


async def test_one_customer_events_of_all_topics_fold_together(app_and_sink):
    """A purchase that lifts a customer to gold and their angry message in the same
    stream: the alert's severity follows the tier the message was applied to."""
    app, runtime, sink = app_and_sink
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        await feed.put(topics.PURCHASES, purchase("big", 900.0))
        await feed.put(topics.CHATS, chat(0, "This is terrible, awful service. I hate it."))
    [alert] = alerts(sink)
    assert alert.severity == "critical"
    assert (await runtime.profiles.get("c1")).tier == "gold"
