"""Shared item statistics of recommendations in Redis, each purchase counted exactly once.

Recommendations (:mod:`crmstream.models.recommend`) need what all customers bought
together, not what one partition's customers did, so these statistics live in Redis,
shared by every worker:

* per item, a hash ``crm:item:{<sku>}`` (``n``: its forward-decayed basket count) and a
  sorted set ``crm:item:{<sku>}:with`` of the items bought with it, scored by decayed
  count and trimmed to the heaviest ``cap``;
* :data:`SHARDS` popularity shards, a sorted set ``crm:items:{pop<s>}:top`` of the items
  whose name hashes to shard ``s``, and a hash ``crm:items:{pop<s>}`` (``n``: its part of
  the total basket weight).

Each item, and each shard, has its own hash tag, so on a Redis Cluster the statistics
spread over the slots like the items themselves rather than heating one node.

**Exactly once.** A purchase's update is a function of the purchase alone (its items and
time), so whichever worker applies it, after however many crashes, adds the same numbers.
Every hash above also keeps, per input partition, the offset of the last event it counted
(``o:<topic>:<partition>``); one Lua script per key pair adds only the events of higher
offsets, in offset order, and moves the mark, atomically. The worker applies the updates
of a batch after its profiles are written, from the batch's *learnable* events (see
:class:`~crmstream.streams.profiles.ApplyResult`): those applied now and the redeliveries
of events applied before, never re-sent copies of an event id. A crash between the profile
write and this step is repaired by the redelivery; a crash in the middle of it leaves some
keys counted and others not, and the redelivery counts exactly the others.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis

from crmstream.models.recommend import (
    DEFAULT_PARAMS,
    BasketUpdate,
    ItemView,
    RecommendParams,
    basket_update,
)
from crmstream.schemas.inputs import Purchase
from crmstream.streams.profiles import Delivery
from crmstream.streams.redis_client import LuaScript, connect, run_pipeline

#: Popularity shards: enough to spread over a cluster's nodes, few enough to read at once.
SHARDS = 16

# KEYS[1] the counting hash (offsets, n), KEYS[2] the sorted set. ARGV[1] the source
# (topic:partition), ARGV[2] the cap of the sorted set (0: none), then per event in offset
# order: offset, the increment of n, the number m of members, m member/increment pairs.
_ADD = """
local field = 'o:' .. ARGV[1]
local last = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
local top = last
local i = 3
local total = 0
while i <= #ARGV do
  local offset = tonumber(ARGV[i])
  local m = tonumber(ARGV[i + 2])
  if offset > top then
    total = total + tonumber(ARGV[i + 1])
    for j = i + 3, i + 1 + 2 * m, 2 do
      redis.call('ZINCRBY', KEYS[2], ARGV[j + 1], ARGV[j])
    end
    top = offset
  end
  i = i + 3 + 2 * m
end
if top == last then
  return 0
end
if total > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'n', total)
end
redis.call('HSET', KEYS[1], field, top)
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('ZCARD', KEYS[2]) > cap + math.floor(cap / 2) then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(cap + 1))
end
return 1
"""
_ADD_SCRIPT = LuaScript(_ADD)


def item_keys(item: str) -> tuple[str, str]:
    """The counting hash and the neighbours' sorted set of an item (one hash tag)."""
    return f"crm:item:{{{item}}}", f"crm:item:{{{item}}}:with"


def shard_of(name: str) -> int:
    """The popularity shard of an item (or of an event id, for the basket total).

    Examples
    --------
    >>> shard_of("milk") == shard_of("milk"), 0 <= shard_of("eggs") < SHARDS
    (True, True)
    """
    return zlib.crc32(name.encode()) % SHARDS


def shard_keys(shard: int) -> tuple[str, str]:
    """The counting hash and the popular items' sorted set of a shard (one hash tag)."""
    return f"crm:items:{{pop{shard}}}", f"crm:items:{{pop{shard}}}:top"


def _number(value: Any) -> float:
    return float(value) if value is not None else 0.0


class ItemStore:
    """Reads and updates the shared item statistics; the client is created on first use.

    ``popular_ttl`` seconds is how long a worker reuses the popular items it read, and
    ``item_ttl`` an item's count and neighbours (they move slowly: a grocery's popular
    items are in most batches, and reading them for each would cost more than the rest of
    the recommendation). At most ``cached_items`` items are kept.
    """

    def __init__(
        self,
        redis_url: str,
        params: RecommendParams = DEFAULT_PARAMS,
        popular_ttl: float = 5.0,
        item_ttl: float = 30.0,
        cached_items: int = 50_000,
    ) -> None:
        self.redis_url = redis_url
        self.params = params
        self.popular_ttl = popular_ttl
        self.item_ttl = item_ttl
        self.cached_items = cached_items
        self._client: aioredis.Redis | None = None
        self._popular: tuple[float, float, list[tuple[str, float]]] | None = None
        self._items: dict[str, tuple[float, float, list[tuple[str, float]]]] = {}

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = connect(self.redis_url, decode_responses=True)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def view(self, items: Iterable[str]) -> ItemView:
        """What scoring reads for baskets of ``items``: their counts and top neighbours,
        the total basket weight and the popular items (one pipelined round trip)."""
        now = time.monotonic()
        cache = self._items
        count, neighbours = {}, {}
        wanted = []
        for item in sorted(set(items)):
            cached = cache.get(item)
            if cached is not None and now < cached[0]:
                count[item], neighbours[item] = cached[1], cached[2]
            else:
                wanted.append(item)
        fresh = self._popular is not None and now < self._popular[0]
        if not wanted and fresh:
            assert self._popular is not None
            return ItemView(
                total=self._popular[1], popular=self._popular[2], count=count, neighbours=neighbours
            )
        n = self.params.neighbours
        pipe = self.client.pipeline(transaction=False)
        for item in wanted:
            counts, together = item_keys(item)
            pipe.hget(counts, "n")
            pipe.zrevrange(together, 0, n - 1, withscores=True)
        if not fresh:
            for shard in range(SHARDS):
                counts, top = shard_keys(shard)
                pipe.hget(counts, "n")
                pipe.zrevrange(top, 0, self.params.popular - 1, withscores=True)
        replies = await pipe.execute()
        if len(cache) + len(wanted) > self.cached_items:  # forget the older half
            for old in list(cache)[: len(cache) // 2 + len(wanted)]:
                del cache[old]
        expires = now + self.item_ttl
        for index, item in enumerate(wanted):
            count[item] = _number(replies[2 * index])
            neighbours[item] = [(x, float(w)) for x, w in replies[2 * index + 1]]
            cache.pop(item, None)
            cache[item] = (expires, count[item], neighbours[item])
        if not fresh:
            rest = replies[2 * len(wanted) :]
            total = sum(_number(x) for x in rest[::2])
            merged = [(x, float(w)) for pairs in rest[1::2] for x, w in pairs]
            merged.sort(key=lambda kv: (-kv[1], kv[0]))
            self._popular = (
                now + self.popular_ttl,
                total,
                merged[: self.params.popular],
            )
        assert self._popular is not None
        return ItemView(
            total=self._popular[1], popular=self._popular[2], count=count, neighbours=neighbours
        )

    async def learn(self, deliveries: Sequence[Delivery[Any]]) -> int:
        """Count the purchases with items among ``deliveries`` (in offset order per
        partition), each exactly once; returns how many script calls were sent."""
        # (key pair, source) -> per event: offset, increment of n, member increments
        calls: dict[tuple[tuple[str, str], str], list[tuple[int, float, dict[str, float]]]] = {}

        def add(keys: tuple[str, str], source: str, offset: int, n: float, members: Any) -> None:
            events = calls.setdefault((keys, source), [])
            if events and events[-1][0] == offset:
                _, before, merged = events[-1]
                for member, value in members:
                    merged[member] = merged.get(member, 0.0) + value
                events[-1] = (offset, before + n, merged)
            else:
                events.append((offset, n, dict(members)))

        for delivery in deliveries:
            purchase = delivery.record
            if not isinstance(purchase, Purchase) or not purchase.items:
                continue
            update = self.update_of(purchase)
            source, offset, w = delivery.source, delivery.offset, update.weight
            head = update.items[: update.paired]
            for position, item in enumerate(update.items):
                pairs = [(b, w) for b in head if b != item] if position < update.paired else []
                add(item_keys(item), source, offset, w, pairs)
                add(shard_keys(shard_of(item)), source, offset, 0.0, [(item, w)])
            add(shard_keys(shard_of(delivery.event_id)), source, offset, w, [])
        if not calls:
            return 0
        cap = self.params.cap

        def build(pipe: Any) -> None:
            for ((counts, members), source), events in calls.items():
                args: list[Any] = [source, cap if members.endswith(":with") else 0]
                for offset, n, increments in events:
                    args.extend((offset, repr(n), len(increments)))
                    for member, value in increments.items():
                        args.extend((member, repr(value)))
                _ADD_SCRIPT.queue(pipe, [counts, members], args)

        await run_pipeline(self.client, build, [_ADD_SCRIPT])
        return len(calls)

    def update_of(self, purchase: Purchase) -> BasketUpdate:
        """The shared statistics' update of a purchase (its items, at its time)."""
        items = [item.sku for item in purchase.items or ()]
        return basket_update(items, purchase.occurred_at.timestamp(), self.params)
