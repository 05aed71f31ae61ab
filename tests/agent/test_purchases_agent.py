"""The purchases agent in Faust's test context: no broker, a real Redis, recorded outputs."""

from __future__ import annotations

import msgspec
import pytest

from crmstream.schemas import TierChange
from crmstream.streams import topics
from crmstream.streams.ingest import BatchSummary


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
