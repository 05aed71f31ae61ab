"""A partition's purchase models, and what one purchase asks of them and teaches them.

The models are shared by every customer of a partition and their size does not depend on
how many customers there are: the propensity hazard (:mod:`crmstream.models.propensity`),
the k-means segments (:mod:`crmstream.models.segments`) and the Half-Space Trees of
unusual purchases (:mod:`crmstream.models.anomaly`). What they need to know about one
customer lives with that customer, in :class:`CustomerModelState`, which the worker keeps
in the customer's profile and writes with the same compare-and-set: the customer's recent
propensity snapshots, waiting for their delayed labels, and the lessons of their recent
purchases, kept until a checkpoint of the models includes them.

A purchase is scored by :func:`score_purchase` *before* the models learn from it
(prequential), and the scoring returns the :class:`PurchaseLesson` they then learn with
:meth:`PurchaseModels.learn`: the features as they were at the purchase, so that a replay
of the purchase after a crash teaches exactly what the first pass did.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from crmstream.models.anomaly import PurchaseAnomaly, purchase_features
from crmstream.models.customer_state import PurchaseLesson, Retention, trim
from crmstream.models.profile import Profile
from crmstream.models.propensity import PropensityModel, Snapshot, to_days
from crmstream.models.segments import FEATURES, CustomerSegments, rfm_features
from crmstream.models.value import ValueModel, horizon_probability, predicted_clv
from crmstream.schemas.inputs import Purchase

#: The anomaly features of :func:`~crmstream.models.anomaly.purchase_features`, in order.
ANOMALY_FEATURES = ("amount", "units", "vs_mean", "gap")


@dataclass
class PurchaseModels:
    """The purchase models of one partition.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> models = PurchaseModels.create()
    >>> at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> buy = Purchase(event_id="p1", customer_id="c1", occurred_at=at, amount=40.0)
    >>> after = Profile(customer_id="c1", orders=1, revenue=40.0, first_purchase_at=at,
    ...                 last_purchase_at=at)
    >>> scored = score_purchase(models, Profile(customer_id="c1"), after, buy, 40.0, 0)
    >>> scored.profile.segment == scored.lesson.segment, scored.lesson.previous_segment
    (True, -1)
    >>> models.learn(scored.lesson)
    >>> models.anomaly.seen, sum(models.segments.sizes.values())
    (1, 1)
    """

    propensity: PropensityModel
    segments: CustomerSegments
    anomaly: PurchaseAnomaly
    #: ``None`` in models checkpointed before it existed: see :meth:`value_model`.
    value: ValueModel | None = None

    @classmethod
    def create(
        cls,
        horizon_days: float = 90.0,
        period_days: float = 30.0,
        n_segments: int = 4,
        anomaly_threshold: float = 0.95,
        anomaly_warmup: int = 500,
        lateness_days: float = 0.0,
        value_horizon_days: float = 365.0,
    ) -> PurchaseModels:
        """Fresh models with the given settings (``lateness_days``: the propensity
        watermark's allowed lateness)."""
        return cls(
            PropensityModel(
                horizon_days=horizon_days, period_days=period_days, lateness_days=lateness_days
            ),
            CustomerSegments(n_segments=n_segments),
            PurchaseAnomaly(threshold=anomaly_threshold, warmup=anomaly_warmup),
            ValueModel(horizon_days=value_horizon_days),
        )

    def value_model(self) -> ValueModel:
        """The value model (created with the default horizon for models restored from a
        checkpoint written before it existed)."""
        if self.value is None:
            self.value = ValueModel()
        return self.value

    def learn(self, lesson: PurchaseLesson, snapshot: Snapshot | None = None) -> None:
        """Teach the anomaly, segment and (from the purchase's propensity ``snapshot``)
        value models one purchase (the propensity model learns from its delayed labels,
        see :func:`crmstream.models.propensity.learn_purchases`)."""
        if snapshot is not None:
            self.value_model().learn(
                snapshot.orders, snapshot.revenue, snapshot.first, snapshot.day
            )
        self.anomaly.record(lesson.anomaly_score)
        self.anomaly.learn_one(dict(zip(ANOMALY_FEATURES, lesson.anomaly, strict=True)))
        self.segments.learn_one(dict(zip(FEATURES, lesson.rfm, strict=True)))
        previous = None if lesson.previous_segment < 0 else lesson.previous_segment
        self.segments.move(previous, lesson.segment)


class ScoredPurchase(msgspec.Struct, frozen=True):
    """A purchase scored by a partition's models: the profile with its new scores and
    state, the lesson and snapshot it brings, and its anomaly score."""

    profile: Profile
    lesson: PurchaseLesson
    snapshot: Snapshot
    anomaly: float
    flagged: bool


def units(purchase: Purchase) -> int:
    """Units bought: the items' quantities, or 1 for a purchase without items.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> units(Purchase(event_id="e1", customer_id="c1", occurred_at=at, amount=5.0))
    1
    """
    return sum(item.quantity for item in purchase.items) if purchase.items else 1


def score_purchase(
    models: PurchaseModels,
    before: Profile,
    after: Profile,
    purchase: Purchase,
    amount: float,
    offset: int,
    retention: Retention | None = None,
) -> ScoredPurchase:
    """Score a purchase with the partition's models, before they learn from it.

    ``before`` and ``after`` are the customer's profile before and after the purchase
    (:func:`~crmstream.models.profile.apply_purchase`); ``amount`` is in the base currency
    and ``offset`` the purchase's position in its partition. The returned profile has
    ``purchase_propensity``, ``segment``, ``last_purchase_anomaly``, ``predicted_revenue``
    and ``predicted_clv`` set, and its
    ``model_state`` holds the new snapshot and lesson, trimmed by ``retention``. This is
    the one place purchase features are built, for scoring and for learning alike.
    """
    state = before.model_state
    at = to_days(purchase.occurred_at)
    gap = max(at - to_days(before.last_purchase_at), 0.0) if before.last_purchase_at else 0.0
    x = purchase_features(amount, units(purchase), before.orders, before.revenue, gap)
    rfm = rfm_features(gap, after.orders, after.revenue)
    anomaly = models.anomaly.score_one(x)
    segment = models.segments.predict_one(rfm)
    snapshot = models.propensity.snapshot(state.latest(), offset, at, amount, after.sentiment_avg)
    lesson = PurchaseLesson(
        offset,
        (x["amount"], x["units"], x["vs_mean"], x["gap"]),
        (rfm["recency"], rfm["frequency"], rfm["monetary"]),
        -1 if before.segment is None else before.segment,
        segment,
        anomaly,
    )
    kept = trim(
        msgspec.structs.replace(
            state, snapshots=[*state.snapshots, snapshot], lessons=[*state.lessons, lesson]
        ),
        retention or Retention(),
        models.propensity.last_due,
        models.propensity.forgets_in_order,
    )
    propensity, value = models.propensity, models.value_model()
    p_buy = horizon_probability(snapshot.score, propensity.horizon_days, value.horizon_days)
    revenue = value.predict(snapshot.orders, snapshot.revenue, snapshot.first, snapshot.day, p_buy)
    profile = msgspec.structs.replace(
        after,
        purchase_propensity=round(snapshot.score, 4),
        predicted_revenue=round(revenue, 2),
        predicted_clv=round(predicted_clv(revenue, after.revenue, after.cost), 2),
        segment=segment,
        last_purchase_anomaly=round(anomaly, 4),
        model_state=kept,
    )
    return ScoredPurchase(profile, lesson, snapshot, anomaly, models.anomaly.is_anomaly(anomaly))
