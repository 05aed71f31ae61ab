"""Delayed propensity labels falling due: an incremental, per-partition index in Redis.

Every purchase makes a propensity snapshot (kept with the customer, see
:mod:`crmstream.models.customer_state`) whose labels fall due over the following months:
one per period, and its horizon. The index is a sorted set per partition,
``crm:due:<partition>``, of ``<customer id>|<offset>`` members scored by the snapshot's
day, so the snapshots whose labels fall due while the event-time clock moves from ``a``
to ``b`` are a handful of range queries (one per period, run by one script call per
partition with the batch's new snapshots), however many customers there are. Adding a
member is idempotent, so a replay may add it again; members whose labels were all learned
before the last checkpoint are removed when a checkpoint is written.

When a customer buys again, the worker writes the pair of snapshots the labels of the
earlier one need, that snapshot and the one of the purchase that followed it, into the
partition's hash ``crm:due:<partition>:pair`` (member as above), with the time after
which none of the earlier snapshot's labels teaches (:meth:`PropensityModel.last_due`) in
the sorted set ``crm:due:<partition>:pairs``, by which checkpoints forget them. A label
falling due is then settled from its pair, without reading the customer (most labels are
of snapshots followed by a purchase: a period after the one the purchase fell in teaches
nothing, the one it fell in is positive); and once the models have learned the later
purchase (so the pair is stored), the customer's own state forgets the earlier snapshot
(:func:`~crmstream.models.customer_state.trim`): a customer keeps their latest snapshot,
not one per purchase of the last months, however often they buy. A replay after a crash
settles from the same pairs what the first pass did: a pair is written before the offset
of its purchase moves, and holds what the customer's state held.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from crmstream.models.propensity import Due, PropensityModel, Snapshot
from crmstream.streams.redis_client import LuaScript, run_pipeline

#: Add a partition's new snapshots to its index, then find the members of each range of
#: snapshot days: one call instead of a command per period and partition (thirteen with
#: the default twelve periods), which cost the worker more than the batch's other work
#: when batches are small. KEYS[1]: the index; ARGV[1]: how many snapshots, then that
#: many (day, member), then (lo, hi) bounds. Replies a list of member, day, ... per range.
_ADD_AND_FIND = LuaScript(
    """
local key, n = KEYS[1], tonumber(ARGV[1])
local i = 2
while n > 0 do
  local take = math.min(n, 500)
  local args = {}
  for j = 1, 2 * take do args[j] = ARGV[i + j - 1] end
  redis.call('ZADD', key, unpack(args))
  i = i + 2 * take
  n = n - take
end
local out = {}
while i < #ARGV do
  out[#out + 1] = redis.call('ZRANGEBYSCORE', key, ARGV[i], ARGV[i + 1], 'WITHSCORES')
  i = i + 2
end
return out
""",
    packed=True,
)


def due_key(partition: int) -> str:
    """Redis key of partition ``partition``'s index of snapshot days.

    Examples
    --------
    >>> due_key(2)
    'crm:due:2'
    """
    return f"crm:due:{partition}"


def done_key(partition: int) -> str:
    """Redis key of partition ``partition``'s snapshots whose next purchase arrived, as
    versions before the pairs (:func:`pair_key`) recorded them: removed at checkpoints.

    Examples
    --------
    >>> done_key(2)
    'crm:due:2:done'
    """
    return f"crm:due:{partition}:done"


def pairs_key(partition: int) -> str:
    """Redis key of partition ``partition``'s snapshot pairs, scored by the last time one of
    the earlier snapshot's labels teaches (the pairs themselves are in :func:`pair_key`).

    Examples
    --------
    >>> pairs_key(2)
    'crm:due:2:pairs'
    """
    return f"crm:due:{partition}:pairs"


def pair_key(partition: int) -> str:
    """Redis key of partition ``partition``'s hash of snapshot pairs: per member (the
    earlier snapshot's), the earlier snapshot and the one of the purchase that followed.

    Examples
    --------
    >>> pair_key(2)
    'crm:due:2:pair'
    """
    return f"crm:due:{partition}:pair"


#: A snapshot and the one of the customer's next purchase: what settles its labels.
Pair = tuple[Snapshot, Snapshot]
_encode_pair = msgspec.json.Encoder().encode
_decode_pair = msgspec.json.Decoder(tuple[Snapshot, Snapshot]).decode


class Found(msgspec.Struct):
    """What :meth:`DueIndex.add_and_find` found: per partition the labels falling due, and
    the snapshot pairs of those whose snapshot was followed by a purchase, by member."""

    due: dict[int, list[Due]]
    pairs: dict[str, Pair]


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
        pairs: dict[int, Sequence[tuple[str, Pair, float]]] | None = None,
    ) -> Found:
        """Add snapshots ``(customer id, offset, day)`` per partition, then find, per
        partition, the labels of indexed snapshots that fall due while its model's clock
        moves over ``(after, upto]``, and the stored pairs of their snapshots; then store
        the ``pairs`` ``(customer id, (snapshot, next), last due)`` of this batch's
        purchases. One round trip with a script call per partition, two when labels fall
        due or pairs are stored."""
        calls: list[tuple[int, list[int], list[object]]] = []  # partition, periods, args
        for partition in sorted(added.keys() | ranges.keys()):
            snapshots = added.get(partition, ())
            args: list[object] = [len(snapshots)]
            for customer_id, offset, day in snapshots:
                args += (day, member(customer_id, offset))
            periods = []
            if partition in ranges:
                model, after, upto = ranges[partition]
                for period, lo, hi in model.ranges(after, upto):
                    args += (f"({lo}", hi)
                    periods.append(period)
            if snapshots or periods:
                calls.append((partition, periods, args))

        def build(pipe: object) -> None:
            for partition, _, args in calls:
                _ADD_AND_FIND.queue(pipe, [due_key(partition)], args)

        replies = await run_pipeline(self.client, build, (_ADD_AND_FIND,)) if calls else []
        hits: dict[int, list[tuple[str, int, float]]] = {p: [] for p in ranges}
        for (partition, periods, _), reply in zip(calls, replies, strict=True):
            for period, found in zip(periods, reply, strict=True):
                for n in range(0, len(found), 2):
                    raw = found[n]
                    text = raw.decode() if isinstance(raw, bytes) else raw
                    hits[partition].append((text, period, float(found[n + 1])))
        # The pairs of the found snapshots (those of this batch's purchases are stored after:
        # the batch has their customers' states).
        pipe = self.client.pipeline(transaction=False)
        looked_up = {
            p: sorted({text for text, _, _ in items}) for p, items in hits.items() if items
        }
        for partition, names in looked_up.items():
            pipe.hmget(pair_key(partition), names)
        for partition, made in (pairs or {}).items():
            if made:
                named = {member(c, pair[0].offset): (pair, due) for c, pair, due in made}
                pipe.hset(
                    pair_key(partition),
                    mapping={n: _encode_pair(pair) for n, (pair, _) in named.items()},
                )
                pipe.zadd(pairs_key(partition), {n: due for n, (_, due) in named.items()})
        replies = await pipe.execute() if len(pipe) else []
        found = Found({p: [] for p in ranges}, {})
        for partition, items in hits.items():
            model = ranges[partition][0]
            for text, period, day in items:
                customer_id, _, offset = text.rpartition("|")
                found.due[partition].append(model.due_at(period, customer_id, int(offset), day))
        for (_, names), stored in zip(looked_up.items(), replies[: len(looked_up)], strict=True):
            for name, raw in zip(names, stored, strict=True):
                if raw is not None:
                    found.pairs[name] = _decode_pair(raw)
        return found

    async def forget_before(self, partition: int, day: float) -> None:
        """Remove the snapshots of days before ``day`` (their labels are all learned), and
        the pairs whose last label fell due before it."""
        old = await self.client.zrangebyscore(pairs_key(partition), "-inf", f"({day}")
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(due_key(partition), "-inf", f"({day}")
        pipe.delete(done_key(partition))
        if old:
            pipe.hdel(pair_key(partition), *old)
            pipe.zrem(pairs_key(partition), *old)
        await pipe.execute()
