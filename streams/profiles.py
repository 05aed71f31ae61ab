"""Customer profiles in Redis, applied exactly once per event.

Kafka delivers at least once, so the same event can arrive again (a redelivery after a
crash or rebalance has the same offset; a producer retry or resend has the same
``event_id``). The store turns that into an exactly-once *effect*:

* Each customer has a hash ``crm:{<id>}:profile`` holding the profile, a version ``_v``,
  and the last applied offset per source partition (``o:<topic>:<partition>``); and a
  sorted set ``crm:{<id>}:seen`` of recently applied event ids (scored by time, trimmed
  to the dedupe window). Both keys share a hash tag, so one Lua script can touch them
  atomically, on a single node or a cluster.
* A batch is applied in three steps: one pipelined read of every customer in it; a pure
  fold in Python that skips events at or below the stored offset or already seen; one
  pipelined compare-and-set script per customer that writes only if the version is
  still the one that was read. A customer whose version moved (another worker got there
  first, e.g. during a rebalance) is read and folded again.
* A customer's recent history (messages, alerts, tier changes; what the support page
  shows) is kept in three lists, ``crm:{<id>}:history:<kind>``, outside the profile: the
  commit script appends what a batch added and trims each list to its count. The worker
  never reads them (a busy customer's history would otherwise be parsed and rewritten
  with every event); readers (:meth:`ProfileStore.get`) put them back into the profile,
  without the entries older than the history's age limit before the customer's newest
  event.
* Outputs of a fold are handed to ``before_commit`` and must be durable before the
  profile commits: a crash in between re-sends them on redelivery, with the same
  deterministic ids, rather than losing them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crmstream.models.customer_state import (
    CHAT,
    FEEDBACK,
    PURCHASE,
    CustomerModelState,
    PurchaseLesson,
)
from crmstream.models.history import AlertEntry, History, HistoryLimits, MessageEntry, TierEntry
from crmstream.models.profile import Profile
from crmstream.models.recommend import CustomerItems
from crmstream.schemas.inputs import Purchase
from crmstream.streams.redis_client import LuaScript, connect, run_pipeline
from crmstream.streams.sink import Output

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

CUSTOMERS_KEY = "crm:customers"

#: A batch whose customers keep changing under it this many times in a row is an error:
#: legitimate contention (two workers during a rebalance) settles in a round or two.
MAX_CONFLICT_ROUNDS = 20

# Each script's work for one customer is a Lua function of where the customer's keys and
# arguments start (``kb``, ``ab``: the index before the first), so that the same body runs
# once per call (a cluster, where each customer's keys are in a slot of their own) or once
# per customer of a whole batch in one call (one server: see ProfileStore).

# The read of one customer: the profile hash and which of the batch's event ids were applied
# recently. KEYS[kb+1] profile hash, KEYS[kb+2] seen-ids sorted set, KEYS[kb+3] when given
# (nkeys 3) the customer's item state (read for purchases with items only); ARGV[ab+1..ab+n]
# the event ids.
_READ_ONE = """
local function read(kb, nkeys, ab, n)
  local ids = {}
  for j = 1, n do
    ids[j] = ARGV[ab + j]
  end
  local reply = {
    redis.call('HGETALL', KEYS[kb + 1]),
    redis.call('ZMSCORE', KEYS[kb + 2], unpack(ids)),
  }
  if nkeys > 2 then
    reply[3] = redis.call('GET', KEYS[kb + 3])
  end
  return reply
end
"""
_READ = _READ_ONE + "return read(0, #KEYS, 0, #ARGV)\n"


def _for_each_customer(call: str) -> str:
    """The body of a script over many customers: per customer in ARGV, the number of its
    keys and of its arguments, then the arguments; ``call`` runs one customer's work (with
    ``kb``, ``nkeys``, ``a + 1`` and ``nargs``) and the reply is the list of its replies."""
    return f"""
local out, kb, a = {{}}, 0, 1
while a <= #ARGV do
  local nkeys, nargs = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  out[#out + 1] = {call}
  kb = kb + nkeys
  a = a + 2 + nargs
end
return out
"""


# Many customers: per customer their event ids (see _for_each_customer).
_READ_MANY = _READ_ONE + _for_each_customer("read(kb, nkeys, a + 1, nargs)")

# The compare-and-set of one customer. KEYS[kb+1] profile hash, KEYS[kb+2] seen-ids sorted
# set, KEYS[kb+3..kb+5] the customer's pending lessons and marks of purchases, chats and
# feedback (sorted sets scored by offset), KEYS[kb+6..kb+8] the history lists (messages,
# alerts, tier changes), KEYS[kb+9] when given (nkeys 9) the customer's item state.
# From ARGV[ab+1]: the expected version, now (ms), the dedupe window (ms), the number of
# event ids n and the n ids, then the number of profile fields m and m field/value pairs,
# then per lesson set: the floor (members at or below it are removed; empty: none), the
# number of new members k, and k score/member pairs; then per history list: the count it
# keeps (0: none), the number of new entries k, and k entries; then, with the item state's
# key, the state.
_COMMIT_ONE = """
local function commit(kb, nkeys, ab)
  local profile = KEYS[kb + 1]
  local version = tonumber(redis.call('HGET', profile, '_v') or '0')
  if version ~= tonumber(ARGV[ab + 1]) then
    return 0
  end
  local now = tonumber(ARGV[ab + 2])
  local window = tonumber(ARGV[ab + 3])
  local n = tonumber(ARGV[ab + 4])
  if n > 0 then
    local seen = KEYS[kb + 2]
    for i = ab + 5, ab + 4 + n do
      redis.call('ZADD', seen, now, ARGV[i])
    end
    redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - window)
    redis.call('PEXPIRE', seen, window)
  end
  local i = ab + 5 + n
  local m = tonumber(ARGV[i])
  local fields = {'_v', tostring(version + 1)}
  for j = i + 1, i + 2 * m do
    fields[#fields + 1] = ARGV[j]
  end
  redis.call('HSET', profile, unpack(fields))
  i = i + 2 * m + 1
  for key = kb + 3, kb + 5 do
    local floor = ARGV[i]
    local k = tonumber(ARGV[i + 1])
    i = i + 2
    if k > 0 then
      local members = {}
      for j = i, i + 2 * k - 1 do
        members[#members + 1] = ARGV[j]
      end
      redis.call('ZADD', KEYS[key], unpack(members))
      i = i + 2 * k
    end
    if floor ~= '' then
      redis.call('ZREMRANGEBYSCORE', KEYS[key], '-inf', floor)
    end
  end
  for key = kb + 6, kb + 8 do
    local keep = tonumber(ARGV[i])
    local k = tonumber(ARGV[i + 1])
    if k > 0 then
      redis.call('RPUSH', KEYS[key], unpack(ARGV, i + 2, i + 1 + k))
      if keep > 0 then
        redis.call('LTRIM', KEYS[key], -keep, -1)
      else
        redis.call('DEL', KEYS[key])
      end
    end
    i = i + 2 + k
  end
  if nkeys > 8 then
    redis.call('SET', KEYS[kb + 9], ARGV[i])
  end
  return 1
end
"""
_COMMIT = _COMMIT_ONE + "return commit(0, #KEYS, 0)\n"
# Many customers: per customer their arguments (see _for_each_customer); the reply is the
# list of the customers' 1 (written) or 0 (their version moved: read and fold again).
_COMMIT_MANY = _COMMIT_ONE + _for_each_customer("commit(kb, nkeys, a + 1)")

# Their arguments are sent packed (see crmstream.streams.redis_client): a batch's commit
# takes a few dozen per customer.
_READ_SCRIPT = LuaScript(_READ, packed=True)
_COMMIT_SCRIPT = LuaScript(_COMMIT, packed=True)
_READ_MANY_SCRIPT = LuaScript(_READ_MANY, packed=True)
_COMMIT_MANY_SCRIPT = LuaScript(_COMMIT_MANY, packed=True)
_SCRIPTS = (_READ_SCRIPT, _COMMIT_SCRIPT, _READ_MANY_SCRIPT, _COMMIT_MANY_SCRIPT)

#: The most customers one script call reads or writes on a single server: a call runs
#: atomically, so this bounds how long it holds the server (about a millisecond).
CUSTOMERS_PER_CALL = 128

#: Errors that mean "Redis cannot be reached right now": retried with backoff, never
#: skipped. On a cluster that includes a master being restarted or failed over
#: (``CLUSTERDOWN``, ``TRYAGAIN``), not only a lost connection.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
)


async def retry_redis(
    what: str,
    call: Callable[[], Awaitable[T]],
    retry_delay: float = 0.2,
    max_retry_delay: float = 5.0,
) -> T:
    """Run ``call`` until Redis answers, backing off from ``retry_delay`` to
    ``max_retry_delay`` seconds; ``call`` must be safe to repeat after a failure."""
    delay = retry_delay
    while True:
        try:
            return await call()
        except UNAVAILABLE as exc:
            log.warning("redis unavailable while %s (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_delay)


def profile_key(customer_id: str) -> str:
    """Redis key of a customer's profile hash."""
    return f"crm:{{{customer_id}}}:profile"


#: The kinds of events whose pending lessons (purchases) or marks (chats, feedback) a
#: customer keeps until a checkpoint of the models includes them.
LESSON_KINDS = (PURCHASE, CHAT, FEEDBACK)
_encode_lesson = msgspec.json.Encoder().encode
_decode_lesson = msgspec.json.Decoder(PurchaseLesson).decode


def lesson_keys(customer_id: str) -> list[str]:
    """Redis keys of a customer's pending lessons and marks, one sorted set per kind of
    event, scored by offset: written with the profile, read only when events are replayed,
    so a busy customer's profile does not grow between checkpoints."""
    return [f"crm:{{{customer_id}}}:learn:{kind}" for kind in LESSON_KINDS]


_NO_ITEMS = CustomerItems()
_encode_items = msgspec.json.Encoder().encode
_decode_items = msgspec.json.Decoder(CustomerItems).decode

#: The history limits of a store built without any (those of the default settings).
DEFAULT_HISTORY = HistoryLimits()
#: The kinds of entries of a customer's history, one Redis list each.
HISTORY_KINDS = ("messages", "alerts", "tiers")
_HISTORY_TYPES = {"messages": MessageEntry, "alerts": AlertEntry, "tiers": TierEntry}
_encode_entry = msgspec.json.Encoder().encode
_decode_entries = {
    kind: msgspec.json.Decoder(entry_type).decode for kind, entry_type in _HISTORY_TYPES.items()
}


def history_keys(customer_id: str) -> list[str]:
    """Redis keys of a customer's history lists (messages, alerts, tier changes), oldest
    entry first: appended by the commit script, read only by :meth:`ProfileStore.get`."""
    return [f"crm:{{{customer_id}}}:history:{kind}" for kind in HISTORY_KINDS]


def items_key(customer_id: str) -> str:
    """Redis key of a customer's item state (what recommendations keep of their purchases,
    :class:`~crmstream.models.recommend.CustomerItems`): read and written with the profile,
    but only for batches that hold a purchase with items (other events do not need it)."""
    return f"crm:{{{customer_id}}}:items"


def _needs_items(deliveries: Sequence[Delivery[Any]]) -> bool:
    return any(isinstance(d.record, Purchase) and d.record.items for d in deliveries)


def seen_key(customer_id: str) -> str:
    """Redis key of a customer's recently applied event ids."""
    return f"crm:{{{customer_id}}}:seen"


class Delivery(msgspec.Struct, Generic[R], frozen=True):
    """One decoded input event with where it came from."""

    topic: str
    partition: int
    offset: int
    customer_id: str
    event_id: str
    record: R

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"


Fold = Callable[[Profile, Delivery[Any]], tuple[Profile, Sequence[Output]]]
BeforeCommit = Callable[[Sequence[Output]], Awaitable[None]]


@dataclass
class ApplyResult:
    """What one call to :meth:`ProfileStore.apply` did."""

    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    outputs: list[Output] = field(default_factory=list)
    #: Events a model may learn from, in offset order per partition: those applied now,
    #: and redeliveries (at or below the stored offset) of events applied before; not
    #: re-sent copies of an event id. Models skip what their checkpoint already includes.
    learnable: list[Delivery[Any]] = field(default_factory=list)
    #: The profile of every customer of the batch, as written (or as read, when nothing
    #: changed): what the models learn a redelivered event's lessons from.
    states: dict[str, Profile] = field(default_factory=dict)


@dataclass
class _Plan:
    customer_id: str
    version: int
    profile: Profile
    offsets: dict[str, int]
    applied_ids: list[str]
    outputs: list[Output]
    duplicates: int
    changed: bool
    learnable: list[Delivery[Any]] = field(default_factory=list)
    redelivered: bool = False
    #: The customer's item state was read (and is written back) with the profile.
    items_loaded: bool = False
    #: The floors of the customer's lesson sets as read (see _lesson_args).
    floors: dict[str, int] = field(default_factory=dict)


#: The hash field that holds the profile, as JSON (the other fields are bookkeeping).
PROFILE_FIELD = "profile"
_encode_profile = msgspec.json.Encoder().encode
_decode_profile = msgspec.json.Decoder(Profile).decode


class _ModelStateOnly(msgspec.Struct):
    """The part of a stored profile the models read of other customers."""

    model_state: CustomerModelState = msgspec.field(default_factory=CustomerModelState)


_decode_model_state = msgspec.json.Decoder(_ModelStateOnly).decode


def profile_to_fields(profile: Profile, items_apart: bool = False) -> dict[str, str]:
    """Encode a profile as Redis hash fields: one field, ``profile``, holding it as JSON
    (one field to write and parse), without its pending lessons and its history, which
    have keys of their own (:func:`lesson_keys`, :func:`history_keys`), nor, with
    ``items_apart``, its item state (:func:`items_key`).

    Examples
    --------
    >>> fields = profile_to_fields(Profile(customer_id="c1", orders=2, revenue=30.5))
    >>> list(fields), fields["profile"][:52]
    (['profile'], '{"customer_id":"c1","orders":2,"revenue":30.5,"cost"')
    """
    state = profile.model_state
    if state.lessons or state.marks:  # kept in their own sorted sets (see lesson_keys)
        stored = msgspec.structs.replace(state, lessons=[], marks=[])
        profile = msgspec.structs.replace(profile, model_state=stored)
    if profile.history.messages or profile.history.alerts or profile.history.tiers:
        profile = msgspec.structs.replace(profile, history=History())
    if items_apart:
        profile = msgspec.structs.replace(profile, items=_NO_ITEMS)
    return {PROFILE_FIELD: _encode_profile(profile).decode()}


def profile_from_fields(fields: dict[str, str]) -> Profile:
    """Decode a profile from Redis hash fields (the inverse of :func:`profile_to_fields`;
    its history is that of the fields: none, unless written before history had lists).

    Examples
    --------
    >>> profile_from_fields(profile_to_fields(Profile(customer_id="c1", orders=2))).orders
    2
    """
    return _decode_profile(fields[PROFILE_FIELD])


def _lesson_args(state: CustomerModelState, read: dict[str, int] | None = None) -> list[Any]:
    """The commit script's arguments for a state's lesson sets: per kind, the floor (empty
    when it is the floor ``read`` with the profile: the set holds nothing at or below it,
    since it was pruned when that floor was written and a lesson added since is of a newer
    event) and the new score/member pairs."""
    args: list[Any] = []
    for kind in LESSON_KINDS:
        floor = state.floors.get(kind, -1)
        if read is not None and read.get(kind) == floor:
            floor = ""
        if kind == PURCHASE:
            members = [(x.offset, _encode_lesson(x).decode()) for x in state.lessons]
        else:
            members = [(o, str(o)) for k, o in state.marks if k == kind]
        args.extend((floor, len(members)))
        for score, member in members:
            args.extend((score, member))
    return args


def _history_args(history: History, limits: HistoryLimits) -> list[Any]:
    """The commit script's arguments for the history entries a batch added: per list, the
    count it keeps and the new entries."""
    args: list[Any] = []
    for kind in HISTORY_KINDS:
        entries = getattr(history, kind)
        args.extend((getattr(limits, kind), len(entries)))
        args.extend(_encode_entry(entry).decode() for entry in entries)
    return args


def _with_history(profile: Profile, lists: Sequence[list[str]], limits: HistoryLimits) -> Profile:
    """``profile`` with the history of its stored lists, without entries older than
    ``limits.max_age`` before the customer's newest event."""
    times = (profile.last_purchase_at, profile.last_message_at, profile.last_feedback_at)
    newest = max((t for t in times if t is not None), default=None)
    kept = {}
    for kind, raw in zip(HISTORY_KINDS, lists, strict=True):
        count = getattr(limits, kind)
        stored = getattr(profile.history, kind)  # written before history had lists
        entries = [*stored, *map(_decode_entries[kind], raw)]
        entries = entries[-count:] if count else []
        if newest is not None:
            oldest = newest - limits.max_age
            entries = [e for e in entries if e.at >= oldest]
        kept[kind] = entries
    return msgspec.structs.replace(profile, history=History(**kept))


def _queue_calls(
    pipe: Any,
    one: LuaScript,
    many: LuaScript,
    calls: Sequence[tuple[list[str], list[Any]]],
    batched: bool,
) -> None:
    """Queue a script's calls, one per customer (``calls``: their keys and arguments), on
    ``pipe``; ``batched``, one call of ``many`` per :data:`CUSTOMERS_PER_CALL` customers
    instead, each customer's keys and arguments preceded by their numbers."""
    if not batched:
        for keys, args in calls:
            one.queue(pipe, keys, args)
        return
    for start in range(0, len(calls), CUSTOMERS_PER_CALL):
        all_keys: list[str] = []
        all_args: list[Any] = []
        for keys, args in calls[start : start + CUSTOMERS_PER_CALL]:
            all_keys.extend(keys)
            all_args.append(len(keys))
            all_args.append(len(args))
            all_args.extend(args)
        many.queue(pipe, all_keys, all_args)


def _per_customer(replies: list[Any], customers: int, batched: bool) -> list[Any]:
    """The replies of :func:`_queue_calls` for ``customers`` customers (the first commands
    of a pipeline), one per customer."""
    if batched:
        calls = -(-customers // CUSTOMERS_PER_CALL)
        return [reply for chunk in replies[:calls] for reply in chunk]
    return replies[:customers]


class ProfileStore:
    """Reads and atomically updates customer profiles in Redis.

    The Redis client is created lazily on first use, so building a store opens nothing.

    On one Redis server a batch's reads and writes are one script call per
    :data:`CUSTOMERS_PER_CALL` customers; on a cluster, whose customers' keys are in slots
    of their own, one per customer (``batch_scripts`` chooses, for tests). Both run the
    same Lua per customer, so what they do is the same.
    """

    def __init__(
        self,
        redis_url: str,
        dedupe_window: float = 7 * 24 * 3600.0,
        history: HistoryLimits = DEFAULT_HISTORY,
        batch_scripts: bool | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.dedupe_window_ms = int(dedupe_window * 1000)
        self.history = history
        self._batch_scripts = batch_scripts
        self._client: aioredis.Redis | None = None
        self._raw_client: aioredis.Redis | None = None

    @property
    def batched(self) -> bool:
        """Whether one script call serves many customers (on one server, not a cluster)."""
        if self._batch_scripts is None:
            self._batch_scripts = not isinstance(self.client, RedisCluster)
        return self._batch_scripts

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client (created on first use)."""
        if self._client is None:
            self._client = connect(self.redis_url, decode_responses=True)
        return self._client

    @property
    def raw_client(self) -> aioredis.Redis:
        """A client on the same server that returns bytes (for binary values)."""
        if self._raw_client is None:
            self._raw_client = connect(self.redis_url)
        return self._raw_client

    async def close(self) -> None:
        """Close the connection pools."""
        for client in (self._client, self._raw_client):
            if client is not None:
                await client.aclose()
        self._client = self._raw_client = None

    async def get(self, customer_id: str) -> Profile | None:
        """Return a customer's profile with its history, or ``None`` if crmstream has not
        seen them."""
        return (await self.get_many([customer_id])).get(customer_id)

    async def model_states(self, customer_ids: Iterable[str]) -> dict[str, CustomerModelState]:
        """What the models keep of those of ``customer_ids`` crmstream has seen (one round
        trip; only that part of each profile is decoded): the propensity snapshots of
        customers whose labels fall due."""
        return {
            customer_id: _decode_model_state(replies[0]).model_state
            for customer_id, replies in await self._read(customer_ids, history=False)
        }

    async def get_many(
        self, customer_ids: Iterable[str], history: bool = True
    ) -> dict[str, Profile]:
        """The profiles of those of ``customer_ids`` crmstream has seen (one round trip),
        with their history and item state unless ``history`` is false (the models need
        neither)."""
        found = {}
        for customer_id, replies in await self._read(customer_ids, history):
            profile = _decode_profile(replies[0])
            if history:
                if replies[1] is not None:
                    profile = msgspec.structs.replace(profile, items=_decode_items(replies[1]))
                profile = _with_history(profile, replies[2:], self.history)
            found[customer_id] = profile
        return found

    async def _read(
        self, customer_ids: Iterable[str], history: bool
    ) -> list[tuple[str, list[Any]]]:
        """For each of ``customer_ids`` that has a profile, the replies of one pipelined
        round trip: its profile JSON, then, with ``history``, its item state and history
        lists."""
        ids = sorted(set(customer_ids))
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for customer_id in ids:
            pipe.hget(profile_key(customer_id), PROFILE_FIELD)
            if history:
                pipe.get(items_key(customer_id))
                for key in history_keys(customer_id):
                    pipe.lrange(key, 0, -1)
        replies = await pipe.execute()
        step = 2 + len(HISTORY_KINDS) if history else 1
        return [
            (customer_id, replies[index * step : (index + 1) * step])
            for index, customer_id in enumerate(ids)
            if replies[index * step]
        ]

    async def count_customers(self) -> int:
        """Number of customers with a profile."""
        return int(await self.client.scard(CUSTOMERS_KEY))

    async def apply(
        self,
        deliveries: Iterable[Delivery[Any]],
        fold: Fold,
        before_commit: BeforeCommit | None = None,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
    ) -> ApplyResult:
        """Apply a batch of events to their customers' profiles, each event at most once.

        ``fold`` is called once per new event (in delivery order per customer) and returns
        the customer's new profile and the outputs the event causes. All outputs are passed
        to ``before_commit`` before any profile is written. While Redis is unreachable the
        call retries with backoff rather than dropping or skipping events.
        """
        pending: dict[str, list[Delivery[Any]]] = {}
        for delivery in deliveries:
            pending.setdefault(delivery.customer_id, []).append(delivery)
        result = ApplyResult()
        replayed: set[str] = set()
        delay = retry_delay
        conflict_rounds = 0
        while pending:
            try:
                plans = await self._plan(pending, fold)
                outputs = [o for plan in plans for o in plan.outputs]
                if outputs and before_commit is not None:
                    await before_commit(outputs)
                conflicted = await self._write(plans)
            except UNAVAILABLE as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_retry_delay)
                continue
            delay = retry_delay
            if conflicted:
                conflict_rounds += 1
                if conflict_rounds > MAX_CONFLICT_ROUNDS:
                    raise RuntimeError(
                        f"profiles of {sorted(conflicted)[:5]} changed under us "
                        f"{MAX_CONFLICT_ROUNDS} times in a row; is another process writing "
                        "them without the commit script?"
                    )
            for plan in plans:
                if plan.customer_id in conflicted:
                    continue
                result.applied += len(plan.applied_ids)
                result.duplicates += plan.duplicates
                result.outputs.extend(plan.outputs)
                result.learnable.extend(plan.learnable)
                result.states[plan.customer_id] = plan.profile
                if plan.redelivered:
                    replayed.add(plan.customer_id)
                del pending[plan.customer_id]
            result.conflicts += len(conflicted)
        result.learnable.sort(key=lambda d: (d.topic, d.partition, d.offset))
        if replayed:
            await retry_redis(
                "reading pending lessons", lambda: self._load_lessons(result, replayed)
            )
        return result

    async def _load_lessons(self, result: ApplyResult, customers: set[str]) -> None:
        """Add the stored lessons and marks of ``customers`` (whose batch holds redelivered
        events) to their states in ``result``."""
        ids = sorted(customers)
        pipe = self.client.pipeline(transaction=False)
        for customer_id in ids:
            for key in lesson_keys(customer_id):
                pipe.zrange(key, 0, -1, withscores=True)
        replies = await pipe.execute()
        for index, customer_id in enumerate(ids):
            profile = result.states.get(customer_id)
            if profile is None:
                continue
            state = profile.model_state
            lessons = {x.offset: x for x in state.lessons}
            marks = set(state.marks)
            purchases, chats, feedback = replies[3 * index : 3 * index + 3]
            for member, _ in purchases:
                lesson = _decode_lesson(member)
                lessons.setdefault(lesson.offset, lesson)
            for kind, members in ((CHAT, chats), (FEEDBACK, feedback)):
                marks.update((kind, int(score)) for _, score in members)
            stored = msgspec.structs.replace(
                state,
                lessons=sorted(lessons.values(), key=lambda x: x.offset),
                marks=sorted(marks, key=lambda m: (m[1], m[0])),
            )
            result.states[customer_id] = msgspec.structs.replace(profile, model_state=stored)

    async def _plan(self, pending: dict[str, list[Delivery[Any]]], fold: Fold) -> list[_Plan]:
        calls = []
        for customer_id, items in pending.items():
            keys = [profile_key(customer_id), seen_key(customer_id)]
            if _needs_items(items):
                keys.append(items_key(customer_id))
            calls.append((keys, [d.event_id for d in items]))
        batched = self.batched

        def build(pipe: Any) -> None:
            _queue_calls(pipe, _READ_SCRIPT, _READ_MANY_SCRIPT, calls, batched)

        replies = await run_pipeline(self.client, build, _SCRIPTS)
        replies = _per_customer(replies, len(calls), batched)
        plans = []
        for (customer_id, items), reply in zip(pending.items(), replies, strict=True):
            flat, scores = reply[0], reply[1]
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            plan = self._fold(customer_id, items, fields, scores, fold, reply[2:])
            plans.append(plan)
        return plans

    @staticmethod
    def _fold(
        customer_id: str,
        items: list[Delivery[Any]],
        fields: dict[str, str],
        scores: list[float | None],
        fold: Fold,
        item_state: Sequence[str | None] = (),
    ) -> _Plan:
        """Fold ``items`` into the stored profile; ``item_state`` holds the customer's
        stored item state when it was read (one value, ``None`` if there is none yet)."""
        profile = profile_from_fields(fields) if fields else Profile(customer_id=customer_id)
        if item_state and item_state[0] is not None:
            profile = msgspec.structs.replace(profile, items=_decode_items(item_state[0]))
        offsets = {k[2:]: int(v) for k, v in fields.items() if k.startswith("o:")}
        seen = {d.event_id for d, score in zip(items, scores, strict=True) if score is not None}
        plan = _Plan(customer_id, int(fields.get("_v", 0)), profile, offsets, [], [], 0, False)
        plan.items_loaded = bool(item_state)
        plan.floors = profile.model_state.floors if fields else {}
        for delivery in items:
            source = delivery.source
            if delivery.offset <= offsets.get(source, -1):
                plan.duplicates += 1
                plan.learnable.append(delivery)
                plan.redelivered = True
                continue
            offsets[source] = delivery.offset
            plan.changed = True
            if delivery.event_id in seen:
                plan.duplicates += 1
                continue
            seen.add(delivery.event_id)
            plan.profile, outputs = fold(plan.profile, delivery)
            plan.outputs.extend(outputs)
            plan.applied_ids.append(delivery.event_id)
            plan.learnable.append(delivery)
        return plan

    async def _write(self, plans: list[_Plan]) -> set[str]:
        plans = [plan for plan in plans if plan.changed]
        if not plans:
            return set()
        now_ms = int(time.time() * 1000)
        calls = []
        for plan in plans:
            fields = profile_to_fields(plan.profile, items_apart=plan.items_loaded)
            fields.update({f"o:{source}": str(offset) for source, offset in plan.offsets.items()})
            args: list[Any] = [plan.version, now_ms, self.dedupe_window_ms, len(plan.applied_ids)]
            args.extend(plan.applied_ids)
            args.append(len(fields))
            for name, value in fields.items():
                args.extend((name, value))
            args.extend(_lesson_args(plan.profile.model_state, plan.floors))
            args.extend(_history_args(plan.profile.history, self.history))
            keys = [profile_key(plan.customer_id), seen_key(plan.customer_id)]
            keys.extend(lesson_keys(plan.customer_id))
            keys.extend(history_keys(plan.customer_id))
            if plan.items_loaded:
                keys.append(items_key(plan.customer_id))
                args.append(_encode_items(plan.profile.items).decode())
            calls.append((keys, args))
        applied = [p.customer_id for p in plans if p.applied_ids]
        batched = self.batched

        def build(pipe: Any) -> None:
            _queue_calls(pipe, _COMMIT_SCRIPT, _COMMIT_MANY_SCRIPT, calls, batched)
            if applied:
                pipe.sadd(CUSTOMERS_KEY, *applied)

        replies = await run_pipeline(self.client, build, _SCRIPTS)
        replies = _per_customer(replies, len(calls), batched)
        return {plan.customer_id for plan, ok in zip(plans, replies, strict=True) if not ok}
