"""Scoring a purchase's horizon with the hazard's shared per-customer work
(``PeriodHazard.predict_elapsed``) gives exactly what one prediction per period gives."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from crmstream.models.propensity import History, PropensityModel, customer_features


def per_period(model: PropensityModel, history: History, now: float, horizon: float) -> float:
    """The horizon's probability with one ``predict_proba_one`` per period (the reference)."""
    start = max(now - history.last, 0.0)
    end = start + horizon
    log_survival, t = 0.0, start
    while t < end:
        period = int(t // model.period_days)
        step = min((period + 1) * model.period_days, end) - t
        x = customer_features(history, period * model.period_days)
        hazard = min(model.hazard.predict_proba_one(x)[True], 1.0 - 1e-9)
        log_survival += step / model.period_days * math.log1p(-hazard)
        t += step
    return 1.0 - math.exp(log_survival)


def trained(seed: int, labels: int, min_examples: int) -> PropensityModel:
    rng = random.Random(seed)
    model = PropensityModel(min_examples=min_examples)
    for _ in range(labels):
        orders = rng.randint(1, 12)
        history = History(orders, rng.uniform(5, 900), 0.0, rng.uniform(0, 400), rng.uniform(-1, 1))
        model.hazard.learn_one(customer_features(history, rng.uniform(0, 360)), rng.random() < 0.3)
    return model


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    labels=st.sampled_from([0, 1, 40, 400]),
    min_examples=st.sampled_from([1, 50, 2000]),
    orders=st.integers(1, 40),
    revenue=st.floats(0.0, 1e5),
    tenure=st.floats(0.0, 3000.0),
    silence=st.floats(0.0, 800.0),
    sentiment=st.floats(-1.0, 1.0),
    horizon=st.sampled_from([None, 1.0, 45.0, 90.0, 365.0]),
)
def test_horizon_scores_are_those_of_one_prediction_per_period(
    seed, labels, min_examples, orders, revenue, tenure, silence, sentiment, horizon
):
    model = trained(seed, labels, min_examples)
    history = History(orders, revenue, 1000.0, 1000.0 + tenure, sentiment)
    now = history.last + silence
    expected = per_period(model, history, now, model.horizon_days if horizon is None else horizon)
    assert model.predict_history(history, now, horizon) == expected


def test_a_checkpoint_with_another_regression_still_scores():
    """A hazard whose regression is not the averaged one (an older checkpoint's) scores one
    prediction per period."""
    from river import linear_model

    model = trained(3, 300, 1)
    model.hazard.regression = linear_model.LogisticRegression()
    history = History(4, 200.0, 0.0, 90.0, 0.0)
    model.hazard.regression.learn_one({"orders": 1.0}, True)
    assert model.predict_history(history, 120.0) == per_period(model, history, 120.0, 90.0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    labels=st.integers(1, 300),
    min_examples=st.sampled_from([1, 20, 2000]),
    positive=st.floats(0.0, 1.0),
)
def test_a_label_predicted_and_learned_at_once_is_as_predicted_then_learned(
    seed, labels, min_examples, positive
):
    """``PeriodHazard.predict_learn`` (one transform) gives the prediction and the weights of
    ``predict_proba_one`` then ``learn_one``, bit for bit, as the periods known change."""
    rng = random.Random(seed)
    reference = PropensityModel(min_examples=min_examples).hazard
    shared = PropensityModel(min_examples=min_examples).hazard
    for _ in range(labels):
        history = History(
            rng.randint(1, 12), rng.uniform(5, 900), 0.0, rng.uniform(0, 400), rng.uniform(-1, 1)
        )
        x = customer_features(history, rng.choice([0.0, 15.0, 30.0, 95.0, 400.0]))
        y = rng.random() < positive
        expected = reference.predict_proba_one(x)[True]
        reference.learn_one(x, y)
        assert shared.predict_learn(x, y) == expected
    assert shared.regression.weights == reference.regression.weights
    assert shared.regression._average == reference.regression._average
    assert shared.examples == reference.examples
    assert shared._known_period == reference._known_period
