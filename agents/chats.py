"""Reads ``crm.chats``: sentiment and intent of customer messages, alerts on ``crm.alerts``.

Messages are scored with the partition's models before those learn from the batch
(predict, then learn); the intent model learns from messages carrying a confirmed label.
"""

from __future__ import annotations

from typing import Any

import faust

from crmstream.models.alerts import on_message
from crmstream.models.profile import Profile, apply_chat
from crmstream.schemas import ChatMessage
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import input_agent
from crmstream.streams.profiles import ApplyResult, Delivery
from crmstream.streams.sink import Output, keyed_outputs


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the chats agent on ``app``."""
    replicas = runtime.replicas

    def fold(profile: Profile, delivery: Delivery[ChatMessage]) -> tuple[Profile, list[Output]]:
        message = delivery.record
        profile = apply_chat(profile, message)
        if message.sender != "customer":
            return profile, []
        models = replicas[delivery.partition].models
        score = models["sentiment"].score(message.text)
        intent = models["intent"].predict(message.text)
        profile, alerts = on_message(profile, message, score, intent, runtime.alerts)
        return profile, keyed_outputs(topics.ALERTS, alerts)

    def teach(models: dict[str, Any], delivery: Delivery[ChatMessage]) -> bool:
        message = delivery.record
        if message.intent is None or message.sender != "customer":
            return False
        models["intent"].learn(message.text, message.intent)
        return True

    async def learn(result: ApplyResult) -> None:
        await replicas.learn(result, teach)

    input_agent(app, runtime, topics.CHATS, ChatMessage, fold, before=replicas.prepare, after=learn)
