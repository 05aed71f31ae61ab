"""The purchase models: delayed labels on synthetic timelines, and checkpoint round trips."""

from __future__ import annotations

import itertools
import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from crmstream.models.anomaly import purchase_features
from crmstream.models.customer_state import CustomerModelState, Retention, trim
from crmstream.models.offline import OfflinePartition
from crmstream.models.propensity import (
    History,
    PeriodHazard,
    PropensityModel,
    PurchasePropensity,
    Snapshot,
    customer_features,
    to_days,
)
from crmstream.models.segments import rfm_features
from crmstream.schemas import Purchase
from crmstream.streams.settings import Settings

START = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return START + timedelta(days=n)


class Recording(PurchasePropensity):
    """Records every label the hazard learns as (customer features' t, label)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.taught: list[tuple[float, float, bool]] = []

    def _learn(self, x, y):
        self.taught.append((x["orders"], x["t"], y))
        super()._learn(x, y)


def test_a_purchase_labels_its_period_positive_when_the_period_closes():
    model = Recording(horizon_days=90, period_days=30)
    model.learn_purchase("c1", day(0), 10.0)
    model.learn_purchase("c1", day(45), 10.0)
    # Period 0 (days 0-30) closed empty at day 30: a negative, learned by day 45.
    assert model.taught == [(1.0, 0.0, False)]
    # The purchase falls in period 1 (days 30-60): positive, learned when it closes.
    model.advance(to_days(day(59.9)))
    assert len(model.taught) == 1
    model.advance(to_days(day(60)))
    assert model.taught == [(1.0, 0.0, False), (1.0, 30.0, True)]
    # The snapshot of day 0 resolved positive when the purchase of day 45 arrived (within
    # its 90-day horizon), and is not resolved again when the horizon passes.
    assert model.outcomes == {True: 1}
    model.advance(to_days(day(90)))
    assert model.outcomes == {True: 1}


def test_a_customer_who_never_returns_teaches_one_negative_per_period_then_stops():
    model = Recording(horizon_days=90, period_days=30, max_periods=4)
    model.learn_purchase("gone", day(0), 10.0)
    model.learn_purchase("other", day(400), 10.0)  # moves the event-time clock on
    gone = [(t, y) for orders, t, y in model.taught]
    assert gone == [(0.0, False), (30.0, False), (60.0, False), (90.0, False)]
    assert model.outcomes == {False: 1}  # its horizon passed without a purchase
    assert [s.orders for s in model.snapshots["gone"]] == [1]


def test_the_clock_is_event_time_and_never_goes_back():
    model = Recording(horizon_days=90, period_days=30)
    model.learn_purchase("c1", day(0), 10.0)
    model.learn_purchase("c2", day(100), 10.0)
    taught = len(model.taught)
    model.learn_purchase("c3", day(10), 10.0)  # late event: nothing is unlearned
    assert model.clock == to_days(day(100)) and len(model.taught) >= taught


def test_a_late_purchase_does_not_relabel_a_period_already_learned_negative():
    model = Recording(horizon_days=90, period_days=30)
    model.learn_purchase("c1", day(0), 10.0)
    model.learn_purchase("c2", day(40), 10.0)  # period 0 of c1 closes empty
    model.learn_purchase("c1", day(20), 10.0)  # arrives late, in that period
    model.advance(to_days(day(200)))
    assert (1.0, 0.0, True) not in model.taught
    assert model.taught.count((1.0, 0.0, False)) == 1 + 1  # c1, and later c2


def test_labels_due_together_are_not_grouped_by_label():
    model = Recording(horizon_days=30, period_days=10)
    for n in range(200):
        model.learn_purchase(f"c{n}", day(0), 10.0)
        if n % 2:
            model.learn_purchase(f"c{n}", day(5), 10.0)
    model.advance(to_days(day(10)))
    labels = [y for _, t, y in model.taught if t == 0.0]
    assert sorted(labels) != labels and sorted(labels, reverse=True) != labels


def test_the_score_follows_the_asked_horizon():
    history_stream = [(f"c{n % 50}", day(n * 0.7), 20.0) for n in range(2000)]
    short, long = PurchasePropensity(horizon_days=30), PurchasePropensity(horizon_days=365)
    for model in (short, long):
        for customer, at, amount in history_stream:
            model.learn_purchase(customer, at, amount)
    now = day(1500)
    assert short.predict_customer("c1", now) < long.predict_customer("c1", now)


def test_the_hazard_carries_a_falling_curve_on_beyond_the_periods_it_has_learned():
    # A young stream has closed only its first four periods: the hazard falls over them,
    # and a horizon of a year asks about periods it has never seen.
    rng = random.Random(1)

    def truth(t: float) -> float:
        return 1 / (1 + math.exp(-(0.5 - 1.2 * math.log1p(t / 30))))

    hazard = PeriodHazard(period_days=30, min_examples=500)
    x = {"orders": 2.0, "mean_value": 20.0, "tenure": 30.0, "mean_gap": 30.0, "sentiment": 0.0}
    for _ in range(20_000):
        t = 30.0 * rng.randrange(4)
        hazard.learn_one(dict(x, t=t), rng.random() < truth(t))

    predicted = [hazard.predict_proba_one(dict(x, t=30.0 * k))[True] for k in range(10)]
    assert all(a > b for a, b in itertools.pairwise(predicted))
    # Not the last learned period's hazard held flat: by period 9 it has kept falling.
    assert predicted[9] < 0.7 * predicted[3]
    assert predicted[9] == pytest.approx(truth(270.0), abs=0.03)


class WithoutLapsed(PeriodHazard):
    """The hazard without BG/NBD's lapsed statistic (the model before it had one)."""

    def _transform(self, x, period):
        features = super()._transform(x, period)
        del features["lapsed"]
        return features


def test_the_hazard_learns_that_a_silence_weighs_more_on_a_customer_who_bought_often():
    # As in BG/NBD, the log-odds of buying fall with repeat purchases times the log of age
    # over tenure: a silence says more about a frequent buyer than about an occasional one.
    def truth(orders: int, tenure: float, t: float) -> float:
        lapsed = (orders - 1) * math.log((1 + tenure + t) / (1 + tenure))
        return 1 / (1 + math.exp(1.0 - 0.3 * math.log(orders) + 0.5 * lapsed))

    def draw(rng: random.Random) -> tuple[dict[str, float], float]:
        orders = rng.choice([1, 2, 3, 5, 8, 12, 20])
        tenure = 0.0 if orders == 1 else rng.choice([60.0, 120.0, 240.0])
        t = 30.0 * rng.randrange(8)
        x = {"orders": float(orders), "mean_value": 20.0, "tenure": tenure, "t": t,
             "mean_gap": tenure / max(orders - 1, 1), "sentiment": 0.0}  # fmt: skip
        return x, truth(orders, tenure, t)

    def excess_log_loss(hazard: PeriodHazard) -> float:
        rng = random.Random(1)
        for _ in range(30_000):
            x, p = draw(rng)
            hazard.learn_one(x, rng.random() < p)
        rng, excess = random.Random(2), 0.0
        for _ in range(5_000):
            x, p = draw(rng)
            q = hazard.predict_proba_one(x)[True]
            excess += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
        return excess / 5_000

    # Expected log loss above the truth's: 0.0035 with the statistic, 0.0072 without.
    assert excess_log_loss(PeriodHazard(period_days=30, min_examples=500)) < 0.0045
    assert excess_log_loss(WithoutLapsed(period_days=30, min_examples=500)) > 0.006


def test_invalid_horizon_is_refused():
    with pytest.raises(ValueError, match="positive"):
        PurchasePropensity(horizon_days=0)


def purchases(n: int, seed: int = 3) -> list[Purchase]:
    rng = random.Random(seed)
    return [
        Purchase(
            event_id=f"e{i}",
            customer_id=f"c{rng.randrange(80)}",
            occurred_at=day(i * 0.25),
            amount=round(rng.lognormvariate(3.3, 0.7), 2),
        )
        for i in range(n)
    ]


def test_a_restored_checkpoint_predicts_and_learns_exactly_as_the_original():
    stream = purchases(3000)
    settings = Settings()
    original = OfflinePartition(settings.purchase_models(), settings.policies())
    for purchase in stream[:2000]:
        original.apply(purchase)
    restored = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))

    def predictions(partition: OfflinePartition) -> list[float]:
        models = partition.models
        out = []
        for customer in sorted(partition.profiles):
            snapshot = partition.profiles[customer].model_state.latest()
            out.append(models.propensity.predict_history(snapshot.history, to_days(day(800))))
        for gap in (0.0, 3.0, 60.0):
            out.append(models.segments.predict_one(rfm_features(gap, 4, 150.0)))
            out.append(models.anomaly.score_one(purchase_features(900.0, 9, 4, 150.0, gap)))
        return out

    assert predictions(restored) == predictions(original)
    for purchase in stream[2000:]:
        original.apply(purchase)
        restored.apply(purchase)
    assert predictions(restored) == predictions(original)
    assert restored.models.propensity.quality() == original.models.propensity.quality()
    assert restored.models.segments.sizes == original.models.segments.sizes


def test_customer_features_of_a_one_time_buyer():
    x = customer_features(History(1, 25.0, 10.0, 10.0), 7.0)
    assert (x["orders"], x["mean_gap"], x["tenure"], x["t"]) == (1.0, 0.0, 0.0, 7.0)


def test_a_frequent_buyer_keeps_only_the_snapshots_still_waiting_for_labels():
    """A customer who buys every day keeps about one period's worth of snapshots, not a
    year's: a snapshot is forgotten once the period of the next purchase has closed."""
    settings = Settings()
    partition = OfflinePartition(settings.purchase_models(), settings.policies())
    for n in range(200):
        partition.apply(
            Purchase(event_id=f"e{n}", customer_id="daily", occurred_at=day(n), amount=5.0)
        )
    state = partition.profiles["daily"].model_state
    retention = Retention({}, partition.models.propensity.clock)
    kept = trim(state, retention, partition.models.propensity.last_due)
    assert 28 <= len(kept.snapshots) <= 32
    assert kept.snapshots[-1] == state.snapshots[-1]


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 400.0), min_size=1, max_size=80),
    clock=st.floats(0.0, 20_000.0),
    horizon=st.sampled_from([30.0, 90.0, 273.0, 360.0]),
    period=st.sampled_from([7.0, 30.0]),
)
def test_trimming_in_order_forgets_what_a_full_scan_forgets(gaps, clock, horizon, period):
    """``trim(..., in_order=True)`` stops at the first snapshot it keeps: the same as
    checking every snapshot whenever the propensity model says labels fall due in order."""
    model = PropensityModel(horizon_days=horizon, period_days=period)
    assume(model.forgets_in_order)
    days = list(itertools.accumulate(gaps, initial=1000.0))[1:]
    state = CustomerModelState(
        snapshots=[Snapshot(n, day, n + 1, 5.0, days[0], 0.0, 0.5) for n, day in enumerate(days)]
    )
    retention = Retention({}, clock)
    full = trim(state, retention, model.last_due)
    assert trim(state, retention, model.last_due, in_order=True) == full
