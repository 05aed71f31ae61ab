"""Shared item statistics of recommendations in Redis, each purchase counted exactly once.

Recommendations (:mod:`crmstream.models.recommend`) need what all customers bought
together, not what one partition's customers did, so these statistics live in Redis,
shared by every worker. Items are spread over :data:`BUCKETS` buckets by a hash of their
id; each bucket ``b`` has its own hash tag ``{b<b>}``, so on a Redis Cluster the
statistics spread over up to 64 slots (and so nodes) rather than heating one, while a
batch's update costs one script call per bucket it touches (whatever the number of input
partitions in it) instead of one per item:

* ``crm:items:{b<b>}:top``, a sorted set of the bucket's items scored by their
  forward-decayed basket count (read for an item's count, and for the popular items);
* ``crm:items:{b<b>}:with:<sku>``, a sorted set per item of the items bought with it,
  scored by decayed count and trimmed to the heaviest ``cap``;
* ``crm:items:{b<b>}``, a hash: ``n``, this bucket's part of the total basket weight
  (each basket adds its weight to one bucket, chosen by its event id), and the marks below.

**Exactly once.** A purchase's update is a function of the purchase alone (its items and
time), so whichever worker applies it, after however many crashes, adds the same numbers.
Each bucket's hash keeps, per input partition, the offset of the last event it counted
(``o:<topic>:<partition>``); one Lua script call per bucket adds, per partition, only the
events of higher offsets, in offset order, and moves the marks, atomically. The worker applies
the updates of a batch after its profiles are written, from the batch's events that were
applied (:meth:`ItemStore.learn_batch`): those applied now and the redeliveries of
events applied before, never re-sent copies of an event id. A crash
between the profile write and this step is repaired by the redelivery; a crash in the
middle of it leaves some buckets counted and others not, and the redelivery counts
exactly the others.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from crmstream.models.customer_state import PURCHASE
from crmstream.models.profile import Profile
from crmstream.models.recommend import (
    DEFAULT_PARAMS,
    BasketUpdate,
    ItemView,
    Recommendation,
    RecommendParams,
    basket_update,
    recommend,
)
from crmstream.schemas.inputs import Purchase
from crmstream.streams.profiles import ApplyResult, Delivery
from crmstream.streams.redis_client import LuaScript, connect, run_pipeline

#: One script call: its keys and its arguments.
ScriptCall = tuple[list[str], list[Any]]

#: Item buckets: enough to spread over a cluster's nodes, few enough that a batch of
#: purchases updates each in one call and the popular items are read at once.
BUCKETS = 64

# The update of one bucket, as a Lua function: its keys are KEYS[kb + 1 ..], its arguments
# ARGV[ab + 1 .. ab + n]. KEYS[kb + 1] the bucket's hash (marks, n), KEYS[kb + 2] its items'
# counts (sorted set), KEYS[kb + 3 ..] the neighbours' sorted sets of the items of this
# call. Arguments: the cap of a neighbours' set, then per input partition: its name
# (topic:partition), its number of events, and per event in offset order: offset, the
# increment of n, the number m of items, and per item: its name, the index of its
# neighbours' key among the call's keys (0: none), its increment, the number p of
# neighbours and p neighbour/increment pairs.
_ADD_FUNCTION = """
local function add(kb, ab, n)
  local cap = tonumber(ARGV[ab + 1])
  local total = 0
  local changed = 0
  local touched = {}
  local i = ab + 2
  while i <= ab + n do
    local field = 'o:' .. ARGV[i]
    local events = tonumber(ARGV[i + 1])
    i = i + 2
    local last = tonumber(redis.call('HGET', KEYS[kb + 1], field) or '-1')
    local top = last
    for _ = 1, events do
      local offset = tonumber(ARGV[i])
      local apply = offset > top
      if apply then
        total = total + tonumber(ARGV[i + 1])
        top = offset
      end
      local m = tonumber(ARGV[i + 2])
      i = i + 3
      for _ = 1, m do
        local k = tonumber(ARGV[i + 1])
        local p = tonumber(ARGV[i + 3])
        if apply then
          redis.call('ZINCRBY', KEYS[kb + 2], ARGV[i + 2], ARGV[i])
          for j = i + 4, i + 2 + 2 * p, 2 do
            redis.call('ZINCRBY', KEYS[kb + k], ARGV[j + 1], ARGV[j])
          end
          if p > 0 then
            touched[kb + k] = true
          end
        end
        i = i + 4 + 2 * p
      end
    end
    if top ~= last then
      redis.call('HSET', KEYS[kb + 1], field, top)
      changed = 1
    end
  end
  if total > 0 then
    redis.call('HINCRBYFLOAT', KEYS[kb + 1], 'n', total)
  end
  for key in pairs(touched) do
    if redis.call('ZCARD', KEYS[key]) > cap + math.floor(cap / 2) then
      redis.call('ZREMRANGEBYRANK', KEYS[key], 0, -(cap + 1))
    end
  end
  return changed
end
"""

# One bucket's call: KEYS and ARGV are the bucket's (see _ADD_FUNCTION).
_ADD = _ADD_FUNCTION + "return add(0, 0, #ARGV)\n"
_ADD_SCRIPT = LuaScript(_ADD, packed=True)

# Several buckets' calls in one, for one Redis server (a cluster needs one call per bucket:
# each has its own hash tag). ARGV[1] the number of calls c, then per call the number of
# its keys and of its arguments; then every call's arguments in turn. KEYS: every call's
# keys in turn. Each call runs as it would alone, so the marks are the same.
_ADD_MANY = (
    _ADD_FUNCTION
    + """local calls = tonumber(ARGV[1])
local changed = 0
local kb, ab = 0, 1 + 2 * calls
for c = 1, calls do
  local nk, na = tonumber(ARGV[2 * c]), tonumber(ARGV[2 * c + 1])
  changed = changed + add(kb, ab, na)
  kb, ab = kb + nk, ab + na
end
return changed
"""
)
_ADD_MANY_SCRIPT = LuaScript(_ADD_MANY, packed=True)


def bucket_of(name: str) -> int:
    """The bucket of an item (or of an event id, for the basket total).

    Examples
    --------
    >>> bucket_of("milk") == bucket_of("milk"), 0 <= bucket_of("eggs") < BUCKETS
    (True, True)
    """
    return zlib.crc32(name.encode()) % BUCKETS


def bucket_keys(bucket: int) -> tuple[str, str]:
    """A bucket's hash (marks, total) and its items' counts (one hash tag)."""
    return f"crm:items:{{b{bucket}}}", f"crm:items:{{b{bucket}}}:top"


def neighbours_key(item: str) -> str:
    """The sorted set of the items bought with ``item`` (in its bucket's hash tag).

    Examples
    --------
    >>> neighbours_key("milk") == f"crm:items:{{b{bucket_of('milk')}}}:with:milk"
    True
    """
    return f"crm:items:{{b{bucket_of(item)}}}:with:{item}"


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
        batch_scripts: bool | None = None,
    ) -> None:
        self.redis_url = redis_url
        self._batch_scripts = batch_scripts
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

    @property
    def batched(self) -> bool:
        """Whether a batch's buckets are counted in one script call (on one server, not
        a cluster; ``batch_scripts`` decides when given)."""
        if self._batch_scripts is None:
            self._batch_scripts = not isinstance(self.client, RedisCluster)
        return self._batch_scripts

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
        # Without co-occurrence (co_weight 0) no neighbours are counted, nor read.
        n = self.params.neighbours if self.params.co_weight > 0 else 0
        pipe = self.client.pipeline(transaction=False)
        for item in wanted:
            pipe.zscore(bucket_keys(bucket_of(item))[1], item)
            if n:
                pipe.zrevrange(neighbours_key(item), 0, n - 1, withscores=True)
        if not fresh:
            for bucket in range(BUCKETS):
                counts, top = bucket_keys(bucket)
                pipe.hget(counts, "n")
                pipe.zrevrange(top, 0, self.params.popular - 1, withscores=True)
        replies = await pipe.execute()
        if len(cache) + len(wanted) > self.cached_items:  # forget the older half
            for old in list(cache)[: len(cache) // 2 + len(wanted)]:
                del cache[old]
        expires = now + self.item_ttl
        per = 2 if n else 1  # replies per item
        for index, item in enumerate(wanted):
            count[item] = _number(replies[per * index])
            neighbours[item] = [(x, float(w)) for x, w in replies[per * index + 1]] if n else []
            cache.pop(item, None)
            cache[item] = (expires, count[item], neighbours[item])
        if not fresh:
            rest = replies[per * len(wanted) :]
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

    async def recommend(
        self, profile: Profile, k: int | None = None, now: float | None = None
    ) -> list[Recommendation]:
        """The customer's top-``k`` recommendations at ``now`` (epoch seconds; default: the
        wall clock, or the customer's latest purchase with items if that is later), scored
        from their item state and the shared statistics: what readers show. The worker
        does not score them per purchase unless a rule reads them (see
        :class:`~crmstream.models.profile.Profile`)."""
        state = profile.items
        view = await self.view(state.last_basket)
        at = max(time.time() if now is None else now, state.last or 0.0)
        return recommend(state, view, at, self.params, k)

    async def learn_batch(self, result: ApplyResult) -> int:
        """Count the purchases of a batch that were applied to their customers (see
        :meth:`batch_calls`); returns how many script calls were sent."""
        return await self.send(self.batch_calls(result))

    def batch_calls(self, result: ApplyResult) -> list[ScriptCall]:
        """The script calls that count the purchases of a batch that were applied to their
        customers: those applied now, and redeliveries of purchases applied before (whose
        lessons the customer still holds; one that a checkpoint of the models already
        includes was counted before that checkpoint, and the marks skip it). A redelivered
        re-sent copy of an event id was never applied, and is not counted. Built at once,
        so the worker can send them while the models learn (:meth:`send`)."""
        applied = []
        for delivery in result.learnable:
            if not isinstance(delivery.record, Purchase) or not delivery.record.items:
                continue
            profile = result.states.get(delivery.customer_id)
            if profile is not None and profile.model_state.applied(PURCHASE, delivery.offset):
                applied.append(delivery)
        return self.calls(applied)

    async def learn(self, deliveries: Sequence[Delivery[Any]]) -> int:
        """Count the purchases with items among ``deliveries`` (in offset order per
        partition), each exactly once; returns how many script calls were sent (one per
        bucket touched, whatever the number of input partitions). Every delivery is taken
        as applied: see :meth:`batch_calls`."""
        return await self.send(self.calls(deliveries))

    async def send(self, calls: Sequence[ScriptCall]) -> int:
        """Send script calls of :meth:`calls` in one round trip (safe to repeat: each
        bucket's marks skip what it counted); returns how many buckets' calls were sent.

        On one Redis server they go as one script call (:attr:`batched`): a batch of 50
        events touched about 45 buckets, 45 of the 73 commands it sent to Redis.
        """
        if not calls:
            return 0
        script, queued = _ADD_SCRIPT, calls
        if self.batched and len(calls) > 1:
            args: list[Any] = [len(calls)]
            for call_keys, call_args in calls:
                args.extend((len(call_keys), len(call_args)))
            for _, call_args in calls:
                args.extend(call_args)
            keys = [key for call_keys, _ in calls for key in call_keys]
            script, queued = _ADD_MANY_SCRIPT, [(keys, args)]

        def build(pipe: Any) -> None:
            for keys, args in queued:
                script.queue(pipe, keys, args)

        await run_pipeline(self.client, build, [script])
        return len(calls)

    def calls(self, deliveries: Sequence[Delivery[Any]]) -> list[ScriptCall]:
        """The script calls (keys, arguments) that count the purchases with items among
        ``deliveries``: one per bucket touched."""
        # bucket -> source -> per event: [offset, increment of n, [item entries]], where
        # an entry is (item, weight, neighbours); the neighbours' keys are numbered later
        calls: dict[int, dict[str, list[list[Any]]]] = {}

        def event(bucket: int, source: str, offset: int) -> list[Any]:
            events = calls.setdefault(bucket, {}).setdefault(source, [])
            if not events or events[-1][0] != offset:
                events.append([offset, 0.0, []])
            return events[-1]

        for delivery in deliveries:
            purchase = delivery.record
            if not isinstance(purchase, Purchase) or not purchase.items:
                continue
            update = self.update_of(purchase)
            source, offset, w = delivery.source, delivery.offset, update.weight
            head = update.items[: update.paired]
            for position, item in enumerate(update.items):
                paired = [b for b in head if b != item] if position < update.paired else []
                event(bucket_of(item), source, offset)[2].append((item, w, paired))
            event(bucket_of(delivery.event_id), source, offset)[1] += w
        cap = self.params.cap
        out: list[ScriptCall] = []
        for bucket, sources in calls.items():
            keys = list(bucket_keys(bucket))
            numbers: dict[str, int] = {}
            args: list[Any] = [cap]
            for source, events in sources.items():
                args.extend((source, len(events)))
                for offset, n, entries in events:
                    args.extend((offset, repr(n), len(entries)))
                    for item, w, paired in entries:
                        if paired:
                            k = numbers.get(item)
                            if k is None:
                                keys.append(neighbours_key(item))
                                k = numbers[item] = len(keys)
                        else:
                            k = 0
                        weight = repr(w)
                        args.extend((item, k, weight, len(paired)))
                        for other in paired:
                            args.extend((other, weight))
            out.append((keys, args))
        return out

    def update_of(self, purchase: Purchase) -> BasketUpdate:
        """The shared statistics' update of a purchase (its items, at its time)."""
        items = [item.sku for item in purchase.items or ()]
        return basket_update(items, purchase.occurred_at.timestamp(), self.params)
