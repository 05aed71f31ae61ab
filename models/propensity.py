"""Purchase propensity: the probability that a customer buys again within a horizon.

The model learns online from the purchase stream alone, with delayed labels, and never
needs a batch retrain.

How it learns
-------------
A label "bought again within the horizon" is known only once the horizon has passed. With
a 273-day horizon and 273 days of history no snapshot has been resolved as negative yet,
so a model that waits for its horizon learns nothing but positives (the *horizon trap*).
:class:`PurchasePropensity` therefore learns a discrete-time *hazard*: for a snapshot of
the customer taken at a purchase, the probability of the next purchase falling in each
following period of ``period_days`` (default 30), given none before it. Each period of
each snapshot is one delayed label:

* when the customer buys again, the period the purchase falls in is labelled 1;
* when the event-time clock (the latest ``occurred_at`` seen, never the wall clock)
  passes the end of a period without a purchase, that period is labelled 0.

A period is learned when it closes, positive or negative, so both labels of a period
reach the classifier at the same point in the stream: learning positives as soon as they
happen and negatives a period later biases an online learner towards whatever it saw
last. Periods stop being learned after ``max_periods`` (the hazard of the last learned
period stands for all later ones).

How it predicts
---------------
For a customer whose last purchase was ``r`` days ago, the probability of buying within
``horizon_days`` is one minus the probability of surviving every period of
``(r, r + horizon]``: ``1 - prod(1 - h(x, t))``. The hazards come from periods the stream
has already shown, so the score is calibrated to any horizon, including horizons longer
than the history.

The score at each purchase is the ``purchase_propensity`` of the profile. Quality is
measured prequentially: the horizon score made at each snapshot, before the snapshot
teaches anything, is compared with what happened once the horizon has passed (rolling
ROC AUC and log loss).
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from river import base, linear_model, metrics, optim, utils

DAY = 86400.0

#: Rolling window of the prequential metrics (resolved horizon predictions).
METRICS_WINDOW = 2000


def to_days(at: datetime) -> float:
    """Event time as days since the Unix epoch.

    Examples
    --------
    >>> from datetime import timezone
    >>> to_days(datetime(1970, 1, 3, 12, tzinfo=timezone.utc))
    2.5
    """
    return at.timestamp() / DAY


@dataclass(slots=True)
class History:
    """What the propensity model keeps of one customer (times in days since the epoch)."""

    orders: int
    revenue: float
    first: float
    last: float
    sentiment: float = 0.0

    def bought(self, at: float, amount: float, sentiment: float | None = None) -> History:
        """The history after one more purchase (this one is left as it is)."""
        return History(
            self.orders + 1,
            self.revenue + amount,
            min(self.first, at),
            max(self.last, at),
            self.sentiment if sentiment is None else sentiment,
        )

    @classmethod
    def first_purchase(cls, at: float, amount: float, sentiment: float | None) -> History:
        return cls(1, amount, at, at, sentiment or 0.0)


def customer_features(history: History, elapsed: float) -> dict[str, float]:
    """Features of a customer ``elapsed`` days after their last purchase.

    RFM and timing features: purchases, mean order value, tenure, mean days between
    purchases, the customer's sentiment (moving average, 0 if unknown) and the days since
    the last purchase (``t``).

    Examples
    --------
    >>> customer_features(History(3, 90.0, 0.0, 20.0, -0.5), 5.0)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'orders': 3.0, 'mean_value': 30.0, 'tenure': 20.0, 'mean_gap': 10.0, 'sentiment': -0.5,
     't': 5.0}
    """
    tenure = history.last - history.first
    return {
        "orders": float(history.orders),
        "mean_value": history.revenue / history.orders,
        "tenure": tenure,
        "mean_gap": tenure / (history.orders - 1) if history.orders > 1 else 0.0,
        "sentiment": history.sentiment,
        "t": elapsed,
    }


class PeriodHazard(base.Classifier):
    """Probability that a customer buys within one period, given ``t`` days of silence.

    A River classifier: ``x`` holds the features of :func:`customer_features`, ``y`` is
    whether the customer bought within the period starting ``t`` days after their last
    purchase. It is a logistic regression on fixed transforms of the features (log scales,
    the period as a category crossed with the purchase count, interactions of the elapsed
    time with frequency and regularity, the purchase rate over the customer's age and how
    overdue the next purchase is against the customer's own rhythm). The transforms are
    fixed rather than standardised online because the mix of elapsed times drifts as a
    stream ages, and a running standardisation would silently change the meaning of
    learned weights.

    Periods with fewer than ``min_examples`` learned examples borrow the weights of the
    latest period that has enough: the hazard of a silence longer than any the stream has
    shown is that of the longest one it has.

    Examples
    --------
    >>> hazard = PeriodHazard(period_days=30, learning_rate=0.5, min_examples=1)
    >>> regular = {"orders": 6.0, "mean_value": 20.0, "tenure": 100.0, "mean_gap": 20.0,
    ...            "sentiment": 0.0, "t": 0.0}
    >>> once = dict(regular, orders=1.0, tenure=0.0, mean_gap=0.0, t=60.0)
    >>> for _ in range(200):
    ...     hazard.learn_one(regular, True)
    ...     hazard.learn_one(once, False)
    >>> hazard.predict_proba_one(regular)[True] > 0.9 > 0.1 > hazard.predict_proba_one(once)[True]
    True
    >>> hazard.predict_one(regular)
    True
    """

    def __init__(
        self,
        period_days: float = 30.0,
        max_periods: int = 12,
        learning_rate: float = 0.05,
        min_examples: int = 2000,
    ) -> None:
        self.period_days = period_days
        self.max_periods = max_periods
        self.learning_rate = learning_rate
        self.min_examples = min_examples
        self.regression = linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), intercept_lr=learning_rate
        )
        self.examples: Counter[int] = Counter()
        self._known_period = 0

    @property
    def _multiclass(self) -> bool:
        return False

    def period(self, t: float) -> int:
        """The index of the period that starts ``t`` days after the last purchase."""
        return min(int(t // self.period_days), self.max_periods - 1)

    def _transform(self, x: dict[str, float], period: int) -> dict[str, float]:
        orders = math.log(max(x["orders"], 1.0)) / 3
        gap = math.log1p(x["mean_gap"]) / 6
        tenure = math.log1p(x["tenure"]) / 6
        elapsed = math.log1p(x["t"]) / 6
        group = min(int(x["orders"]), 6)
        age = x["tenure"] + x["t"]
        return {
            "orders": orders,
            "mean_value": math.log1p(x["mean_value"]) / 5,
            "tenure": tenure,
            "mean_gap": gap,
            "sentiment": x["sentiment"],
            "repeat": float(x["orders"] > 1),
            f"period={period}": 1.0,
            f"period={period}*orders": orders,
            f"orders={group}": 1.0,
            "t": elapsed,
            "t*orders": elapsed * orders,
            "t*mean_gap": elapsed * gap,
            "t*tenure": elapsed * tenure,
            "age": math.log1p(age) / 6,
            "rate": math.log1p(30.0 * x["orders"] / (age + 1.0)) / 3,
            "overdue": math.log1p(x["t"] / (x["mean_gap"] + 1.0)) / 3 if x["orders"] > 1 else 0.0,
            "revenue": math.log1p(x["mean_value"] * x["orders"]) / 6,
        }

    def learn_one(self, x: dict[str, float], y: bool) -> None:  # type: ignore[override]
        period = self.period(x["t"])
        self.regression.learn_one(self._transform(x, period), bool(y))
        self.examples[period] += 1
        if self.examples[period] >= self.min_examples and period > self._known_period:
            self._known_period = period

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:  # type: ignore[override]
        period = min(self.period(x["t"]), self._known_period)
        p = self.regression.predict_proba_one(self._transform(x, period))[True]
        return {False: 1.0 - p, True: p}

    def predict_one(self, x: dict[str, float]) -> bool:  # type: ignore[override]
        return self.predict_proba_one(x)[True] >= 0.5


@dataclass(slots=True)
class _Snapshot:
    """A customer's history at a purchase, waiting for its delayed labels."""

    seq: int
    history: History
    next_period: int
    score: float
    resolved: bool = False


# Kinds of scheduled work. Work due at the same time runs in a deterministic pseudo-random
# order, not grouped by kind or by when it was scheduled: event times are often whole days,
# and a run of one label followed by a run of the other would bias the learner.
_POSITIVE, _NEGATIVE, _HORIZON = 0, 1, 2


class PurchasePropensity(base.Estimator):
    """Online purchase propensity with delayed labels; see the module documentation.

    Feed it a partition's purchases in order with :meth:`learn_purchase`; ask it with
    :meth:`predict_customer` (a known customer, now) or :meth:`predict_history`.

    Examples
    --------
    Five customers who buy every 10 days, and a new customer a day who buys only once:

    >>> from datetime import timedelta, timezone
    >>> model = PurchasePropensity(horizon_days=30, period_days=10, learning_rate=0.2,
    ...                            min_examples=5)
    >>> start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> for day in range(300):
    ...     at = start + timedelta(days=day)
    ...     model.learn_purchase(f"once-{day}", at, 20.0)
    ...     if day % 10 == 0:
    ...         for n in range(5):
    ...             model.learn_purchase(f"loyal-{n}", at, 20.0)
    >>> now = start + timedelta(days=300)
    >>> model.predict_customer("loyal-1", now) > 0.9 > 0.1 > model.predict_customer("once-250", now)
    True
    >>> model.predict_customer("stranger", now) is None
    True
    >>> model.quality()["rolling_auc"] > 0.9
    True
    """

    def __init__(
        self,
        horizon_days: float = 90.0,
        period_days: float = 30.0,
        max_periods: int = 12,
        learning_rate: float = 0.05,
        min_examples: int = 2000,
    ) -> None:
        if horizon_days <= 0 or period_days <= 0:
            raise ValueError("horizon_days and period_days must be positive")
        self.horizon_days = horizon_days
        self.period_days = period_days
        self.max_periods = max_periods
        self.learning_rate = learning_rate
        self.min_examples = min_examples
        self.hazard = PeriodHazard(period_days, max_periods, learning_rate, min_examples)
        self.histories: dict[str, History] = {}
        self.pending: dict[str, _Snapshot] = {}
        self.clock = -math.inf
        self.labels: Counter[bool] = Counter()
        self.outcomes: Counter[bool] = Counter()
        self.rolling_auc = metrics.RollingROCAUC(window_size=METRICS_WINDOW)
        self.rolling_log_loss = utils.Rolling(metrics.LogLoss, window_size=METRICS_WINDOW)
        self.period_auc = metrics.RollingROCAUC(window_size=METRICS_WINDOW)
        self.period_log_loss = utils.Rolling(metrics.LogLoss, window_size=METRICS_WINDOW)
        self._due: list[tuple[float, int, int, int, str, Any]] = []
        self._compacted = 0
        self._seq = 0

    # -- prediction -------------------------------------------------------------------

    def predict_history(self, history: History, now: float) -> float:
        """Probability that a customer with ``history`` buys in the horizon after ``now``
        (days since the epoch)."""
        start = max(now - history.last, 0.0)
        end = start + self.horizon_days
        log_survival = 0.0
        t = start
        while t < end:
            period = int(t // self.period_days)
            step = min((period + 1) * self.period_days, end) - t
            x = customer_features(history, period * self.period_days)
            hazard = min(self.hazard.predict_proba_one(x)[True], 1.0 - 1e-9)
            log_survival += step / self.period_days * math.log1p(-hazard)
            t += step
        return 1.0 - math.exp(log_survival)

    def predict_customer(self, customer_id: str, now: datetime) -> float | None:
        """A known customer's probability of buying within the horizon after ``now``, or
        ``None`` for a customer the model has not seen buy."""
        history = self.histories.get(customer_id)
        return None if history is None else self.predict_history(history, to_days(now))

    # -- learning ---------------------------------------------------------------------

    def learn_purchase(
        self, customer_id: str, at: datetime, amount: float, sentiment: float | None = None
    ) -> None:
        """Learn from one purchase: label the customer's previous snapshot, take a new one.

        ``amount`` is in the base currency; ``sentiment`` is the customer's sentiment when
        known (the previous value is kept otherwise). Purchases of one customer should
        come in event-time order; one older than the last labelled period is counted but
        does not relabel periods already learned.
        """
        day = to_days(at)
        self.advance(day)
        previous = self.histories.get(customer_id)
        snapshot = self.pending.pop(customer_id, None)
        if snapshot is not None:
            gap = day - snapshot.history.last
            period = int(gap // self.period_days)
            if snapshot.next_period <= period < self.max_periods:
                due = snapshot.history.last + (period + 1) * self.period_days
                self._schedule(due, _POSITIVE, customer_id, (snapshot.history, period))
            if not snapshot.resolved and gap <= self.horizon_days:
                self._resolve(snapshot, True)
        if previous is None:
            history = History.first_purchase(day, amount, sentiment)
        else:
            history = previous.bought(day, amount, sentiment)
        self.histories[customer_id] = history
        self._seq += 1
        snapshot = _Snapshot(self._seq, history, 0, self.predict_history(history, day))
        self.pending[customer_id] = snapshot
        self._schedule(history.last + self.period_days, _NEGATIVE, customer_id, snapshot.seq)
        self._schedule(history.last + self.horizon_days, _HORIZON, customer_id, snapshot.seq)

    def advance(self, now: float) -> None:
        """Move the event-time clock to ``now`` (days) and learn every period that closed."""
        self.clock = max(self.clock, now)
        due = self._due
        while due and due[0][0] <= self.clock:
            *_, kind, customer_id, payload = heapq.heappop(due)
            if kind == _POSITIVE:
                history, period = payload
                self._learn(customer_features(history, period * self.period_days), True)
                continue
            snapshot = self.pending.get(customer_id)
            if snapshot is None or snapshot.seq != payload:
                continue  # the customer bought again: this snapshot is settled
            if kind == _HORIZON:
                if not snapshot.resolved:
                    self._resolve(snapshot, False)
                if snapshot.next_period >= self.max_periods:
                    del self.pending[customer_id]
                continue
            period = snapshot.next_period
            self._learn(customer_features(snapshot.history, period * self.period_days), False)
            snapshot.next_period = period + 1
            if snapshot.next_period < self.max_periods:
                end = snapshot.history.last + (period + 2) * self.period_days
                self._schedule(end, _NEGATIVE, customer_id, snapshot.seq)
            elif snapshot.resolved:
                del self.pending[customer_id]

    def _schedule(self, due: float, kind: int, customer_id: str, payload: Any) -> None:
        if len(self._due) > 2 * max(self._compacted, len(self.pending)) + 1000:
            self._compact()
        self._seq += 1
        shuffle = zlib.crc32(f"{customer_id}:{self._seq}".encode())
        heapq.heappush(self._due, (due, shuffle, self._seq, kind, customer_id, payload))

    def _compact(self) -> None:
        """Drop scheduled work of snapshots that a later purchase settled.

        Each purchase leaves the previous snapshot's entries in the schedule (they are
        skipped when due); without compaction the schedule, and with it the checkpoint,
        would grow with every purchase of the last horizon instead of with the customers.
        """
        pending = self.pending

        def live(entry: tuple[float, int, int, int, str, Any]) -> bool:
            kind, customer_id, payload = entry[3:]
            if kind == _POSITIVE:
                return True
            snapshot = pending.get(customer_id)
            return snapshot is not None and snapshot.seq == payload

        self._due = [entry for entry in self._due if live(entry)]
        heapq.heapify(self._due)
        self._compacted = len(self._due)

    def _learn(self, x: dict[str, float], y: bool) -> None:
        p = self.hazard.predict_proba_one(x)[True]
        self.period_auc.update(y, p)
        self.period_log_loss.update(y, p)
        self.hazard.learn_one(x, y)
        self.labels[y] += 1

    def _resolve(self, snapshot: _Snapshot, bought: bool) -> None:
        snapshot.resolved = True
        self.outcomes[bought] += 1
        self.rolling_auc.update(bought, snapshot.score)
        self.rolling_log_loss.update(bought, snapshot.score)

    # -- reporting --------------------------------------------------------------------

    def quality(self) -> dict[str, float | int | None]:
        """Prequential quality of the horizon scores resolved so far.

        ``rolling_auc`` and ``rolling_log_loss`` cover the horizon scores of the last
        :data:`METRICS_WINDOW` resolved snapshots (``None`` until there are some, and for
        the AUC until both outcomes have been seen). A snapshot resolves as negative only
        once its whole horizon has passed, so on a stream younger than the horizon these
        figures rest on few, early negatives. ``period_auc`` and ``period_log_loss`` cover
        the last :data:`METRICS_WINDOW` period labels, each predicted just before it was
        learned: they are meaningful from the first closed periods on.
        """
        resolved = self.outcomes[True] + self.outcomes[False]
        return {
            "resolved": resolved,
            "resolved_positive": self.outcomes[True],
            "rolling_auc": round(self.rolling_auc.get(), 4) if len(self.outcomes) == 2 else None,
            "rolling_log_loss": round(self.rolling_log_loss.get(), 4) if resolved else None,
            "period_auc": round(self.period_auc.get(), 4) if len(self.labels) == 2 else None,
            "period_log_loss": round(self.period_log_loss.get(), 4) if self.labels else None,
            "labels_positive": self.labels[True],
            "labels_negative": self.labels[False],
            "customers": len(self.histories),
        }
