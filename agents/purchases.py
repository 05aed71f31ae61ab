"""Reads ``crm.purchases``: profiles in Redis, value-tier changes on ``crm.tier-changes``."""

from __future__ import annotations

import faust

from crmstream.models.money import UnsupportedCurrency
from crmstream.models.profile import Profile, apply_purchase
from crmstream.schemas import InvalidEvent, Purchase, encode
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import ingest
from crmstream.streams.profiles import Delivery
from crmstream.streams.sink import Output


def check_currency(runtime: Runtime, purchase: Purchase) -> None:
    """Reject purchases in a currency without a configured exchange rate."""
    try:
        runtime.currencies.to_base(0.0, purchase.currency)
    except UnsupportedCurrency as exc:
        raise InvalidEvent("unsupported_currency", str(exc), "$.currency") from None


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the purchases agent on ``app``."""
    settings = runtime.settings
    fx = runtime.currencies

    def fold(profile: Profile, delivery: Delivery[Purchase]) -> tuple[Profile, list[Output]]:
        purchase = delivery.record
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

    @app.agent(runtime.input_topic(app, topics.PURCHASES), name="purchases", concurrency=1)
    async def purchases(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            messages = [event.message for event in events]
            yield await ingest(runtime, messages, Purchase, fold, check_currency)
