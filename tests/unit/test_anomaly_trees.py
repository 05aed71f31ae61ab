"""FlatHalfSpaceTrees gives exactly River's Half-Space Trees scores (River is the reference),
on shuffled, sorted and long-run streams, with missing features, and from River's own
trees restored out of an older checkpoint."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from river import anomaly

from crmstream.models.anomaly import FlatHalfSpaceTrees, PurchaseAnomaly, purchase_features

NAMES = ("amount", "units", "vs_mean", "gap")


def stream(seed: int, n: int, order: str, missing: float) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = {
            "amount": min(max(rng.gauss(0.4, 0.05), 0.0), 1.0),
            "units": 0.1 if rng.random() < 0.7 else rng.random(),
            "vs_mean": min(max(rng.gauss(0.5, 0.03), 0.0), 1.0),
            "gap": rng.random() ** 3,
        }
        if rng.random() < missing:
            del x[rng.choice(NAMES[1:])]
        rows.append(x)
    if order == "sorted":
        rows.sort(key=lambda x: x["amount"])
    elif order == "runs":  # long runs of small, then of large purchases
        rows.sort(key=lambda x: (x["amount"] > 0.4, rng.random()))
    return rows


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    n_trees=st.integers(1, 6),
    height=st.integers(1, 8),
    window_size=st.integers(3, 60),
    order=st.sampled_from(["shuffled", "sorted", "runs"]),
    missing=st.sampled_from([0.0, 0.2]),
)
def test_scores_are_rivers(seed, n_trees, height, window_size, order, missing):
    ours = FlatHalfSpaceTrees(n_trees, height, window_size, seed=seed)
    rivers = anomaly.HalfSpaceTrees(n_trees, height, window_size, seed=seed)
    for x in stream(seed, 4 * window_size + 7, order, missing):
        assert ours.score_one(x) == rivers.score_one(x)
        ours.learn_one(x)
        rivers.learn_one(x)
    probes = [{name: k / 10 for name in NAMES} for k in range(11)]
    assert [ours.score_one(p) for p in probes] == [rivers.score_one(p) for p in probes]


def test_a_checkpoint_with_rivers_trees_is_restored_flat_with_the_same_scores():
    rng = random.Random(5)
    purchases = [
        purchase_features(
            rng.lognormvariate(3.5, 0.6), rng.randint(1, 4), 3, 120.0, rng.expovariate(0.05)
        )
        for _ in range(1500)
    ]
    old = PurchaseAnomaly(window_size=100)
    old.trees = anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=100, seed=42)
    for x in purchases[:700]:
        old.record(old.score_one(x))
        old.learn_one(x)
    restored = pickle.loads(pickle.dumps(old))
    assert isinstance(restored.trees, FlatHalfSpaceTrees)
    assert (restored.seen, restored.flagged) == (old.seen, old.flagged)
    for x in purchases[700:]:
        assert restored.score_one(x) == old.score_one(x)
        restored.learn_one(x)
        old.learn_one(x)


def test_a_model_before_its_first_purchase_scores_zero_and_pickles():
    trees = FlatHalfSpaceTrees(seed=1)
    assert trees.score_one({"amount": 0.5}) == 0.0
    again = pickle.loads(pickle.dumps(trees))
    x = {name: 0.3 for name in NAMES}
    again.learn_one(x)
    trees.learn_one(x)
    assert again.flat == trees.flat and len(trees.flat) == 10
