"""Reads ``crm.chats``: message counts in the customer's profile."""

from __future__ import annotations

import faust

from crmstream.models.profile import Profile, apply_chat
from crmstream.schemas import ChatMessage
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import ingest
from crmstream.streams.profiles import Delivery
from crmstream.streams.sink import Output


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the chats agent on ``app``."""
    settings = runtime.settings

    def fold(profile: Profile, delivery: Delivery[ChatMessage]) -> tuple[Profile, list[Output]]:
        return apply_chat(profile, delivery.record), []

    @app.agent(runtime.input_topic(app, topics.CHATS), name="chats", concurrency=1)
    async def chats(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            yield await ingest(runtime, [event.message for event in events], ChatMessage, fold)
