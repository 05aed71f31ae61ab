"""Unusual purchases: Half-Space Trees on a purchase's amount, size and timing.

Each purchase is scored before the model learns from it. The features are the amount, the
number of units, the amount against the customer's own mean order value and the days since
their previous purchase, each mapped onto [0, 1] with a fixed log scale (Half-Space Trees
split the unit cube; fixed scales keep a score's meaning stable as the stream ages). A
score at or above ``threshold`` (in [0, 1], higher is stranger), once the model has seen
``warmup`` purchases, is an anomaly: the purchases agent publishes an ``anomaly`` alert.
"""

from __future__ import annotations

import math
from typing import Any

from river import anomaly, base, stats, utils

#: Upper ends of the log scales (larger values map to 1).
MAX_AMOUNT = 1e5
MAX_UNITS = 1e3
MAX_DAYS = 3650.0
#: Range of the log ratio of the amount to the customer's mean order value.
MAX_LOG_RATIO = 5.0


def purchase_features(
    amount: float, units: int, prior_orders: int, prior_revenue: float, gap_days: float
) -> dict[str, float]:
    """A purchase's features in [0, 1]; ``prior_*`` describe the customer before it.

    Examples
    --------
    >>> purchase_features(100.0, 1, 0, 0.0, 0.0)
    {'amount': 0.4009, 'units': 0.1003, 'vs_mean': 0.5, 'gap': 0.0}
    >>> purchase_features(1000.0, 1, 4, 200.0, 3.0)["vs_mean"]  # 20 times their mean order
    0.7977
    """
    if prior_orders > 0:
        ratio = math.log((amount + 1.0) / (prior_revenue / prior_orders + 1.0))
    else:
        ratio = 0.0
    return {
        "amount": _unit(math.log1p(max(amount, 0.0)) / math.log1p(MAX_AMOUNT)),
        "units": _unit(math.log1p(max(units, 0)) / math.log1p(MAX_UNITS)),
        "vs_mean": _unit((ratio + MAX_LOG_RATIO) / (2 * MAX_LOG_RATIO)),
        "gap": _unit(math.log1p(max(gap_days, 0.0)) / math.log1p(MAX_DAYS)),
    }


def _unit(value: float) -> float:
    return round(min(max(value, 0.0), 1.0), 4)


#: One tree of :class:`FlatHalfSpaceTrees` in heap order (the children of node ``i`` are
#: ``2i + 1`` and ``2i + 2``): split features, thresholds, latest-window masses and
#: reference-window masses.
FlatTree = tuple[list[Any], list[float], list[int], list[int]]


def _flatten(root: Any, height: int) -> FlatTree:
    """One of River's padded trees as :data:`FlatTree` lists, masses included."""
    size = 2 ** (height + 1) - 1
    features: list[Any] = [None] * size
    thresholds = [0.0] * size
    latest = [0] * size
    reference = [0] * size
    stack = [(root, 0, 0)]
    while stack:
        node, index, depth = stack.pop()
        latest[index], reference[index] = node.l_mass, node.r_mass
        if depth < height:
            features[index], thresholds[index] = node.feature, node.threshold
            left, right = node.children
            stack.append((left, 2 * index + 1, depth + 1))
            stack.append((right, 2 * index + 2, depth + 1))
    return features, thresholds, latest, reference


def _child(tree: FlatTree, index: int, x: dict[str, float]) -> int:
    """The child of node ``index`` that ``x`` goes down (River's rule: below the threshold
    left; a missing feature down the child with more latest-window mass)."""
    features, thresholds, latest, _ = tree
    try:
        value = x[features[index]]
    except KeyError:
        return 2 * index + 2 if latest[2 * index + 1] < latest[2 * index + 2] else 2 * index + 1
    return 2 * index + 1 if value < thresholds[index] else 2 * index + 2


class FlatHalfSpaceTrees(anomaly.HalfSpaceTrees):
    """River's Half-Space Trees, each tree kept as flat lists instead of node objects.

    The trees are built by River (same random splits for the same seed) at the first
    purchase learned, then flattened: scores and masses are exactly River's (the tests
    compare the two on streams with several window pivots), at about half the time per
    purchase on the worker, whose node objects would lie scattered over a large heap.

    Examples
    --------
    >>> trees, reference = FlatHalfSpaceTrees(seed=1), anomaly.HalfSpaceTrees(seed=1)
    >>> for n in range(600):
    ...     x = {"a": (n * 0.37) % 1, "b": (n * 0.61) % 1}
    ...     assert trees.score_one(x) == reference.score_one(x)
    ...     trees.learn_one(x)
    ...     reference.learn_one(x)
    >>> odd = {"a": 0.5, "b": 0.99}
    >>> trees.score_one(odd) == reference.score_one(odd), round(trees.score_one(odd), 4)
    (True, 0.9763)
    """

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        limits: dict[Any, tuple[float, float]] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_trees, height, window_size, limits, seed)
        self.flat: list[FlatTree] = []

    @classmethod
    def of(cls, trees: anomaly.HalfSpaceTrees) -> FlatHalfSpaceTrees:
        """A flat copy of River's ``trees``, with what they learned."""
        flat = cls(trees.n_trees, trees.height, trees.window_size, None, trees.seed)
        flat.limits, flat.rng = trees.limits, trees.rng
        flat.counter, flat._first_window = trees.counter, trees._first_window
        flat.flat = [_flatten(tree, trees.height) for tree in trees.trees]
        return flat

    def learn_one(self, x: dict[str, float]) -> None:
        if not self.flat:  # River builds the trees (and learns x), then they are flattened
            super().learn_one(x)
            self.flat = [_flatten(tree, self.height) for tree in self.trees]
            self.trees, self._tree_nodes = [], []
            return
        height = self.height
        for tree in self.flat:
            features, thresholds, latest, _ = tree
            index = 0
            for _ in range(height):
                latest[index] += 1
                try:
                    value = x[features[index]]
                except KeyError:
                    index = _child(tree, index, x)
                else:
                    index = 2 * index + 1 if value < thresholds[index] else 2 * index + 2
            latest[index] += 1
        self.counter += 1
        if self.counter == self.window_size:  # the latest window becomes the reference
            for _, _, latest, reference in self.flat:
                reference[:] = latest
                latest[:] = [0] * len(latest)
            self._first_window = False
            self.counter = 0

    def score_one(self, x: dict[str, float]) -> float:
        if self._first_window:
            return 0.0
        height, size_limit = self.height, 0.1 * self.window_size
        score = 0.0
        for tree in self.flat:
            features, thresholds, _, reference = tree
            index, scale = 0, 1
            for _ in range(height):
                mass = reference[index]
                score += mass * scale
                if mass < size_limit:
                    break
                try:
                    value = x[features[index]]
                except KeyError:
                    index = _child(tree, index, x)
                else:
                    index = 2 * index + 1 if value < thresholds[index] else 2 * index + 2
                scale <<= 1
            else:
                score += reference[index] * scale
        return 1 - score / self._max_score


class PurchaseAnomaly(base.Estimator):
    """Half-Space Trees with a threshold, a warm-up and a rolling anomaly rate.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> detector = PurchaseAnomaly(warmup=500)
    >>> for n in range(2000):
    ...     x = purchase_features(rng.lognormvariate(3.5, 0.5), rng.randint(1, 3), 5, 170.0,
    ...                           rng.expovariate(1 / 20))
    ...     detector.record(detector.score_one(x))
    ...     detector.learn_one(x)
    >>> detector.is_anomaly(detector.score_one(purchase_features(40.0, 2, 5, 170.0, 12.0)))
    False
    >>> detector.is_anomaly(detector.score_one(purchase_features(9000.0, 200, 5, 170.0, 0.0)))
    True
    >>> detector.rate() < 0.01
    True
    """

    def __init__(
        self,
        threshold: float = 0.95,
        warmup: int = 500,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int = 42,
    ) -> None:
        self.threshold = threshold
        self.warmup = warmup
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.trees: anomaly.HalfSpaceTrees = FlatHalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self.seen = 0
        self.flagged = 0
        self._recent = utils.Rolling(stats.Mean, window_size=1000)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Checkpoints written before the trees were flat hold River's own: flatten them
        # (same masses, so the same scores from here on).
        trees = state.get("trees")
        if trees is not None and not isinstance(trees, FlatHalfSpaceTrees):
            state = {**state, "trees": FlatHalfSpaceTrees.of(trees)}
        self.__dict__.update(state)

    def score_one(self, x: dict[str, float]) -> float:
        """How unusual a purchase is, in [0, 1] (higher is stranger); learns nothing."""
        return float(self.trees.score_one(x))

    def is_anomaly(self, score: float) -> bool:
        """Whether ``score`` raises an alert (never during the warm-up)."""
        return self.seen >= self.warmup and score >= self.threshold

    def learn_one(self, x: dict[str, float]) -> None:
        """Learn from a purchase (:meth:`record` counts how it scored beforehand)."""
        self.trees.learn_one(x)
        self.seen += 1

    def record(self, score: float) -> None:
        """Count a purchase's score, given before the model learned from it, for
        :meth:`rate` (the worker records the score its alert decision used)."""
        if self.seen >= self.warmup:
            flagged = self.is_anomaly(score)
            self.flagged += flagged
            self._recent.update(float(flagged))

    def rate(self) -> float:
        """Share of the last 1,000 purchases after the warm-up that scored as anomalies."""
        return self._recent.get()
