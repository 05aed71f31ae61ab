"""Profile arithmetic: how one purchase changes what we know about a customer."""

from __future__ import annotations

from datetime import datetime

import msgspec

from crmstream.models.tiers import TierPolicy
from crmstream.schemas.inputs import Purchase
from crmstream.schemas.outputs import Tier, TierChange, deterministic_id


class Profile(msgspec.Struct, kw_only=True):
    """What crmstream knows about one customer; money is in the base currency.

    ``clv`` follows the product definition: revenue minus cost over the customer's life.
    """

    customer_id: str
    orders: int = 0
    revenue: float = 0.0
    cost: float = 0.0
    tier: Tier = "bronze"
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None

    @property
    def clv(self) -> float:
        """Customer lifetime value so far: revenue minus cost."""
        return self.revenue - self.cost


def apply_purchase(
    profile: Profile,
    purchase: Purchase,
    policy: TierPolicy,
    amount: float | None = None,
    cost: float | None = None,
) -> tuple[Profile, TierChange | None]:
    """Fold one purchase into a profile and decide the customer's tier.

    ``amount`` and ``cost`` are the purchase's figures in the base currency (defaults:
    the purchase's own ``amount`` and ``cost``). The input profile is not modified.

    Returns
    -------
    (Profile, TierChange or None)
        The new profile, and the tier change if the purchase moved the customer.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> buy = Purchase(event_id="e1", customer_id="c1", occurred_at=at, amount=150.0, cost=30.0)
    >>> profile, change = apply_purchase(Profile(customer_id="c1"), buy, TierPolicy())
    >>> profile.orders, profile.revenue, profile.clv, profile.tier
    (1, 150.0, 120.0, 'silver')
    >>> change.from_tier, change.to_tier, change.reason
    ('bronze', 'silver', 'clv 120.00 reached the silver threshold 100.00')
    >>> apply_purchase(profile, buy, TierPolicy())[1] is None   # still silver: no change
    True
    """
    amount = purchase.amount if amount is None else amount
    cost = (purchase.cost or 0.0) if cost is None else cost
    at = purchase.occurred_at
    new = msgspec.structs.replace(
        profile,
        orders=profile.orders + 1,
        revenue=profile.revenue + amount,
        cost=profile.cost + cost,
        first_purchase_at=min(at, profile.first_purchase_at or at),
        last_purchase_at=max(at, profile.last_purchase_at or at),
    )
    tier = policy.decide(profile.tier, new.clv)
    if tier == profile.tier:
        return new, None
    new.tier = tier
    change = TierChange(
        change_id=deterministic_id(purchase.event_id, "tier", profile.tier, tier),
        customer_id=profile.customer_id,
        from_tier=profile.tier,
        to_tier=tier,
        clv=new.clv,
        occurred_at=at,
        reason=policy.reason(profile.tier, tier, new.clv),
        event_id=purchase.event_id,
    )
    return new, change
