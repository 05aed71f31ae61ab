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
        self.trees = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self.seen = 0
        self.flagged = 0
        self._recent = utils.Rolling(stats.Mean, window_size=1000)

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
