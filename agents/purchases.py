"""Reads ``crm.purchases``: profiles in Redis, value-tier changes on ``crm.tier-changes``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
import msgspec
from faust.types import Message

from crmstream.models.money import UnsupportedCurrency
from crmstream.models.profile import Profile, apply_purchase
from crmstream.schemas import InvalidEvent, Purchase, decode, encode
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.deadletter import deadletter
from crmstream.streams.profiles import Delivery
from crmstream.streams.sink import Output

log = logging.getLogger(__name__)


class BatchSummary(msgspec.Struct, frozen=True):
    """What the agent did with one batch (yielded, so tests and sinks can see it)."""

    received: int
    applied: int
    duplicates: int
    deadlettered: int
    tier_changes: int


def decode_purchase(runtime: Runtime, message: Message) -> Delivery[Purchase]:
    """Decode one message into a delivery, or raise :class:`InvalidEvent`."""
    purchase = decode(message.value or b"", Purchase)
    try:
        runtime.currencies.to_base(0.0, purchase.currency)
    except UnsupportedCurrency as exc:
        raise InvalidEvent("unsupported_currency", str(exc), "$.currency") from None
    return Delivery(
        message.topic,
        message.partition,
        message.offset,
        purchase.customer_id,
        purchase.event_id,
        purchase,
    )


async def handle_purchases(runtime: Runtime, messages: Sequence[Message]) -> BatchSummary:
    """Apply a batch of purchase messages; invalid ones go to the dead-letter topic."""
    deliveries: list[Delivery[Purchase]] = []
    rejected: list[Output] = []
    for message in messages:
        try:
            deliveries.append(decode_purchase(runtime, message))
        except InvalidEvent as exc:
            log.warning(
                "dead-lettering %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            rejected.append(
                deadletter(
                    exc,
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    message.timestamp,
                )
            )
    if rejected:
        await runtime.sink.send(rejected)

    def fold(profile: Profile, delivery: Delivery[Purchase]) -> tuple[Profile, list[Output]]:
        purchase = delivery.record
        fx = runtime.currencies
        profile, change = apply_purchase(
            profile,
            purchase,
            runtime.tiers,
            amount=fx.to_base(purchase.amount, purchase.currency),
            cost=fx.to_base(purchase.cost or 0.0, purchase.currency),
        )
        if change is None:
            return profile, []
        return profile, [Output(topics.TIER_CHANGES, change.customer_id.encode(), encode(change))]

    result = await runtime.profiles.apply(deliveries, fold, runtime.sink.send)
    return BatchSummary(
        received=len(messages),
        applied=result.applied,
        duplicates=result.duplicates,
        deadlettered=len(rejected),
        tier_changes=len(result.outputs),
    )


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the purchases agent on ``app``."""
    settings = runtime.settings

    @app.agent(runtime.input_topic(app, topics.PURCHASES), name="purchases", concurrency=1)
    async def purchases(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            yield await handle_purchases(runtime, [event.message for event in events])
