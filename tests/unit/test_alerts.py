"""The alert policy: streaks, drops, cooldowns and severity, on scripted conversations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmstream.models.alerts import AlertPolicy, on_feedback, on_message
from crmstream.models.profile import Profile
from crmstream.schemas import ChatMessage, Feedback

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def message(n: int, minutes: float = 0, sender: str = "customer", text: str = "hm") -> ChatMessage:
    return ChatMessage(
        event_id=f"m{n}",
        customer_id="c1",
        occurred_at=T0 + timedelta(minutes=minutes),
        conversation_id="k1",
        sender=sender,
        text=text,
    )


def converse(scores, policy=None, profile=None, intents=None, step=1.0):
    """Feed messages with the given scores; return the profile and alerts per message."""
    policy = policy or AlertPolicy()
    profile = profile or Profile(customer_id="c1")
    fired = []
    for n, score in enumerate(scores):
        intent = intents[n] if intents else "other"
        profile, alerts = on_message(profile, message(n, n * step), score, intent, policy)
        fired.append(sorted(a.kind for a in alerts))
    return profile, fired


def test_streak_fires_on_the_third_negative_message_and_names_them():
    profile, fired = converse([-0.4, -0.35, -0.5])
    assert fired == [[], [], ["negative_streak"]]
    assert profile.negative_streak == 3
    _, alerts = on_message(
        Profile(customer_id="c1"), message(9), -0.4, "other", AlertPolicy(streak=2)
    )
    assert alerts == []


def test_a_non_negative_message_breaks_the_streak():
    profile, fired = converse([-0.4, -0.4, 0.1, -0.4, -0.4])
    assert all("negative_streak" not in kinds for kinds in fired)
    assert profile.negative_streak == 2
    assert profile.streak_event_ids == ["m3", "m4"]


def test_streak_alert_sources_are_the_messages_of_the_streak():
    policy = AlertPolicy(streak=3, cooldown=timedelta(0))
    profile = Profile(customer_id="c1")
    sources = []
    for n, score in enumerate([-0.4, -0.4, -0.4, -0.4]):
        profile, alerts = on_message(profile, message(n, n), score, "other", policy)
        sources += [a.source_event_ids for a in alerts if a.kind == "negative_streak"]
    assert sources == [["m0", "m1", "m2"], ["m1", "m2", "m3"]]


def test_cooldown_gives_one_alert_per_kind_per_angry_conversation():
    policy = AlertPolicy(cooldown=timedelta(minutes=30))
    _, fired = converse([-0.9] * 10, policy=policy, step=1)
    strongly = [kinds for kinds in fired if "strongly_negative" in kinds]
    streaks = [kinds for kinds in fired if "negative_streak" in kinds]
    assert len(strongly) == 1 and len(streaks) == 1


def test_after_the_cooldown_the_same_kind_fires_again():
    policy = AlertPolicy(cooldown=timedelta(minutes=30))
    _, fired = converse([-0.9, -0.9, -0.9], policy=policy, step=31)
    assert [("strongly_negative" in kinds) for kinds in fired] == [True, True, True]


def test_cooldown_is_per_kind():
    policy = AlertPolicy(cooldown=timedelta(hours=1))
    _, fired = converse([-0.9, -0.1], policy=policy, intents=["other", "cancel"])
    assert fired == [["strongly_negative"], ["churn_intent"]]


def test_sentiment_drop_fires_once_then_measures_from_the_new_level():
    policy = AlertPolicy(drop=0.5, smoothing=0.5, negative=-0.95, strongly_negative=-0.99)
    profile, fired = converse([0.8, 0.8, -0.2, -0.2, -0.2], policy=policy)
    drops = [n for n, kinds in enumerate(fired) if "sentiment_drop" in kinds]
    assert drops == [3]
    # averages 0.8, 0.8, 0.3, 0.05 (drop 0.75 from 0.8: alert, new level), -0.075
    assert profile.sentiment_avg == pytest.approx(-0.075)
    assert profile.sentiment_ref == pytest.approx(0.05)


def test_moving_average_follows_the_smoothing_weight():
    profile, _ = converse([1.0, 0.0], policy=AlertPolicy(smoothing=0.25))
    assert profile.sentiment_avg == pytest.approx(0.75)
    assert profile.last_sentiment == 0.0


def test_agent_and_bot_messages_do_not_count():
    policy = AlertPolicy()
    profile = Profile(customer_id="c1")
    for n, sender in enumerate(["agent", "bot"]):
        profile, alerts = on_message(profile, message(n, sender=sender), -1.0, "cancel", policy)
        assert alerts == []
    assert profile == Profile(customer_id="c1")


@pytest.mark.parametrize(
    ("tier", "kind", "severity"),
    [
        ("bronze", "strongly_negative", "warning"),
        ("silver", "strongly_negative", "warning"),
        ("gold", "strongly_negative", "critical"),
        ("platinum", "low_rating", "critical"),
        ("bronze", "churn_intent", "warning"),
        ("silver", "churn_intent", "critical"),
    ],
)
def test_severity_rises_for_high_value_customers(tier, kind, severity):
    assert AlertPolicy().severity(kind, tier) == severity


def test_alert_of_a_gold_customer_is_critical_and_ids_are_deterministic():
    gold = Profile(customer_id="c1", tier="gold")
    _, first = on_message(gold, message(1, text="awful"), -0.9, "other", AlertPolicy())
    _, again = on_message(gold, message(1, text="awful"), -0.9, "other", AlertPolicy())
    assert [a.severity for a in first] == ["critical"]
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert first[0].excerpt == "awful"
    _, other = on_message(gold, message(2, text="awful"), -0.9, "other", AlertPolicy())
    assert other[0].alert_id != first[0].alert_id


def test_excerpt_is_capped():
    long = message(1, text="x" * 1000)
    _, [alert] = on_message(Profile(customer_id="c1"), long, -0.9, "other", AlertPolicy())
    assert len(alert.excerpt) == 280


def feedback(rating=None, nps=None, minutes=0.0, n=1) -> Feedback:
    return Feedback(
        event_id=f"f{n}",
        customer_id="c1",
        occurred_at=T0 + timedelta(minutes=minutes),
        rating=rating,
        nps=nps,
    )


@pytest.mark.parametrize(
    ("rating", "nps", "fires"),
    [
        (1, None, True),
        (2, None, True),
        (3, None, False),
        (None, 4, True),
        (None, 5, False),
        (5, 0, True),
        (4, 9, False),
    ],
)
def test_low_rating_thresholds(rating, nps, fires):
    _, alerts = on_feedback(Profile(customer_id="c1"), feedback(rating, nps), AlertPolicy())
    assert [a.kind for a in alerts] == (["low_rating"] if fires else [])


def test_low_rating_cooldown_and_score():
    policy = AlertPolicy(cooldown=timedelta(hours=1))
    profile, [alert] = on_feedback(Profile(customer_id="c1"), feedback(1), policy)
    assert alert.score == -1.0
    profile, alerts = on_feedback(profile, feedback(2, minutes=30, n=2), policy)
    assert alerts == []
    _, alerts = on_feedback(profile, feedback(2, minutes=61, n=3), policy)
    assert [a.score for a in alerts] == [-0.5]


@pytest.mark.parametrize(
    "kwargs",
    [{"strongly_negative": -0.2, "negative": -0.3}, {"streak": 1}, {"smoothing": 0}, {"drop": 0}],
)
def test_inconsistent_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        AlertPolicy(**kwargs)
