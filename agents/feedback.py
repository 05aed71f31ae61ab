"""Reads ``crm.feedback``: ratings and NPS in the profile, ``low_rating`` alerts, and the
sentiment model learning the shop's language from rated texts."""

from __future__ import annotations

from typing import Any

import faust

from crmstream.models.alerts import on_feedback
from crmstream.models.profile import Profile, apply_feedback
from crmstream.models.sentiment import rating_label
from crmstream.schemas import Feedback
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import input_agent
from crmstream.streams.profiles import ApplyResult, Delivery
from crmstream.streams.sink import Output, keyed_outputs


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the feedback agent on ``app``."""
    replicas = runtime.replicas

    def fold(profile: Profile, delivery: Delivery[Feedback]) -> tuple[Profile, list[Output]]:
        profile = apply_feedback(profile, delivery.record)
        profile, alerts = on_feedback(profile, delivery.record, runtime.alerts)
        return profile, keyed_outputs(topics.ALERTS, alerts)

    def teach(models: dict[str, Any], delivery: Delivery[Feedback]) -> bool:
        feedback = delivery.record
        label = rating_label(feedback.rating) if feedback.rating is not None else None
        if label is None or not feedback.text:
            return False
        models["sentiment"].learn(feedback.text, label)
        return True

    async def learn(result: ApplyResult) -> None:
        await replicas.learn(result, teach)

    input_agent(app, runtime, topics.FEEDBACK, Feedback, fold, before=replicas.prepare, after=learn)
