"""Delayed propensity labels falling due: an incremental, per-partition index in Redis.

Every purchase makes a propensity snapshot (kept with the customer, see
:mod:`crmstream.models.customer_state`) whose labels fall due over the following months:
one per period, and its horizon. The index is a sorted set per partition,
``crm:due:<partition>``, of ``<customer id>|<offset>`` members scored by the snapshot's
day, so the snapshots whose labels fall due while the event-time clock moves from ``a``
to ``b`` are a handful of range queries (one per period), however many customers there
are. Adding a member is idempotent, so a replay may add it again; members whose labels
were all learned before the last checkpoint are removed when a checkpoint is written.

Most of a snapshot's labels teach nothing once the customer's next purchase is known: a
period after the one the purchase fell in, or the horizon when the purchase fell within
it. When that purchase arrives (not late: no clock had passed its day), the snapshot's
member goes into a second sorted set, ``crm:due:<partition>:done``, scored by the last
time one of its labels still teaches (:meth:`PropensityModel.last_due`); its labels due
later are then dropped when found, instead of reading the customer's state to learn that
they teach nothing. Such a label is always settled after that purchase arrived (it falls
due after the purchase's day, which no clock had passed), so dropping it changes nothing
a replay learns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import redis.asyncio as aioredis

from crmstream.models.propensity import Due, PropensityModel


def due_key(partition: int) -> str:
    """Redis key of partition ``partition``'s index of snapshot days.

    Examples
    --------
    >>> due_key(2)
    'crm:due:2'
    """
    return f"crm:due:{partition}"


def done_key(partition: int) -> str:
    """Redis key of partition ``partition``'s snapshots whose next purchase arrived, scored
    by the last time one of their labels teaches.

    Examples
    --------
    >>> done_key(2)
    'crm:due:2:done'
    """
    return f"crm:due:{partition}:done"


def member(customer_id: str, offset: int) -> str:
    """The index member of a customer's snapshot (customer ids never contain ``|``)."""
    return f"{customer_id}|{offset}"


class DueIndex:
    """Adds snapshots to the per-partition indexes and finds the labels falling due."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def add_and_find(
        self,
        added: dict[int, Sequence[tuple[str, int, float]]],
        ranges: dict[int, tuple[PropensityModel, float, float]],
        settled: dict[int, Sequence[tuple[str, int, float]]] | None = None,
    ) -> dict[int, list[Due]]:
        """Add snapshots ``(customer id, offset, day)`` per partition, then find, per
        partition, the labels of indexed snapshots that fall due while its model's clock
        moves over ``(after, upto]``, without those that teach nothing because the
        snapshot's next purchase arrived in an earlier batch; then record ``settled``
        snapshots ``(customer id, offset, last due)`` whose next purchase arrived in this
        batch. One round trip, two when labels fall due."""
        pipe = self.client.pipeline(transaction=False)
        for partition, snapshots in added.items():
            if snapshots:
                pipe.zadd(due_key(partition), {member(c, o): day for c, o, day in snapshots})
        queries: list[tuple[int, int]] = []
        for partition, (model, after, upto) in ranges.items():
            for period, lo, hi in model.ranges(after, upto):
                pipe.zrangebyscore(due_key(partition), f"({lo}", hi, withscores=True)
                queries.append((partition, period))
        replies = await pipe.execute()
        hits: dict[int, list[tuple[str, int, float]]] = {p: [] for p in ranges}
        for (partition, period), found in zip(
            queries, replies[-len(queries) :] if queries else [], strict=True
        ):
            for raw, day in found:
                text = raw.decode() if isinstance(raw, bytes) else raw
                hits[partition].append((text, period, day))
        # Which snapshots' next purchase arrived in an earlier batch (looked up before this
        # batch's are recorded: within the batch, a label may fall due before it arrives).
        pipe = self.client.pipeline(transaction=False)
        looked_up = {
            p: sorted({text for text, _, _ in items}) for p, items in hits.items() if items
        }
        for partition, names in looked_up.items():
            pipe.zmscore(done_key(partition), names)
        for partition, snapshots in (settled or {}).items():
            if snapshots:
                pipe.zadd(done_key(partition), {member(c, o): due for c, o, due in snapshots})
        replies = await pipe.execute() if len(pipe) else []
        found_due: dict[int, list[Due]] = {p: [] for p in ranges}
        for (partition, names), scores in zip(
            looked_up.items(), replies[: len(looked_up)], strict=True
        ):
            last = {n: score for n, score in zip(names, scores, strict=True) if score is not None}
            model = ranges[partition][0]
            for text, period, day in hits[partition]:
                customer_id, _, offset = text.rpartition("|")
                due = model.due_at(period, customer_id, int(offset), day)
                if due.at > last.get(text, math.inf):
                    continue  # the next purchase arrived before: teaches nothing
                found_due[partition].append(due)
        return found_due

    async def forget_before(self, partition: int, day: float) -> None:
        """Remove the snapshots of days before ``day`` (their labels are all learned), and
        the settled ones whose last label fell due before it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(due_key(partition), "-inf", f"({day}")
        pipe.zremrangebyscore(done_key(partition), "-inf", f"({day}")
        await pipe.execute()
