"""When to tell the support team that a customer is unhappy, and how loudly.

The policy keeps its state in the customer's profile (moving average, negative streak,
last alert per kind), so it follows the customer across workers and restarts. All times
are event times (``occurred_at``), so replaying a stream gives the same alerts.

Alert kinds:

``strongly_negative``
    one customer message scoring at or below ``strongly_negative``.
``negative_streak``
    ``streak`` customer messages in a row scoring at or below ``negative``.
``sentiment_drop``
    the moving average fell more than ``drop`` below the level it was at (the highest
    average since the last drop alert).
``churn_intent``
    a customer message with intent ``cancel``.
``low_rating``
    feedback with a rating at or below ``low_rating`` or an NPS at or below ``low_nps``.
``anomaly``
    a purchase the anomaly model (:mod:`crmstream.models.anomaly`) scored at or above its
    threshold; every such purchase alerts, without cooldown.

Each kind has a cooldown per customer: one angry conversation gives one alert per kind,
not one per message. Severity is ``warning``, or ``critical`` for customers in
``critical_tiers`` and for churn intent of customers above bronze.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from crmstream.models.profile import Profile
from crmstream.models.redaction import redact
from crmstream.schemas.inputs import ChatMessage, Feedback, Purchase
from crmstream.schemas.outputs import Alert, AlertKind, Severity, deterministic_id

EXCERPT = 280


@dataclass(frozen=True)
class AlertPolicy:
    """Thresholds of the alert kinds; see the module documentation.

    Examples
    --------
    >>> AlertPolicy().streak
    3
    """

    strongly_negative: float = -0.6
    negative: float = -0.3
    streak: int = 3
    drop: float = 0.5
    smoothing: float = 0.3
    cooldown: timedelta = timedelta(hours=1)
    low_rating: int = 2
    low_nps: int = 4
    critical_tiers: tuple[str, ...] = ("gold", "platinum")

    def __post_init__(self) -> None:
        if not -1 <= self.strongly_negative <= self.negative <= 1:
            raise ValueError("need -1 <= strongly_negative <= negative <= 1")
        if self.streak < 2:
            raise ValueError("a streak needs at least 2 messages")
        if not 0 < self.smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        if self.drop <= 0:
            raise ValueError("drop must be positive")

    def severity(self, kind: AlertKind, tier: str) -> Severity:
        """``critical`` for high-value customers (and churn intent above bronze).

        Examples
        --------
        >>> AlertPolicy().severity("negative_streak", "gold")
        'critical'
        >>> AlertPolicy().severity("negative_streak", "silver")
        'warning'
        >>> AlertPolicy().severity("churn_intent", "silver")
        'critical'
        """
        if tier in self.critical_tiers or (kind == "churn_intent" and tier != "bronze"):
            return "critical"
        return "warning"


def _alert(
    profile: Profile,
    policy: AlertPolicy,
    kind: AlertKind,
    score: float,
    reason: str,
    at: datetime,
    sources: list[str],
    excerpt: str | None,
) -> Alert:
    return Alert(
        alert_id=deterministic_id(kind, *sources),
        customer_id=profile.customer_id,
        kind=kind,
        severity=policy.severity(kind, profile.tier),
        score=round(score, 4),
        reason=reason,
        occurred_at=at,
        source_event_ids=sources,
        excerpt=None if excerpt is None else redact(excerpt)[:EXCERPT],
    )


def _cooled_down(profile: Profile, kind: str, at: datetime, policy: AlertPolicy) -> bool:
    last = profile.last_alerts.get(kind)
    return last is None or at - last >= policy.cooldown


def _fire(
    profile: Profile, candidates: list[Alert], policy: AlertPolicy
) -> tuple[Profile, list[Alert]]:
    fired = [a for a in candidates if _cooled_down(profile, a.kind, a.occurred_at, policy)]
    if not fired:
        return profile, []
    last_alerts = dict(profile.last_alerts)
    for alert in fired:
        last_alerts[alert.kind] = alert.occurred_at
    return msgspec.structs.replace(profile, last_alerts=last_alerts), fired


def on_message(
    profile: Profile,
    message: ChatMessage,
    sentiment: float,
    intent: str,
    policy: AlertPolicy,
) -> tuple[Profile, list[Alert]]:
    """Fold a scored customer message into the profile; return the alerts it raises.

    Messages from agents and bots leave the profile unchanged and raise nothing.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    >>> def said(n, text="no"):
    ...     return ChatMessage(event_id=f"m{n}", customer_id="c1", occurred_at=at,
    ...                        conversation_id="k", sender="customer", text=text)
    >>> profile, policy = Profile(customer_id="c1"), AlertPolicy()
    >>> profile, alerts = on_message(profile, said(1), -0.4, "other", policy)
    >>> profile, alerts = on_message(profile, said(2), -0.5, "other", policy)
    >>> profile.negative_streak, alerts
    (2, [])
    >>> profile, alerts = on_message(profile, said(3, "useless"), -0.7, "cancel", policy)
    >>> sorted(a.kind for a in alerts)
    ['churn_intent', 'negative_streak', 'strongly_negative']
    >>> [a.source_event_ids for a in alerts if a.kind == "negative_streak"]
    [['m1', 'm2', 'm3']]
    >>> on_message(profile, said(4), -0.9, "other", policy)[1]   # cooling down
    []
    """
    if message.sender != "customer":
        return profile, []
    at = message.occurred_at
    previous = profile.sentiment_avg
    average = (
        sentiment if previous is None else previous + policy.smoothing * (sentiment - previous)
    )
    reference = max(
        profile.sentiment_ref if profile.sentiment_ref is not None else average, average
    )
    negative = sentiment <= policy.negative
    streak_ids = [*profile.streak_event_ids, message.event_id][-policy.streak :] if negative else []
    profile = msgspec.structs.replace(
        profile,
        last_sentiment=sentiment,
        sentiment_avg=average,
        sentiment_ref=reference,
        negative_streak=profile.negative_streak + 1 if negative else 0,
        streak_event_ids=streak_ids,
        last_intent=intent,
    )
    candidates = []
    excerpt = message.text
    if sentiment <= policy.strongly_negative:
        candidates.append(
            _alert(
                profile,
                policy,
                "strongly_negative",
                sentiment,
                f"message scored {sentiment:.2f} (threshold {policy.strongly_negative:.2f})",
                at,
                [message.event_id],
                excerpt,
            )
        )
    if negative and profile.negative_streak >= policy.streak:
        candidates.append(
            _alert(
                profile,
                policy,
                "negative_streak",
                sentiment,
                f"{profile.negative_streak} negative messages in a row",
                at,
                list(streak_ids),
                excerpt,
            )
        )
    if reference - average > policy.drop:
        candidates.append(
            _alert(
                profile,
                policy,
                "sentiment_drop",
                average,
                f"average sentiment fell from {reference:.2f} to {average:.2f}",
                at,
                [message.event_id],
                excerpt,
            )
        )
    if intent == "cancel":
        candidates.append(
            _alert(
                profile,
                policy,
                "churn_intent",
                sentiment,
                "the customer asked to cancel",
                at,
                [message.event_id],
                excerpt,
            )
        )
    profile, fired = _fire(profile, candidates, policy)
    if any(a.kind == "sentiment_drop" for a in fired):
        profile = msgspec.structs.replace(profile, sentiment_ref=average)
    return profile, fired


def on_feedback(
    profile: Profile, feedback: Feedback, policy: AlertPolicy
) -> tuple[Profile, list[Alert]]:
    """Return the ``low_rating`` alert a feedback event raises, if any.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> rated = Feedback(event_id="f1", customer_id="c1", occurred_at=at, rating=1,
    ...                  text="Broken on arrival")
    >>> profile, [alert] = on_feedback(Profile(customer_id="c1"), rated, AlertPolicy())
    >>> alert.kind, alert.severity, alert.reason
    ('low_rating', 'warning', 'rating 1 of 5')
    >>> on_feedback(profile, rated, AlertPolicy())[1]   # same customer, cooling down
    []
    """
    reasons = []
    if feedback.rating is not None and feedback.rating <= policy.low_rating:
        reasons.append(f"rating {feedback.rating} of 5")
    if feedback.nps is not None and feedback.nps <= policy.low_nps:
        reasons.append(f"NPS {feedback.nps} of 10")
    if not reasons:
        return profile, []
    score = min(
        ((feedback.rating - 3) / 2) if feedback.rating is not None else 1.0,
        ((feedback.nps - 5) / 5) if feedback.nps is not None else 1.0,
    )
    alert = _alert(
        profile,
        policy,
        "low_rating",
        score,
        ", ".join(reasons),
        feedback.occurred_at,
        [feedback.event_id],
        feedback.text,
    )
    return _fire(profile, [alert], policy)


def on_unusual_purchase(
    profile: Profile,
    purchase: Purchase,
    amount: float,
    score: float,
    threshold: float,
    policy: AlertPolicy,
) -> list[Alert]:
    """Return the ``anomaly`` alert of a purchase the anomaly model flagged.

    Every flagged purchase alerts (no cooldown: each one may be fraud or an error), with
    its own deterministic id. ``profile`` is the customer *before* the purchase and
    ``amount`` the purchase's amount in the base currency.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> big = Purchase(event_id="p9", customer_id="c1", occurred_at=at, amount=9000.0)
    >>> regular = Profile(customer_id="c1", orders=4, revenue=200.0, tier="gold")
    >>> [alert] = on_unusual_purchase(regular, big, 9000.0, 0.981, 0.95, AlertPolicy())
    >>> alert.kind, alert.severity, alert.source_event_ids
    ('anomaly', 'critical', ['p9'])
    >>> alert.reason
    'unusual purchase: 9000.00 (180x their mean order of 50.00), score 0.981 >= 0.95'
    >>> on_unusual_purchase(regular, big, 9000.0, 0.90, 0.95, AlertPolicy())
    []
    """
    if score < threshold:
        return []
    if profile.orders:
        mean = profile.revenue / profile.orders
        context = f" ({amount / mean:.0f}x their mean order of {mean:.2f})" if mean > 0 else ""
    else:
        context = " (first purchase)"
    reason = f"unusual purchase: {amount:.2f}{context}, score {score:.3f} >= {threshold:g}"
    alert = _alert(
        profile, policy, "anomaly", score, reason, purchase.occurred_at, [purchase.event_id], None
    )
    return [alert]
