"""Customer segments: online k-means on standardised RFM features.

Every purchase places the customer in the segment whose centre is nearest to their
recency (days since the previous purchase), frequency (purchases) and monetary value
(revenue), each on a log scale and standardised with running means and variances, and then
moves that centre a little towards them (River's ``KMeans``). Segment numbers are the
model's cluster ids: :meth:`CustomerSegments.describe` gives each segment's centre in the
original units and its current size, so that a person can name it ("frequent big
spenders", "one-off buyers", ...).
"""

from __future__ import annotations

import math
from collections import Counter

from river import base, cluster, preprocessing

#: The features of :func:`rfm_features`, in a fixed order.
FEATURES = ("recency", "frequency", "monetary")


def rfm_features(gap_days: float, orders: int, revenue: float) -> dict[str, float]:
    """Log-scaled recency, frequency and monetary value of a customer at a purchase.

    Examples
    --------
    >>> rfm_features(0.0, 1, 0.0)
    {'recency': 0.0, 'frequency': 0.6931, 'monetary': 0.0}
    """
    return {
        "recency": round(math.log1p(max(gap_days, 0.0)), 4),
        "frequency": round(math.log1p(orders), 4),
        "monetary": round(math.log1p(max(revenue, 0.0)), 4),
    }


class CustomerSegments(base.Estimator):
    """Online k-means segments of customers, with the current size of each segment.

    Examples
    --------
    Occasional small buyers and frequent big spenders end up in different segments:

    >>> import random
    >>> rng = random.Random(7)
    >>> segments = CustomerSegments(n_segments=2, seed=3)
    >>> for n in range(400):
    ...     if n % 2:
    ...         x = rfm_features(rng.uniform(100, 300), rng.randint(1, 2), rng.uniform(5, 30))
    ...     else:
    ...         x = rfm_features(rng.uniform(1, 10), rng.randint(20, 40), rng.uniform(2e3, 5e3))
    ...     segments.move(None, segments.predict_one(x))
    ...     segments.learn_one(x)
    >>> small = segments.predict_one(rfm_features(200, 1, 10))
    >>> big = segments.predict_one(rfm_features(5, 30, 3000))
    >>> small != big, sum(segments.sizes.values())
    (True, 400)
    """

    def __init__(self, n_segments: int = 4, halflife: float = 0.05, seed: int = 42) -> None:
        self.n_segments = n_segments
        self.halflife = halflife
        self.seed = seed
        self.scaler = preprocessing.StandardScaler()
        self.kmeans = cluster.KMeans(n_clusters=n_segments, halflife=halflife, sigma=1.0, seed=seed)
        # River draws a centre's coordinates lazily, in the iteration order of a set of
        # feature names, which depends on the process's string-hash seed: draw them all now,
        # in a fixed order, so every process (and every restored replica) agrees.
        for centre in self.kmeans.centers.values():
            for name in FEATURES:
                centre[name]
        self.sizes: Counter[int] = Counter()

    def predict_one(self, x: dict[str, float]) -> int:
        """The segment of a customer with features ``x`` (see :func:`rfm_features`)."""
        return int(self._nearest(self._scaled(x)))

    def learn_one(self, x: dict[str, float]) -> None:
        """Learn from a customer's features at a purchase (moves the nearest centre)."""
        self.scaler.learn_one(x)
        scaled = self._scaled(x)
        centre = self.kmeans.centers[self._nearest(scaled)]
        halflife = self.kmeans.halflife
        for name, value in scaled.items():
            centre[name] += halflife * (value - centre[name])

    # River's StandardScaler.transform_one and KMeans.predict_one and learn_one, inlined:
    # the same arithmetic on the same River state, without a generator and a set of names
    # per centre (its distance sums the features in a fixed order, where River's follows
    # the process's string hashing).

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        means, variances = self.scaler.means, self.scaler.vars
        scaled = {}
        for name, value in x.items():
            variance = variances[name]
            scaled[name] = (value - means[name]) / variance**0.5 if variance else 0.0
        return scaled

    def _nearest(self, x: dict[str, float]) -> int:
        p = self.kmeans.p
        nearest, shortest = -1, math.inf
        for segment, centre in self.kmeans.centers.items():
            distance = 0
            for name in centre.keys() | x.keys() if centre.keys() != x.keys() else x:
                distance += abs(centre[name] - x.get(name, 0)) ** p
            if distance < shortest:
                nearest, shortest = segment, distance
        return nearest

    def move(self, previous: int | None, segment: int) -> None:
        """Count a customer who moved from segment ``previous`` (``None``: new) to
        ``segment``. Who is in which segment is kept with each customer, not here."""
        if previous == segment:
            return
        if previous is not None:
            self.sizes[previous] -= 1
        self.sizes[segment] += 1

    def describe(self) -> dict[int, dict[str, float]]:
        """Each segment's centre in the original units (days, purchases, revenue) and size."""
        out = {}
        for segment, centre in sorted(self.kmeans.centers.items()):
            row: dict[str, float] = {"customers": self.sizes.get(segment, 0)}
            for name, value in centre.items():
                mean = self.scaler.means.get(name, 0.0)
                std = math.sqrt(self.scaler.vars.get(name, 0.0)) or 1.0
                row[name] = round(math.expm1(mean + value * std), 2)
            out[int(segment)] = row
        return out
