"""The sentiment classifier's regression over hashed features in flat arrays
(``models/hashed_regression.py``) learns what River's logistic regression with AdaGrad
learns, in a state that does not grow."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river import linear_model, optim

from crmstream.models.hashed_regression import HashedLogisticRegression


def stream(seed: int, n: int, buckets: int) -> list[tuple[dict, bool]]:
    """Sparse hashed texts with VADER-like named scores; the label leans on some buckets."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x: dict = {rng.randrange(buckets): math.log1p(rng.randint(1, 3)) for _ in range(25)}
        vader = rng.uniform(-1, 1)
        x.update(vader=vader, vader_pos=max(vader, 0.0), vader_neg=max(-vader, 0.0))
        leaning = sum(1 for k in x if isinstance(k, int) and k % 7 == 0) - 1.5 + 2 * vader
        out.append((x, rng.random() < 1 / (1 + math.exp(-leaning))))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_it_learns_what_rivers_logistic_regression_with_adagrad_learns(seed):
    buckets = 2**12
    ours = HashedLogisticRegression(n_features=buckets, lr=0.1)
    river = linear_model.LogisticRegression(optimizer=optim.AdaGrad(lr=0.1))
    examples = stream(seed, 3000, buckets)
    for x, y in examples:
        ours.learn_one(x, y)
        river.learn_one(x, y)
    assert ours.intercept == pytest.approx(river.intercept, abs=1e-9)
    assert river.intercept != 0.0
    weights = river.weights
    assert len(weights) > 1000
    for key, weight in weights.items():
        mine = ours.named[key] if isinstance(key, str) else ours.weights[key]
        assert mine == pytest.approx(weight, abs=1e-9)
    for x, _ in stream(seed + 10, 300, buckets):
        assert ours.predict_proba_one(x)[True] == pytest.approx(
            river.predict_proba_one(x)[True], abs=1e-9
        )


def test_its_state_does_not_grow_with_what_it_learns():
    model = HashedLogisticRegression(n_features=2**10)
    sizes = []
    for n, (x, y) in enumerate(stream(3, 4000, 2**10), 1):
        model.learn_one(x, y)
        if n in (2000, 4000):
            sizes.append(len(pickle.dumps(model)))
        assert len(model.weights) == len(model.g2) == 2**10
    # every bucket in use from early on: the same but for the count of updates
    assert abs(sizes[0] - sizes[1]) <= 8
    assert sizes[1] < 2 * 8 * 2**10 + 2000


@pytest.mark.parametrize("learned", [0, 3, 200])  # none, a few buckets (sparse), most
def test_a_restored_copy_predicts_and_learns_as_the_original(learned):
    model = HashedLogisticRegression(n_features=2**8)
    examples = stream(4, 400, 2**8)
    for x, y in examples[:learned]:
        model.learn_one(x, y)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.weights == model.weights and copy.g2 == model.g2
    for x, y in examples[learned:]:
        model.learn_one(x, y)
        copy.learn_one(x, y)
    assert copy.weights == model.weights and copy.g2 == model.g2 and copy.named == model.named
    assert copy.intercept == model.intercept


def test_a_young_models_pickle_holds_only_the_buckets_in_use():
    model = HashedLogisticRegression(n_features=2**16)
    assert len(pickle.dumps(model)) < 2_000
    for x, y in stream(5, 20, 2**16):
        model.learn_one(x, y)
    used = sum(1 for w in model.weights if w)
    assert 0 < used <= 20 * 25
    assert len(pickle.dumps(model)) < 2_000 + 20 * used


def test_a_feature_outside_the_buckets_gets_a_named_weight():
    model = HashedLogisticRegression(n_features=4)
    model.learn_one({2: 1.0, 9: 1.0, -1: 1.0, "vader": 0.5}, True)
    assert sorted(model.named, key=str) == [-1, 9, "vader"]
    assert model.weights[2] != 0.0
    with pytest.raises(ValueError, match="n_features"):
        HashedLogisticRegression(n_features=0)
