"""The propensity model's event-time watermark: late history cannot make everything overdue.

A partition that has seen a few live events and then receives years-old history must not
learn every period of every old snapshot as negative at once (what a clock equal to the
newest ``occurred_at`` did). Both orders are checked: history then live, live then
history, and a purchase within and beyond the allowed lateness.
"""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from crmstream.models.propensity import PurchasePropensity, to_days

HISTORY_START = datetime(1997, 1, 1, tzinfo=UTC)
LIVE = datetime(2026, 11, 20, tzinfo=UTC)


def history(customers: int = 120, days: int = 540, seed: int = 7):
    """Purchases of customers with their own rhythm (some buy once), in time order."""
    rng = random.Random(seed)
    events = []
    for n in range(customers):
        gap = rng.choice([15, 30, 60, 120, 1000])
        day = rng.uniform(0, 90)
        while day < days:
            events.append((HISTORY_START + timedelta(days=day), f"h{n}", rng.uniform(10, 60)))
            day += gap * rng.uniform(0.7, 1.3)
    events.sort()
    return events


def live(customers: int = 5):
    return [(LIVE + timedelta(hours=n), f"live{n}", 25.0) for n in range(customers)]


def model() -> PurchasePropensity:
    return PurchasePropensity(horizon_days=90, min_examples=50, lateness_days=1.0)


def feed(target: PurchasePropensity, events) -> None:
    for at, customer, amount in events:
        target.learn_purchase(customer, at, amount)


def median_score(target: PurchasePropensity, now: datetime) -> float:
    customers = [c for c in target.snapshots if c.startswith("h")]
    return statistics.median(target.predict_customer(c, now) for c in customers)


def test_history_then_live_learns_the_history_and_keeps_the_live_events_on_time():
    alone, both = model(), model()
    feed(alone, history())
    feed(both, history())
    learned = dict(both.labels)
    feed(both, live())
    assert learned == dict(alone.labels)
    assert learned[True] > 100 and learned[False] > 100
    # The live events are on time: the watermark follows them (less the lateness).
    assert both.clock == pytest.approx(to_days(LIVE + timedelta(hours=4)) - 1.0)


def test_live_then_history_teaches_nothing_overdue():
    end = HISTORY_START + timedelta(days=540)
    clean = model()
    feed(clean, history())
    late = model()
    feed(late, live())
    feed(late, history())
    # Every period of the history closed before the live watermark: none is learned from
    # it (a clock at the newest occurred_at learned thousands of negatives here).
    assert late.labels[False] == 0 and late.labels[True] == 0
    assert late.clock == pytest.approx(to_days(LIVE + timedelta(hours=4)) - 1.0)
    # The profiles' part: every history purchase still made its snapshot.
    assert sum(s.orders for s in (k[-1] for k in late.snapshots.values())) == len(history()) + 5
    # Scores are not dragged to zero: the untrained hazard, not one trained on "overdue".
    assert median_score(late, end) > 0.3
    assert median_score(clean, end) > 0.3


def test_a_purchase_within_the_allowed_lateness_still_closes_its_period_as_bought():
    for lateness, expected in ((1.0, {True: 1, False: 0}), (0.0, {True: 0, False: 1})):
        target = PurchasePropensity(horizon_days=90, period_days=30, lateness_days=lateness)
        day0 = datetime(2026, 1, 1, tzinfo=UTC)
        target.learn_purchase("a", day0, 10.0)
        target.learn_purchase("b", day0 + timedelta(days=30, hours=12), 10.0)
        # a's second purchase, 29.9 days after its first, arrives after b's, half a day late.
        target.learn_purchase("a", day0 + timedelta(days=29, hours=22), 10.0)
        target.advance(to_days(day0 + timedelta(days=31)))
        assert dict(target.labels) == {k: v for k, v in expected.items() if v}, lateness


def test_a_late_snapshot_learns_only_the_periods_still_open():
    target = PurchasePropensity(horizon_days=90, period_days=30, max_periods=3)
    day0 = datetime(2026, 1, 1, tzinfo=UTC)
    target.learn_purchase("now", day0 + timedelta(days=40), 10.0)
    target.learn_purchase("late", day0, 10.0)  # 40 days late: its first period closed at 30
    assert not target.labels
    target.advance(to_days(day0 + timedelta(days=95)))
    # "late" periods 1 and 2 (ending at days 60 and 90), and "now" period 0 (day 70).
    assert target.labels[False] == 3


def test_lateness_cannot_be_negative():
    with pytest.raises(ValueError, match="lateness_days"):
        PurchasePropensity(lateness_days=-1.0)
