"""Profile arithmetic: how one purchase changes what we know about a customer."""

from __future__ import annotations

from datetime import datetime

import msgspec

from crmstream.models.contact import Contact, ProtectedDetails, apply_details, merge_consent
from crmstream.models.customer_state import CustomerModelState
from crmstream.models.history import History
from crmstream.models.recommend import CustomerItems, Recommendation
from crmstream.models.tiers import TierPolicy
from crmstream.models.traits import DayActivity
from crmstream.schemas.inputs import ChatMessage, Consent, Feedback, Purchase
from crmstream.schemas.outputs import Tier, TierChange, deterministic_id


class Profile(msgspec.Struct, kw_only=True):
    """What crmstream knows about one customer; money is in the base currency.

    ``clv`` follows the product definition: revenue minus cost over the customer's life.
    The sentiment fields are kept by :mod:`crmstream.models.alerts`: ``sentiment_avg`` is an
    exponentially weighted moving average of the customer's message scores,
    ``sentiment_ref`` the level a drop is measured from, ``streak_event_ids`` the messages
    of the current negative streak, ``last_alerts`` when each alert kind last fired.

    The purchase models' fields are set at each purchase: ``purchase_propensity`` is the
    probability that the customer buys again within the configured horizon, as scored at
    their latest purchase (:mod:`crmstream.models.propensity`); ``segment`` their online
    k-means segment (:mod:`crmstream.models.segments`); ``last_purchase_anomaly`` how
    unusual their latest purchase was, 0..1 (:mod:`crmstream.models.anomaly`);
    ``predicted_revenue`` the revenue expected from them in the configured value horizon
    and ``predicted_clv`` that less the expected cost at their cost ratio
    (:mod:`crmstream.models.value`).
    ``model_state`` is what the purchase models keep of the customer
    (:mod:`crmstream.models.customer_state`).

    ``activity`` holds the customer's day buckets of the last 90 days, from which rules'
    windowed traits are computed (:mod:`crmstream.models.traits`); ``rules_fired`` when
    each marketing rule last fired for them, for ``once_per`` and ``cooldown``
    (:mod:`crmstream.models.rules`), and ``audiences`` the audiences they are in. All are
    written with the profile, by the same compare-and-set, so a redelivered event never
    fires a rule or changes an audience twice.
    ``history`` is the customer's recent messages, alerts and tier changes, bounded
    (:mod:`crmstream.models.history`).
    ``contact`` is what is kept of the customer's name and contact details: keyed hashes
    and, when a key is configured, encrypted copies (:mod:`crmstream.models.contact`);
    ``consent`` their latest marketing consent per channel (``email``, ``sms``, ...).

    ``items`` is what recommendations keep of the customer's purchases (their items, how
    often and when), and ``recommendations`` their top-k items with a score and a reason
    (:mod:`crmstream.models.recommend`). Readers (the API, ``crmstream profile`` and
    ``crmstream recommend``) score them when they read the profile; the worker stores them
    only when a marketing rule reads ``next_best_offer`` (scored at the customer's latest
    purchase with items), and leaves the field empty otherwise.
    """

    customer_id: str
    orders: int = 0
    revenue: float = 0.0
    cost: float = 0.0
    tier: Tier = "bronze"
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    messages: int = 0
    last_message_at: datetime | None = None
    feedback: int = 0
    last_rating: int | None = None
    last_nps: int | None = None
    last_feedback_at: datetime | None = None
    last_sentiment: float | None = None
    sentiment_avg: float | None = None
    sentiment_ref: float | None = None
    negative_streak: int = 0
    streak_event_ids: list[str] = msgspec.field(default_factory=list)
    last_intent: str | None = None
    last_alerts: dict[str, datetime] = msgspec.field(default_factory=dict)
    purchase_propensity: float | None = None
    segment: int | None = None
    last_purchase_anomaly: float | None = None
    predicted_revenue: float | None = None
    predicted_clv: float | None = None
    model_state: CustomerModelState = msgspec.field(default_factory=CustomerModelState)
    activity: list[DayActivity] = msgspec.field(default_factory=list)
    rules_fired: dict[str, datetime] = msgspec.field(default_factory=dict)
    audiences: list[str] = msgspec.field(default_factory=list)
    history: History = msgspec.field(default_factory=History)
    items: CustomerItems = msgspec.field(default_factory=CustomerItems)
    recommendations: list[Recommendation] = msgspec.field(default_factory=list)
    contact: Contact | None = None
    consent: dict[str, Consent] = msgspec.field(default_factory=dict)

    def consents_to(self, channel: str) -> bool:
        """Whether the customer's latest answer for ``channel`` grants consent."""
        answer = self.consent.get(channel)
        return answer is not None and answer.granted

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


def apply_chat(profile: Profile, message: ChatMessage) -> Profile:
    """Count a chat message the customer sent (agent and bot messages leave the profile as is).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> said = ChatMessage(event_id="m1", customer_id="c1", occurred_at=at,
    ...                    conversation_id="k1", sender="customer", text="Where is my order?")
    >>> apply_chat(Profile(customer_id="c1"), said).messages
    1
    >>> reply = msgspec.structs.replace(said, event_id="m2", sender="agent")
    >>> apply_chat(Profile(customer_id="c1"), reply).messages
    0
    """
    if message.sender != "customer":
        return profile
    at = message.occurred_at
    return msgspec.structs.replace(
        profile,
        messages=profile.messages + 1,
        last_message_at=max(at, profile.last_message_at or at),
    )


def apply_feedback(profile: Profile, feedback: Feedback) -> Profile:
    """Count a feedback event and keep the latest rating and NPS answer.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> stars = Feedback(event_id="f1", customer_id="c1", occurred_at=at, rating=2)
    >>> profile = apply_feedback(Profile(customer_id="c1", last_nps=9), stars)
    >>> profile.feedback, profile.last_rating, profile.last_nps
    (1, 2, 9)
    """
    at = feedback.occurred_at
    latest = profile.last_feedback_at is None or at >= profile.last_feedback_at
    return msgspec.structs.replace(
        profile,
        feedback=profile.feedback + 1,
        last_rating=feedback.rating
        if latest and feedback.rating is not None
        else profile.last_rating,
        last_nps=feedback.nps if latest and feedback.nps is not None else profile.last_nps,
        last_feedback_at=max(at, profile.last_feedback_at or at),
    )


def apply_customer(profile: Profile, details: ProtectedDetails) -> Profile:
    """Fold a ``crm.customers`` record (already protected) into a profile: contact
    details and consent (see :mod:`crmstream.models.contact`).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> yes = Consent(granted=True, at=at, source="signup")
    >>> details = ProtectedDetails(event_id="u1", customer_id="c1", occurred_at=at,
    ...                            hashes={"email": "ab12"}, consent={"email": yes})
    >>> profile = apply_customer(Profile(customer_id="c1"), details)
    >>> profile.contact.hashes, profile.consents_to("email"), profile.consents_to("sms")
    ({'email': 'ab12'}, True, False)
    """
    return msgspec.structs.replace(
        profile,
        contact=apply_details(profile.contact, details),
        consent=merge_consent(profile.consent, details.consent),
    )
