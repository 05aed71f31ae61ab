"""Reads ``crm.purchases``: profiles in Redis, value-tier changes on ``crm.tier-changes``."""

from __future__ import annotations

import faust

from crmstream.models.money import UnsupportedCurrency
from crmstream.models.profile import Profile, apply_purchase
from crmstream.schemas import InvalidEvent, Purchase
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import input_agent
from crmstream.streams.profiles import Delivery
from crmstream.streams.sink import Output, keyed_outputs


def check_currency(runtime: Runtime, purchase: Purchase) -> None:
    """Reject purchases in a currency without a configured exchange rate."""
    try:
        runtime.currencies.to_base(0.0, purchase.currency)
    except UnsupportedCurrency as exc:
        raise InvalidEvent("unsupported_currency", str(exc), "$.currency") from None


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the purchases agent on ``app``."""
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
        return profile, keyed_outputs(topics.TIER_CHANGES, [change] if change else [])

    input_agent(app, runtime, topics.PURCHASES, Purchase, fold, check_currency)
