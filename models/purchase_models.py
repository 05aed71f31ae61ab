"""A partition's purchase models together: what one purchase teaches them.

The models are :class:`~crmstream.models.propensity.PurchasePropensity`,
:class:`~crmstream.models.segments.CustomerSegments` and
:class:`~crmstream.models.anomaly.PurchaseAnomaly`, kept in a dict under the keys
``propensity``, ``segments`` and ``anomaly`` (one dict per partition replica).
"""

from __future__ import annotations

from typing import Any

from crmstream.models.anomaly import purchase_features
from crmstream.models.propensity import to_days
from crmstream.models.segments import rfm_features
from crmstream.schemas.inputs import Purchase


def units(purchase: Purchase) -> int:
    """Units bought: the items' quantities, or 1 for a purchase without items.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> units(Purchase(event_id="e1", customer_id="c1", occurred_at=at, amount=5.0))
    1
    """
    return sum(item.quantity for item in purchase.items) if purchase.items else 1


def learn_purchase(
    models: dict[str, Any], purchase: Purchase, amount: float, sentiment: float | None
) -> None:
    """Teach a partition's purchase models one purchase (``amount`` in the base currency).

    The customer's history before the purchase is the propensity model's own, so learning
    needs nothing but the event (and the customer's sentiment, when known).
    """
    customer_id = purchase.customer_id
    propensity = models["propensity"]
    before = propensity.histories.get(customer_id)
    at = to_days(purchase.occurred_at)
    gap = max(at - before.last, 0.0) if before else 0.0
    orders, revenue = (before.orders, before.revenue) if before else (0, 0.0)
    models["anomaly"].learn_one(purchase_features(amount, units(purchase), orders, revenue, gap))
    models["segments"].learn_one(customer_id, rfm_features(gap, orders + 1, revenue + amount))
    propensity.learn_purchase(customer_id, purchase.occurred_at, amount, sentiment)
