"""The purchases agent in Faust's test context: no broker, a real Redis, recorded outputs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.schemas import Alert, TierChange
from crmstream.streams import topics
from crmstream.streams.app import create_app
from crmstream.streams.ingest import BatchSummary
from crmstream.streams.replicas import checkpoint_key
from crmstream.streams.settings import Settings
from tests.agent.conftest import RecordingSink


def purchase(event_id: str, amount: float, customer: str = "c1", **extra) -> bytes:
    record = {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "amount": amount,
        **extra,
    }
    return msgspec.json.encode(record)


async def put(agent, value: bytes, key: bytes = b"c1") -> BatchSummary:
    await agent.put(value=value, key=key)
    return agent.results[agent.processed_offset - 1]


async def test_purchase_updates_profile_and_emits_tier_change(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["purchases"].test_context() as agent:
        first = await put(agent, purchase("e1", 60.0))
        second = await put(agent, purchase("e2", 50.0, cost=5.0))
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
    async with app.agents["purchases"].test_context() as agent:
        converted = await put(agent, purchase("e1", 10.0, currency="EUR"))
        rejected = await put(agent, purchase("e2", 10.0, currency="JPY"))
    assert (converted.applied, rejected.deadlettered) == (1, 1)
    assert (await runtime.profiles.get("c1")).revenue == 20.0
    [dead] = sink.on(topics.DEADLETTER)
    headers = dict(dead.headers)
    assert headers["crm.error.code"] == b"unsupported_currency"
    assert headers["crm.error.path"] == b"$.currency"


async def test_invalid_input_is_dead_lettered_with_original_bytes(app_and_sink):
    app, _, sink = app_and_sink
    broken = b'{"event_id": "e1", "customer_id": "c1", "amount": 3'
    async with app.agents["purchases"].test_context() as agent:
        summary = await put(agent, broken, key=b"c1")
        still_working = await put(agent, purchase("e2", 1.0))
    assert (summary.deadlettered, summary.applied) == (1, 0)
    assert still_working.applied == 1
    [dead] = sink.on(topics.DEADLETTER)
    assert (dead.key, dead.value) == (b"c1", broken)
    headers = dict(dead.headers)
    assert headers["crm.error.code"] == b"invalid_json"
    assert headers["__connect.errors.topic"] == topics.PURCHASES.encode()


async def test_duplicate_event_id_is_skipped(app_and_sink):
    app, runtime, _ = app_and_sink
    async with app.agents["purchases"].test_context() as agent:
        await put(agent, purchase("e1", 10.0))
        duplicate = await put(agent, purchase("e1", 10.0))
    assert (duplicate.applied, duplicate.duplicates, duplicate.deadlettered) == (0, 1, 0)
    assert (await runtime.profiles.get("c1")).orders == 1


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


async def test_purchases_are_scored_then_teach_the_partition_models_once(app_and_sink):
    app, runtime, _ = app_and_sink
    async with app.agents["purchases"].test_context() as agent:
        for day in range(0, 50, 10):
            await put(agent, dated(f"e{day}", 40.0, day))
        await put(agent, dated("e40", 40.0, 40))  # re-sent: already applied and learned
    profile = await runtime.profiles.get("c1")
    assert profile.orders == 5
    assert 0.0 <= profile.purchase_propensity <= 1.0
    assert profile.segment in range(runtime.settings.segments)
    assert 0.0 <= profile.last_purchase_anomaly <= 1.0
    models = runtime.purchase_replicas[0].models
    history = models["propensity"].histories["c1"]
    assert (history.orders, history.revenue) == (5, 200.0)
    assert models["anomaly"].seen == 5
    assert models["segments"].sizes[models["segments"].members["c1"]] == 1
    # Each snapshot's first 30-day period holds a purchase; a period is learned when it
    # closes, and by day 40 only those of the snapshots of days 0 and 10 have.
    assert models["propensity"].labels == {True: 2}
    assert await runtime.profiles.raw_client.exists(checkpoint_key("purchases", 0)) == 1


@pytest.fixture
def eager_anomalies(stack):
    sink = RecordingSink()
    settings = Settings(
        kafka_url=stack.kafka_url,
        redis_url=stack.redis_url,
        batch_wait=0.01,
        anomaly_warmup=300,
        tier_gold=1e6,
        tier_platinum=2e6,
    )
    app, runtime = create_app(settings, sink=sink)
    app.finalize()
    app.flow_control.resume()
    return app, runtime, sink


async def test_an_unusual_purchase_raises_an_anomaly_alert_after_the_warmup(eager_anomalies):
    app, runtime, sink = eager_anomalies
    rng = random.Random(5)
    async with app.agents["purchases"].test_context() as agent:
        for n in range(400):
            amount = round(rng.lognormvariate(3.5, 0.4), 2)
            await put(agent, dated(f"e{n}", amount, n // 40, customer=f"c{n % 40}"))
        ordinary = sink.on(topics.ALERTS)
        await put(
            agent,
            dated(
                "huge",
                50_000.0,
                11,
                customer="c3",
                items=[{"sku": "tv", "quantity": 120, "unit_price": 416.0}],
            ),
        )
    assert ordinary == []
    [alert] = [msgspec.json.decode(o.value, type=Alert) for o in sink.on(topics.ALERTS)]
    assert (alert.kind, alert.customer_id, alert.source_event_ids) == ("anomaly", "c3", ["huge"])
    assert alert.score >= runtime.settings.anomaly_threshold
    profile = await runtime.profiles.get("c3")
    assert profile.last_purchase_anomaly == alert.score
