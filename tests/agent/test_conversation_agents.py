"""The chats and feedback agents in Faust's test context: alerts, profiles, learning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from crmstream.schemas import Alert, ChatMessage, Feedback
from crmstream.streams import topics
from crmstream.streams.ingest import BatchSummary
from crmstream.streams.replicas import checkpoint_key

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


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


async def put(agent, value: bytes) -> BatchSummary:
    await agent.put(value=value, key=b"c1")
    return agent.results[agent.processed_offset - 1]


def alerts(sink) -> list[Alert]:
    return [msgspec.json.decode(o.value, type=Alert) for o in sink.on(topics.ALERTS)]


async def test_angry_message_raises_an_alert_and_updates_the_profile(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["chats"].test_context() as agent:
        calm = await put(agent, chat(0, "Hello, quick question about sizes"))
        reply = await put(agent, chat(1, "Happy to help!", sender="agent"))
        angry = await put(agent, chat(2, "This is terrible, awful service. I hate it."))
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
    async with app.agents["chats"].test_context() as agent:
        await put(agent, chat(0, "Please cancel my subscription"))
    assert [a.kind for a in alerts(sink)] == ["churn_intent"]
    assert (await runtime.profiles.get("c1")).last_intent == "cancel"


async def test_labelled_chats_teach_the_intent_model_once_and_are_checkpointed(app_and_sink):
    app, runtime, _ = app_and_sink
    async with app.agents["chats"].test_context() as agent:
        await put(agent, chat(0, "my box never showed up", intent="delivery"))
        await put(agent, chat(1, "no label here"))
        await put(agent, chat(0, "my box never showed up", intent="delivery"))  # re-sent
    replica = runtime.replicas[0]
    assert replica.learned == 1
    assert replica.models["intent"].n_learned == 1
    assert await runtime.profiles.raw_client.exists(checkpoint_key("conversations", 0)) == 1


async def test_low_rating_alerts_and_rated_text_teaches_sentiment(app_and_sink):
    app, runtime, sink = app_and_sink
    async with app.agents["feedback"].test_context() as agent:
        low = await put(agent, feedback(0, 1, "arrived smashed"))
        neutral = await put(agent, feedback(1, 3, "it is a box"))
        high = await put(agent, feedback(2, 5))
    assert (low.outputs, neutral.outputs, high.outputs) == (1, 0, 0)
    assert [a.kind for a in alerts(sink)] == ["low_rating"]
    profile = await runtime.profiles.get("c1")
    assert (profile.feedback, profile.last_rating) == (3, 5)
    # Only the 1-star text teaches: 3 stars is ignored, and the 5 stars came without text.
    assert runtime.replicas[0].models["sentiment"].n_learned == 1
