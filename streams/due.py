"""Delayed propensity labels falling due: an incremental, per-partition index in Redis.

Every purchase makes a propensity snapshot (kept with the customer, see
:mod:`crmstream.models.customer_state`) whose labels fall due over the following months:
one per period, and its horizon. The index is a sorted set per partition,
``crm:due:<partition>``, of ``<customer id>|<offset>`` members scored by the snapshot's
day, so the snapshots whose labels fall due while the event-time clock moves from ``a``
to ``b`` are a handful of range queries (one per period), however many customers there
are. Adding a member is idempotent, so a replay may add it again; members whose labels
were all learned before the last checkpoint are removed when a checkpoint is written.
"""

from __future__ import annotations

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
    ) -> dict[int, list[Due]]:
        """Add snapshots ``(customer id, offset, day)`` per partition, then find, per
        partition, the labels of indexed snapshots that fall due while its model's clock
        moves over ``(after, upto]`` (one round trip)."""
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
        found: dict[int, list[Due]] = {p: [] for p in ranges}
        for (partition, period), hits in zip(
            queries, replies[-len(queries) :] if queries else [], strict=True
        ):
            model = ranges[partition][0]
            for raw, day in hits:
                text = raw.decode() if isinstance(raw, bytes) else raw
                customer_id, _, offset = text.rpartition("|")
                found[partition].append(model.due_at(period, customer_id, int(offset), day))
        return found

    async def forget_before(self, partition: int, day: float) -> None:
        """Remove the snapshots of days before ``day`` (their labels are all learned)."""
        await self.client.zremrangebyscore(due_key(partition), "-inf", f"({day}")
