"""Event time in the worker: live events, then years-old history, then a future-dated one.

The history updates the profiles but teaches the partition's propensity model no label
(every period of it closed before the live watermark), and an event dated beyond
``CRM_MAX_FUTURE`` is dead-lettered as ``future_timestamp``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.streams import topics
from tests.integration.conftest import Feeder, make_app

pytestmark = pytest.mark.integration


def purchase(event_id: str, customer: str, at: datetime) -> bytes:
    return msgspec.json.encode(
        {"event_id": event_id, "customer_id": customer, "occurred_at": at.isoformat(), "amount": 20}
    )


async def test_live_then_history_then_future(stack):
    app, runtime, sink = make_app(stack, max_future=3600.0)
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        live = f"live-{run}"
        await feed.put(topics.PURCHASES, purchase(f"{run}-l", live, now), key=live.encode())
        model = runtime.replicas[0].models.purchases.propensity
        labels, clock = dict(model.labels), model.clock
        applied = 0
        for n in range(4):
            customer = f"old-{run}-{n}"
            for k in range(6):  # every 20 days in 1997
                at = datetime(1997, 1, 1, tzinfo=UTC) + timedelta(days=20 * k + n)
                summary = await feed.put(
                    topics.PURCHASES,
                    purchase(f"{run}-{n}-{k}", customer, at),
                    key=customer.encode(),
                )
                applied += summary.applied
        ahead = await feed.put(
            topics.PURCHASES,
            purchase(f"{run}-f", live, now + timedelta(hours=2)),
            key=live.encode(),
        )
        soon = await feed.put(
            topics.PURCHASES,
            purchase(f"{run}-s", live, now + timedelta(minutes=30)),
            key=live.encode(),
        )
    assert applied == 24
    assert (await runtime.profiles.get(f"old-{run}-0")).orders == 6
    assert dict(model.labels) == labels  # nothing learned from the late history
    assert model.clock >= clock
    assert (ahead.deadlettered, ahead.applied, soon.applied) == (1, 0, 1)
    [dead] = sink.on(topics.DEADLETTER)
    headers = dict(dead.headers)
    assert (headers["crm.error.code"], headers["crm.error.path"]) == (
        b"future_timestamp",
        b"$.occurred_at",
    )
    assert (await runtime.profiles.get(live)).orders == 2
