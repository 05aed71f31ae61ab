"""Reads ``crm.feedback``: ratings and NPS in the profile, ``low_rating`` alerts, and the
sentiment model learning the shop's language from rated texts."""

from __future__ import annotations

from typing import Any

import faust

from crmstream.models.alerts import on_feedback
from crmstream.models.profile import Profile, apply_feedback
from crmstream.models.sentiment import rating_label
from crmstream.schemas import Feedback, encode
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import ingest
from crmstream.streams.profiles import ApplyResult, Delivery
from crmstream.streams.sink import Output


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the feedback agent on ``app``."""
    settings = runtime.settings
    replicas = runtime.replicas

    def fold(profile: Profile, delivery: Delivery[Feedback]) -> tuple[Profile, list[Output]]:
        profile = apply_feedback(profile, delivery.record)
        profile, alerts = on_feedback(profile, delivery.record, runtime.alerts)
        return profile, [Output(topics.ALERTS, a.customer_id.encode(), encode(a)) for a in alerts]

    def teach(models: dict[str, Any], delivery: Delivery[Feedback]) -> bool:
        feedback = delivery.record
        label = rating_label(feedback.rating) if feedback.rating is not None else None
        if label is None or not feedback.text:
            return False
        models["sentiment"].learn(feedback.text, label)
        return True

    async def learn(result: ApplyResult) -> None:
        await replicas.learn(result, teach)

    @app.agent(runtime.input_topic(app, topics.FEEDBACK), name="feedback", concurrency=1)
    async def feedback(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            messages = [event.message for event in events]
            yield await ingest(
                runtime, messages, Feedback, fold, before=replicas.prepare, after=learn
            )
