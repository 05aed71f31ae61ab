"""A partition's purchase models and customers in memory, fed one purchase at a time.

What a worker does for a partition, without Kafka or Redis: each purchase is applied to
its customer's profile with :func:`~crmstream.models.events.apply_event` (scored before
the models learn), then the models learn from it and from every delayed label that falls
due, exactly as :mod:`crmstream.streams.replicas` teaches them. Because what the models
learn does not depend on how a stream is cut into batches, a worker's models after any
run (crashes and replays included) equal those of this single clean pass over the same
events; the crash tests compare them. Also handy for offline experiments.
"""

from __future__ import annotations

from collections.abc import Sequence

from crmstream.models.events import Output, Policies, apply_event
from crmstream.models.profile import Profile
from crmstream.models.propensity import (
    Arrival,
    Snapshot,
    SnapshotDays,
    learn_purchases,
    to_days,
)
from crmstream.models.purchase_models import PurchaseModels
from crmstream.schemas.inputs import Purchase


class OfflinePartition:
    """One partition's purchase models and its customers' profiles, in memory.

    Examples
    --------
    >>> from datetime import datetime, timedelta, timezone
    >>> from crmstream.models.alerts import AlertPolicy
    >>> from crmstream.models.money import Currencies
    >>> from crmstream.models.tiers import TierPolicy
    >>> partition = OfflinePartition(
    ...     PurchaseModels.create(), Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {})))
    >>> start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> for n in range(40):
    ...     at = start + timedelta(days=5 * n)
    ...     _ = partition.apply(Purchase(event_id=f"e{n}", customer_id=f"c{n % 4}",
    ...                                  occurred_at=at, amount=20.0))
    >>> partition.models.anomaly.seen, sum(partition.models.propensity.labels.values()) > 0
    (40, True)
    """

    def __init__(self, models: PurchaseModels, policies: Policies) -> None:
        self.models = models
        self.policies = policies
        self.profiles: dict[str, Profile] = {}
        self._days = SnapshotDays()
        self._offset = -1

    def apply(self, purchase: Purchase, offset: int | None = None) -> list[Output]:
        """Apply and learn one purchase (``offset``: its position, default the next)."""
        self._offset = self._offset + 1 if offset is None else offset
        customer = purchase.customer_id
        before = self.profiles.get(customer, Profile(customer_id=customer))
        after, outputs = apply_event(before, purchase, self._offset, self.policies, self.models)
        self.profiles[customer] = after
        state = after.model_state
        snapshot, lesson = state.snapshot(self._offset), state.lesson(self._offset)
        day = to_days(purchase.occurred_at)
        model = self.models.propensity
        older = self._days.due(model, model.clock, model.watermark(day))

        def learn(arrival: Arrival) -> None:
            if lesson is not None:
                self.models.learn(lesson, arrival.snapshot)

        learn_purchases(
            model, [Arrival(customer, self._offset, day, snapshot)], older, self._snapshots, learn
        )
        if snapshot is not None:
            self._days.add(snapshot.day, snapshot.offset, customer)
        return outputs

    def _snapshots(self, customer_id: str) -> Sequence[Snapshot]:
        profile = self.profiles.get(customer_id)
        return profile.model_state.snapshots if profile is not None else ()
