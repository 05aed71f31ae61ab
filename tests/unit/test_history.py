"""The bounded customer history kept by the pure fold (models/events.py, models/history.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmstream.models.alerts import AlertPolicy
from crmstream.models.conversations import MessageScores
from crmstream.models.events import Policies, apply_event
from crmstream.models.history import HistoryLimits
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.tiers import TierPolicy
from crmstream.schemas.inputs import ChatMessage, Feedback, Purchase

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def policies(**limits) -> Policies:
    return Policies(
        TierPolicy(), AlertPolicy(), Currencies("USD", {}), history=HistoryLimits(**limits)
    )


def said(n: int, at: datetime, sender: str = "customer") -> ChatMessage:
    return ChatMessage(
        event_id=f"m{n}",
        customer_id="c1",
        occurred_at=at,
        conversation_id="k",
        sender=sender,
        text=f"message number {n} " + "x" * 300,
    )


def test_messages_are_kept_newest_last_trimmed_by_count_with_short_excerpts():
    rules, models = policies(messages=3, excerpt=20), PurchaseModels.create()
    profile = Profile(customer_id="c1")
    for n in range(5):
        scores = MessageScores(sentiment=0.1 * n, intent="other")
        profile, _ = apply_event(
            profile, said(n, T0 + timedelta(minutes=n)), n, rules, models, scores
        )
    profile, _ = apply_event(profile, said(9, T0, sender="agent"), 9, rules, models)
    assert [m.event_id for m in profile.history.messages] == ["m2", "m3", "m4"]
    assert [m.sentiment for m in profile.history.messages] == [0.2, 0.3, 0.4]
    assert profile.history.messages[0].excerpt == "message number 2 xxx"


def test_alerts_and_tier_changes_are_kept_and_old_entries_age_out():
    rules, models = policies(max_age=timedelta(days=10)), PurchaseModels.create()
    profile = Profile(customer_id="c1")
    buy = Purchase(event_id="p1", customer_id="c1", occurred_at=T0, amount=700.0, cost=100.0)
    profile, changes = apply_event(profile, buy, 0, rules, models)
    assert [(t.from_tier, t.to_tier) for t in profile.history.tiers] == [("bronze", "gold")]
    assert profile.history.tiers[0].clv == changes[0].clv == 600.0
    angry = MessageScores(sentiment=-0.9, intent="cancel")
    profile, alerts = apply_event(profile, said(1, T0 + timedelta(days=1)), 1, rules, models, angry)
    assert sorted(a.alert_id for a in profile.history.alerts) == sorted(a.alert_id for a in alerts)
    assert {a.severity for a in profile.history.alerts} == {"critical"}
    stars = Feedback(event_id="f1", customer_id="c1", occurred_at=T0 + timedelta(days=20), rating=1)
    profile, low = apply_event(profile, stars, 2, rules, models)
    # 20 days on: the purchase's tier change and the message's alerts are too old.
    assert profile.history.tiers == [] and profile.history.messages == []
    assert [a.kind for a in profile.history.alerts] == [a.kind for a in low] == ["low_rating"]


def test_nothing_is_kept_when_the_limits_are_zero():
    rules, models = policies(messages=0, alerts=0, tiers=0), PurchaseModels.create()
    profile = Profile(customer_id="c1")
    buy = Purchase(event_id="p1", customer_id="c1", occurred_at=T0, amount=700.0)
    profile, _ = apply_event(profile, buy, 0, rules, models)
    angry = MessageScores(sentiment=-0.9, intent="cancel")
    profile, alerts = apply_event(profile, said(1, T0), 1, rules, models, angry)
    assert alerts and profile.history == type(profile.history)()
