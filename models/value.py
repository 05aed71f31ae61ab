"""Predicted customer value: expected revenue (and CLV) in the next ``horizon_days`` days.

Customer value as the product defines it (revenue − cost so far) drives the tiers; this
is the value *ahead*, what every commercial platform calls predicted lifetime value. It
is the product of three parts, each cheap to compute at a purchase:

* **whether the customer buys at all** in the horizon, ``p``: the purchase propensity of
  :mod:`crmstream.models.propensity` (its hazard, learned online from delayed labels,
  already knows how long silences end);
* **how often they buy when they do**: a purchase rate ``λ`` per day with a gamma prior,
  ``(repeats + r0) / (age + r0 · g)``, where ``g`` is the partition's mean days between
  purchases, learned from every purchase. Given that the customer buys at least once, the
  expected number of purchases of a Poisson process is ``λH / (1 − e^(−λH))``, so the
  expected number is ``p · λH / (1 − e^(−λH))``;
* **how much they spend per purchase**: their mean order value shrunk towards the
  partition's (learned from every purchase) by ``k`` pseudo-orders, as the Gamma-Gamma
  model does. ``k = 1.5`` (``prior_orders``) is the shrinkage that best predicts a
  customer's next order value from their previous ones, replayed in event-time order over
  the CDNOW history (root mean squared error 32.65 against 33.16 at ``k = 4`` and 33.26
  at ``k = 0.5``): a criterion on order values alone, not on the value evaluation's
  holdouts.

``predicted_clv`` is the expected revenue less the expected cost at the customer's own
cost ratio (cost / revenue so far).

The shared part, :class:`ValueModel`, holds two running means and is independent of the
number of customers; it learns from each purchase's propensity snapshot (the customer's
history as the purchase left it), so a replay after a crash teaches it exactly what the
first pass did.
"""

from __future__ import annotations

import math

from river import base


class ValueModel(base.Estimator):
    """The partition's running means: order value, and days between a customer's purchases.

    Examples
    --------
    >>> model = ValueModel(horizon_days=365)
    >>> model.learn(orders=1, revenue=20.0, first=0.0, day=0.0)
    >>> model.learn(orders=2, revenue=60.0, first=0.0, day=30.0)
    >>> model.mean_order, model.mean_gap
    (25.0, 30.0)
    >>> revenue = model.predict(orders=2, revenue=60.0, first=0.0, now=30.0, p_buy=0.8)
    >>> round(revenue, 2)
    271.14
    >>> model.predict(orders=2, revenue=60.0, first=0.0, now=30.0, p_buy=0.0)
    0.0
    """

    def __init__(
        self,
        horizon_days: float = 365.0,
        prior_orders: float = 1.5,
        prior_repeats: float = 1.0,
    ) -> None:
        if horizon_days <= 0:
            raise ValueError("horizon_days must be positive")
        self.horizon_days = horizon_days
        self.prior_orders = prior_orders
        self.prior_repeats = prior_repeats
        self.purchases = 0
        self.mean_order = 0.0
        self.repeats = 0
        self.mean_gap = 0.0

    def learn(self, orders: int, revenue: float, first: float, day: float) -> None:
        """Learn one purchase from the customer's history after it: ``orders`` purchases,
        ``revenue`` in all, the first on ``first`` and this one on ``day`` (days)."""
        self.purchases += 1
        self.mean_order += (revenue / max(orders, 1) - self.mean_order) / self.purchases
        if orders > 1 and day > first:
            self.repeats += 1
            gap = (day - first) / (orders - 1)
            self.mean_gap += (gap - self.mean_gap) / self.repeats

    def spend(self, orders: int, revenue: float) -> float:
        """Expected value of the customer's next order: their mean shrunk to the
        partition's by ``prior_orders`` pseudo-orders."""
        k = self.prior_orders if self.purchases else 0.0
        return (revenue + k * self.mean_order) / max(orders + k, 1e-9)

    def rate(self, orders: int, first: float, now: float) -> float:
        """Expected purchases per day while the customer is active (gamma-Poisson
        posterior mean, the prior's mean gap that of the partition)."""
        gap = self.mean_gap if self.repeats else 30.0
        r0 = self.prior_repeats
        return (max(orders - 1, 0) + r0) / (max(now - first, 0.0) + r0 * max(gap, 1.0))

    def purchases_ahead(
        self, orders: int, first: float, now: float, p_buy: float, horizon: float | None = None
    ) -> float:
        """Expected purchases in the horizon: ``p_buy`` (the chance of at least one) times
        the expected number of a Poisson process given at least one."""
        h = self.horizon_days if horizon is None else horizon
        lam_h = self.rate(orders, first, now) * h
        given_one = lam_h / -math.expm1(-lam_h) if lam_h > 1e-9 else 1.0
        return max(min(p_buy, 1.0), 0.0) * given_one

    def predict(
        self,
        orders: int,
        revenue: float,
        first: float,
        now: float,
        p_buy: float,
        horizon: float | None = None,
    ) -> float:
        """Expected revenue in the horizon after ``now`` (days since the epoch)."""
        if orders < 1:
            return 0.0
        return self.purchases_ahead(orders, first, now, p_buy, horizon) * self.spend(
            orders, revenue
        )


def horizon_probability(p: float, horizon_days: float, target_days: float) -> float:
    """A probability of buying within ``horizon_days`` turned into ``target_days``, as if
    the daily chance stayed the same: ``1 - (1 - p) ** (target / horizon)``.

    Examples
    --------
    >>> horizon_probability(0.5, 90, 180)
    0.75
    """
    p = min(max(p, 0.0), 1.0)
    if horizon_days == target_days:
        return p
    return 1.0 - (1.0 - p) ** (target_days / horizon_days)


def predicted_clv(predicted_revenue: float, revenue: float, cost: float) -> float:
    """Expected revenue less the expected cost at the customer's cost ratio so far.

    Examples
    --------
    >>> predicted_clv(100.0, revenue=200.0, cost=50.0)
    75.0
    >>> predicted_clv(100.0, revenue=0.0, cost=0.0)
    100.0
    """
    ratio = cost / revenue if revenue > 0 else 0.0
    return predicted_revenue * (1.0 - ratio)
