"""Reads ``crm.purchases``: profiles and purchase models, tier changes and anomaly alerts.

Each purchase is folded into the profile and scored with the partition's purchase models
before they learn from it (predict, then learn): the profile gets ``purchase_propensity``,
``segment`` and ``last_purchase_anomaly``, value-tier changes go to ``crm.tier-changes``
and unusual purchases to ``crm.alerts``. After the batch's profiles are written the models
learn from each purchase exactly once (see :mod:`crmstream.streams.replicas`).
"""

from __future__ import annotations

from typing import Any

import faust
import msgspec

from crmstream.models.alerts import on_unusual_purchase
from crmstream.models.anomaly import purchase_features
from crmstream.models.money import UnsupportedCurrency
from crmstream.models.profile import Profile, apply_purchase
from crmstream.models.propensity import History, to_days
from crmstream.models.purchase_models import learn_purchase, units
from crmstream.models.segments import rfm_features
from crmstream.schemas import InvalidEvent, Purchase
from crmstream.streams import topics
from crmstream.streams.app import Runtime
from crmstream.streams.ingest import input_agent
from crmstream.streams.profiles import ApplyResult, Delivery
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
    replicas = runtime.purchase_replicas
    threshold = runtime.settings.anomaly_threshold
    # The customer's sentiment at each purchase, from the fold (which has the profile) to
    # the models' learning step of the same batch.
    sentiments: dict[str, float | None] = {}

    def fold(profile: Profile, delivery: Delivery[Purchase]) -> tuple[Profile, list[Output]]:
        purchase = delivery.record
        amount = fx.to_base(purchase.amount, purchase.currency)
        before = profile
        profile, change = apply_purchase(
            profile,
            purchase,
            runtime.tiers,
            amount=amount,
            cost=fx.to_base(purchase.cost or 0.0, purchase.currency),
        )
        models = replicas[delivery.partition].models
        at = to_days(purchase.occurred_at)
        gap = (at - to_days(before.last_purchase_at)) if before.last_purchase_at else 0.0
        history = History(
            profile.orders,
            profile.revenue,
            to_days(profile.first_purchase_at or purchase.occurred_at),
            to_days(profile.last_purchase_at or purchase.occurred_at),
            profile.sentiment_avg or 0.0,
        )
        x = purchase_features(amount, units(purchase), before.orders, before.revenue, gap)
        anomaly = models["anomaly"].score_one(x)
        profile = msgspec.structs.replace(
            profile,
            purchase_propensity=round(models["propensity"].predict_history(history, at), 4),
            segment=models["segments"].predict_one(
                rfm_features(gap, profile.orders, profile.revenue)
            ),
            last_purchase_anomaly=round(anomaly, 4),
        )
        sentiments[delivery.event_id] = profile.sentiment_avg
        alerts = []
        if models["anomaly"].is_anomaly(anomaly):
            alerts = on_unusual_purchase(
                before, purchase, amount, anomaly, threshold, runtime.alerts
            )
        return profile, [
            *keyed_outputs(topics.TIER_CHANGES, [change] if change else []),
            *keyed_outputs(topics.ALERTS, alerts),
        ]

    def teach(models: dict[str, Any], delivery: Delivery[Purchase]) -> bool:
        purchase = delivery.record
        amount = fx.to_base(purchase.amount, purchase.currency)
        learn_purchase(models, purchase, amount, sentiments.pop(delivery.event_id, None))
        return True

    async def learn(result: ApplyResult) -> None:
        try:
            await replicas.learn(result, teach)
        finally:
            sentiments.clear()

    input_agent(
        app,
        runtime,
        topics.PURCHASES,
        Purchase,
        fold,
        check_currency,
        before=replicas.prepare,
        after=learn,
    )
