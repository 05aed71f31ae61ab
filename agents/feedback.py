"""Reads ``crm.feedback``: feedback counts, last rating and last NPS in the profile."""

from __future__ import annotations

import faust

from crmstream.models.profile import Profile, apply_feedback
from crmstream.schemas import Feedback
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import ingest
from crmstream.streams.profiles import Delivery
from crmstream.streams.sink import Output


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the feedback agent on ``app``."""
    settings = runtime.settings

    def fold(profile: Profile, delivery: Delivery[Feedback]) -> tuple[Profile, list[Output]]:
        return apply_feedback(profile, delivery.record), []

    @app.agent(runtime.input_topic(app, topics.FEEDBACK), name="feedback", concurrency=1)
    async def feedback(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            yield await ingest(runtime, [event.message for event in events], Feedback, fold)
