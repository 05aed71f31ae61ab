"""A scripted support conversation, end to end: exactly the expected alerts and profile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.models.sentiment import vader_score
from crmstream.schemas import Alert, ChatMessage, Feedback, Purchase
from crmstream.streams import topics
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import read_topic, wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)

# (sender, text, confirmed intent)
SCRIPT = [
    ("customer", "Hi, I have a question about my order from last week", None),
    ("agent", "Of course! What seems to be the problem?", None),
    ("customer", "The blender arrived broken", None),
    ("customer", "This is terrible, awful service. I hate it.", None),
    ("bot", "Your satisfaction matters to us!", None),
    ("customer", "Honestly the worst, most horrible experience ever", None),
    ("customer", "Please cancel my subscription today", "cancel"),
]


def chat(n: int, sender: str, text: str, intent: str | None) -> ChatMessage:
    return ChatMessage(
        event_id=f"eve-chat-{n}",
        customer_id="eve",
        occurred_at=T0 + timedelta(minutes=n),
        conversation_id="conv-1",
        sender=sender,
        text=text,
        intent=intent,
    )


def test_script_scores_as_the_test_assumes():
    scores = [vader_score(text) for sender, text, _ in SCRIPT if sender == "customer"]
    assert scores[0] > -0.3  # the opening is not negative
    assert -0.6 < scores[1] <= -0.3  # negative, not strongly
    assert scores[2] <= -0.6 and scores[3] <= -0.6  # strongly negative


def profile(redis_url: str):
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            return await store.get("eve")
        finally:
            await store.close()

    return asyncio.run(fetch())


def test_scripted_conversation_raises_exactly_the_expected_alerts(stack, start_worker):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with start_worker() as worker, Publisher(bootstrap) as publisher:
        publisher.publish(
            topics.PURCHASES,
            Purchase(
                event_id="eve-p1", customer_id="eve", occurred_at=T0, amount=900.0, cost=300.0
            ),
        )
        publisher.flush()
        wait_until(lambda: (p := profile(stack.redis_url)) and p.tier == "gold", 60, "gold tier")
        for n, (sender, text, intent) in enumerate(SCRIPT):
            publisher.publish(topics.CHATS, chat(n, sender, text, intent))
        publisher.flush()
        # Feedback teaches the sentiment model; send it once the chats are scored, so the
        # scores above are VADER's alone (the model has learned nothing yet).
        wait_until(lambda: profile(stack.redis_url).messages == 5, 60, "the chat messages")
        publisher.publish(
            topics.FEEDBACK,
            Feedback(
                event_id="eve-f1",
                customer_id="eve",
                occurred_at=T0 + timedelta(minutes=30),
                rating=1,
                nps=2,
                text="Never again",
            ),
        )
        publisher.flush()
        wait_until(
            lambda: (p := profile(stack.redis_url)) and p.messages == 5 and p.feedback == 1,
            60,
            "all chat and feedback events",
        )
        alerts = wait_until(
            lambda: (found := read_topic(bootstrap, topics.ALERTS)) and len(found) >= 4 and found,
            30,
            "four alerts",
        )
        assert worker.stop() == 0

    decoded = [msgspec.json.decode(r.value, type=Alert) for r in alerts]
    by_kind = {a.kind: a for a in decoded}
    assert sorted(a.kind for a in decoded) == [
        "churn_intent",
        "low_rating",
        "negative_streak",
        "strongly_negative",
    ]
    assert {a.severity for a in decoded} == {"critical"}  # a gold customer
    assert by_kind["strongly_negative"].source_event_ids == ["eve-chat-3"]
    assert by_kind["negative_streak"].source_event_ids == ["eve-chat-2", "eve-chat-3", "eve-chat-5"]
    assert by_kind["churn_intent"].source_event_ids == ["eve-chat-6"]
    assert by_kind["low_rating"].reason == "rating 1 of 5, NPS 2 of 10"
    assert by_kind["strongly_negative"].excerpt == SCRIPT[3][1]
    assert all(r.key == b"eve" for r in alerts)

    final = profile(stack.redis_url)
    customer_scores = [vader_score(t) for s, t, _ in SCRIPT if s == "customer"]
    assert final.messages == 5
    assert final.last_sentiment == pytest.approx(customer_scores[-1])
    assert final.negative_streak == (4 if customer_scores[-1] <= -0.3 else 0)
    assert final.last_intent == "cancel"
    assert (final.feedback, final.last_rating, final.last_nps) == (1, 1, 2)
    assert set(final.last_alerts) == set(by_kind)

    # The support page's history of the customer, written with the profile.
    customer_ids = [f"eve-chat-{n}" for n, (s, _, _) in enumerate(SCRIPT) if s == "customer"]
    history = final.history
    assert [m.event_id for m in history.messages] == customer_ids
    assert [m.sentiment for m in history.messages] == [round(s, 3) for s in customer_scores]
    assert history.messages[-1].intent == "cancel"
    assert history.messages[1].excerpt == SCRIPT[2][1]
    assert sorted((a.alert_id, a.kind) for a in history.alerts) == sorted(
        (a.alert_id, a.kind) for a in decoded
    )
    assert [(t.from_tier, t.to_tier, t.clv) for t in history.tiers] == [("bronze", "gold", 600.0)]
