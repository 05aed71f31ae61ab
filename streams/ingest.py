"""The path of every input event: decode, dead-letter the bad, apply the good, learn.

One agent reads ``crm.purchases``, ``crm.chats``, ``crm.feedback`` and ``crm.customers``
together, so all of a customer's events in a batch are folded in one pass, in offset order
per partition, and written with one compare-and-set: an output is a pure function of its
event and of the state that event was applied to. A batch goes through:

1. decode and validate each message; the bad, and those of erased customers (with
   ``CRM_ERASURE_POLICY=deadletter``, see :mod:`crmstream.streams.erasure`), go to
   ``crm.deadletter`` with their reason;
2. load the models of the batch's partitions (once per partition, from its checkpoint);
3. score customer chat messages (sentiment, intent), once per message;
4. fold the events into the customers' profiles and write them exactly once
   (:meth:`~crmstream.streams.profiles.ProfileStore.apply`); outputs are acknowledged by
   the broker before the profiles are written;
5. count the purchased items in the shared item statistics (:mod:`crmstream.streams.items`)
   and teach the models every event they have not learned
   (:mod:`crmstream.streams.replicas`), at once (see :func:`learn`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import msgspec
from faust.types import Message

from crmstream.models.contact import protect
from crmstream.models.conversations import MessageScores
from crmstream.models.customer_state import Retention
from crmstream.models.events import Output as ModelOutput
from crmstream.models.events import apply_event
from crmstream.models.money import UnsupportedCurrency
from crmstream.models.profile import Profile
from crmstream.models.recommend import EMPTY_VIEW, ItemView
from crmstream.schemas import (
    Alert,
    AudienceChange,
    ChatMessage,
    CustomerDetails,
    InvalidEvent,
    Purchase,
    TierChange,
    Trigger,
    decode,
)
from crmstream.streams import topics
from crmstream.streams.batching import gather
from crmstream.streams.deadletter import deadletter
from crmstream.streams.items import ScriptCall
from crmstream.streams.profiles import ApplyResult, Delivery, retry_redis
from crmstream.streams.runtime import Runtime
from crmstream.streams.sink import Output, keyed_outputs

log = logging.getLogger(__name__)

#: The output topic of each kind of record the models produce.
OUTPUT_TOPICS: dict[type, str] = {
    TierChange: topics.TIER_CHANGES,
    Alert: topics.ALERTS,
    Trigger: topics.TRIGGERS,
    AudienceChange: topics.AUDIENCES,
}


class BatchSummary(msgspec.Struct, frozen=True):
    """What the agent did with one batch (yielded, so tests and sinks can see it)."""

    received: int
    applied: int
    duplicates: int
    deadlettered: int
    outputs: int
    learned: int


def to_delivery(message: Message, runtime: Runtime, latest: datetime) -> Delivery[Any]:
    """Decode and validate one message of an input topic, or raise :class:`InvalidEvent`.

    Its key must be its ``customer_id`` (``key_mismatch`` otherwise); a key that another
    partitioner placed is applied, and counted (see :mod:`crmstream.streams.routing`). A
    ``crm.customers`` record is protected at once: its name and contact details go no
    further than this function (see :mod:`crmstream.models.contact`). An event dated after
    ``latest`` (the wall clock plus ``CRM_MAX_FUTURE``) is refused (``future_timestamp``):
    it would move the partition's event-time watermark ahead of every real event.
    """
    value = message.value
    if value is None:
        raise InvalidEvent("tombstone", "a record without a value (tombstone) is no event")
    record = decode(value, topics.INPUT_TYPES[message.topic])
    key = message.key
    if key != record.customer_id.encode():
        raise InvalidEvent(
            "key_mismatch",
            "the record has no key; key it by its customer_id"
            if key is None
            else f"key {key[:80].decode('utf-8', 'replace')!r} is not the customer_id",
            "$.customer_id",
        )
    if record.occurred_at > latest:
        raise InvalidEvent(
            "future_timestamp",
            f"occurred_at {record.occurred_at.isoformat()} is more than "
            f"{runtime.settings.max_future:g} s (CRM_MAX_FUTURE) ahead of the wall clock",
            "$.occurred_at",
        )
    runtime.routing.misrouted(message.topic, message.partition, key)
    if isinstance(record, Purchase):
        try:
            runtime.policies.currencies.to_base(0.0, record.currency)
        except UnsupportedCurrency as exc:
            raise InvalidEvent("unsupported_currency", str(exc), "$.currency") from None
    elif isinstance(record, CustomerDetails):
        record = protect(record, runtime.contact)
    return Delivery(
        message.topic,
        message.partition,
        message.offset,
        record.customer_id,
        record.event_id,
        record,
    )


def decode_batch(
    runtime: Runtime, messages: Sequence[Message]
) -> tuple[list[Delivery[Any]], list[Output]]:
    """The valid deliveries of a batch, and the dead letters of the others."""
    deliveries: list[Delivery[Any]] = []
    rejected: list[Output] = []
    latest = datetime.now(UTC) + timedelta(seconds=runtime.settings.max_future)
    for message in messages:
        try:
            deliveries.append(to_delivery(message, runtime, latest))
        except InvalidEvent as exc:
            log.warning(
                "dead-lettering %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            rejected.append(
                deadletter(
                    exc,
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    message.timestamp,
                )
            )
    return deliveries, rejected


def route(records: Sequence[ModelOutput]) -> list[Output]:
    """Encode the models' outputs for their topics, keyed by customer."""
    out: list[Output] = []
    for record in records:
        out.extend(keyed_outputs(OUTPUT_TOPICS[type(record)], [record]))
    return out


def score_messages(
    runtime: Runtime, deliveries: Sequence[Delivery[Any]]
) -> dict[tuple[str, int, int], MessageScores]:
    """Sentiment and intent of every customer chat message of a batch, scored once with
    the partition's models as they are before the batch teaches them anything."""
    chats = [
        d for d in deliveries if isinstance(d.record, ChatMessage) and d.record.sender == "customer"
    ]
    if not chats:
        return {}
    replicas, stages = runtime.replicas, runtime.stages
    with stages.timed("sentiment"):
        sentiments = [
            replicas[d.partition].models.conversations.sentiment.score(d.record.text) for d in chats
        ]
    with stages.timed("intent"):
        intents = [
            replicas[d.partition].models.conversations.intent.predict(d.record.text) for d in chats
        ]
    return {
        (d.topic, d.partition, d.offset): MessageScores(sentiment, intent)
        for d, sentiment, intent in zip(chats, sentiments, intents, strict=True)
    }


async def item_view(runtime: Runtime, deliveries: Sequence[Delivery[Any]]) -> ItemView:
    """What the shared item statistics say of the items the batch's purchases bought (one
    round trip, none without items), for the recommendations of the fold: read only when
    a rule reads them (:attr:`~crmstream.models.events.Policies.scores_recommendations`)."""
    params, store = runtime.policies.recommend, runtime.items
    if params is None or store is None or not runtime.policies.scores_recommendations:
        return EMPTY_VIEW
    bought = {
        item.sku
        for d in deliveries
        if isinstance(d.record, Purchase) and d.record.items
        for item in d.record.items[: params.basket_items]
    }
    if not bought:
        return EMPTY_VIEW
    with runtime.stages.timed("items"):
        return await retry_redis("reading item statistics", lambda: store.view(bought))


async def learn(runtime: Runtime, result: ApplyResult) -> int:
    """Count a batch's purchased items in the shared item statistics and teach the models
    its events, at once: the item statistics' round trip is sent while the models learn.
    A checkpoint of the models waits for both (:attr:`~crmstream.streams.replicas.Replicas.
    learning`): Kafka commits what it includes, so it must never include events whose
    items are not counted yet. Returns how many events were new to the models."""
    replicas, stages, store = runtime.replicas, runtime.stages, runtime.items
    calls: list[ScriptCall] = []
    if store is not None:
        with stages.timed("items"):
            calls = store.batch_calls(result)
    async with replicas.learning:
        if not calls:
            return await retry_redis("teaching the models", lambda: replicas.learn(result, stages))
        assert store is not None
        # The models' round trip first: Redis runs commands one after another, and the
        # models wait for its answer, while nothing waits for the items' answer.
        learned, _ = await asyncio.gather(
            retry_redis("teaching the models", lambda: replicas.learn(result, stages)),
            retry_redis("counting items", lambda: store.send(calls)),
        )
        return learned


#: The fewest deliveries a batch is applied in two groups from (:func:`halves`). A group
#: costs its own round trips to Redis (reading and writing its profiles, finding its
#: labels), about 0.2 ms of CPU each with redis-py's asyncio client, more than the overlap
#: saves in a small batch; at low load batches are small (one per broker fetch).
HALVES_FROM = 200


def halves(
    deliveries: Sequence[Delivery[Any]], smallest: int = HALVES_FROM
) -> list[list[Delivery[Any]]]:
    """A batch's deliveries in two groups of partitions, each with about half of them (one
    group when they are of one partition, or fewer than ``smallest``): a customer's
    events, and a partition's models, are in one group only.

    Examples
    --------
    >>> ds = [Delivery("t", p, o, f"c{p}", f"e{p}{o}", None) for p, o in
    ...       [(0, 1), (1, 1), (1, 2), (2, 1), (3, 1), (3, 2), (3, 3)]]
    >>> [[(d.partition, d.offset) for d in group] for group in halves(ds, smallest=2)]
    [[(3, 1), (3, 2), (3, 3), (2, 1)], [(1, 1), (1, 2), (0, 1)]]
    >>> len(halves(ds[:1], smallest=1)), len(halves(ds))
    (1, 1)
    """
    by_partition: dict[int, list[Delivery[Any]]] = {}
    for delivery in deliveries:
        by_partition.setdefault(delivery.partition, []).append(delivery)
    if len(by_partition) < 2 or len(deliveries) < smallest:
        return [list(deliveries)]
    groups: list[list[Delivery[Any]]] = [[], []]
    # The largest partitions first, each into the smaller group; a partition's deliveries
    # keep their order.
    for partition in sorted(by_partition, key=lambda p: -len(by_partition[p])):
        smaller = min(groups, key=len)
        smaller.extend(by_partition[partition])
    return groups


async def ingest(runtime: Runtime, messages: Sequence[Message]) -> BatchSummary:
    """Apply a batch of input messages (any mix of the input topics); see the module.

    A large batch's partitions are applied in two groups (:func:`halves`): while the models of
    the first group learn, and its items are counted, the second group's profiles are read,
    folded and written, so the worker computes while Redis works, and the other way round.
    The groups share no customer and no partition's models.
    """
    began = time.perf_counter()
    cpu_start = time.thread_time_ns()
    stages = runtime.stages
    staged = stages.added
    kept: Sequence[Message] = messages
    erased: list[Output] = []
    if runtime.erased is not None:  # events of erased customers are dead-lettered
        screen = runtime.erased.screen
        kept, erased = await retry_redis("screening erased customers", lambda: screen(messages))
    with stages.timed("decode"):
        deliveries, rejected = decode_batch(runtime, kept)
    rejected.extend(erased)
    if rejected:
        await send(runtime, rejected)
    replicas = runtime.replicas
    partitions = {m.partition for m in messages}
    await retry_redis("loading model checkpoints", lambda: replicas.prepare(partitions))
    scores = score_messages(runtime, deliveries)
    items = await item_view(runtime, deliveries)
    outputs: list[Output] = []
    applied = duplicates = learned = 0
    learning: asyncio.Future[int] | None = None
    try:
        for group in halves(deliveries):
            result = await apply(runtime, group, scores, items)
            applied += result.applied
            duplicates += result.duplicates
            outputs.extend(result.outputs)
            if learning is not None:
                learned += await learning
            learning = asyncio.ensure_future(learn(runtime, result))
        if learning is not None:
            learned += await learning
    finally:
        if learning is not None and not learning.done():  # an error: let it end cleanly
            await asyncio.gather(learning, return_exceptions=True)
    replicas.passed(messages)
    stages.events += len(messages)
    # Redis's client side (encoding, packing, parsing) and the event loop: what the other
    # stages, each timed where it runs without waiting, leave of the batch's CPU time.
    total = (time.thread_time_ns() - cpu_start) / 1000.0
    stages.add("redis", max(total - (stages.added - staged), 0.0))
    runtime.metrics.batch(messages, rejected, outputs, time.perf_counter() - began)
    return BatchSummary(
        received=len(messages),
        applied=applied,
        duplicates=duplicates,
        deadlettered=len(rejected),
        outputs=len(outputs),
        learned=learned,
    )


async def send(runtime: Runtime, outputs: Sequence[Output]) -> None:
    """Send outputs, timing the producer's work (stage ``produce``): the sink's own count
    of its CPU time when it keeps one (:class:`~crmstream.streams.sink.FaustSink`: not the
    wait for the broker's acknowledgement, when other work of the worker runs)."""
    sink = runtime.sink
    counted = getattr(sink, "cpu_us", None)
    start = time.thread_time_ns()
    await sink.send(outputs)
    if counted is None:
        runtime.stages.add("produce", (time.thread_time_ns() - start) / 1000.0)
    else:
        runtime.stages.add("produce", sink.cpu_us - counted)  # type: ignore[attr-defined]


async def apply(
    runtime: Runtime,
    deliveries: Sequence[Delivery[Any]],
    scores: dict[tuple[str, int, int], MessageScores],
    items: ItemView,
) -> ApplyResult:
    """Fold deliveries into their customers' profiles and write them exactly once
    (:meth:`~crmstream.streams.profiles.ProfileStore.apply`), their outputs sent first."""
    replicas, stages, policies = runtime.replicas, runtime.stages, runtime.policies
    # Per partition, what its customers may forget, as of the group's start: a checkpoint
    # written meanwhile only lets them forget more, so the older answer is safe.
    retentions: dict[int, Retention] = {}

    def fold(profile: Profile, delivery: Delivery[Any]) -> tuple[Profile, list[Output]]:
        start = time.thread_time_ns()
        replica = replicas[delivery.partition]
        retention = retentions.get(delivery.partition)
        if retention is None:
            retention = retentions[delivery.partition] = replica.retention()
        new, records = apply_event(
            profile,
            delivery.record,
            delivery.offset,
            policies,
            replica.models.purchases,
            scores.get((delivery.topic, delivery.partition, delivery.offset)),
            retention,
            items,
        )
        elapsed = (time.thread_time_ns() - start) / 1000.0
        # Purchases are scored by the purchase models; the rest of a fold is profile work.
        stages.add("purchase_models" if isinstance(delivery.record, Purchase) else "fold", elapsed)
        return new, route(records)

    return await runtime.profiles.apply(deliveries, fold, lambda outputs: send(runtime, outputs))


def input_agent(app: faust.App, runtime: Runtime) -> faust.types.AgentT:
    """Define the agent of the input topics: batches of events through :func:`ingest`.

    One actor per worker (``concurrency=1``) keeps each partition's events in order. A batch
    is every event that has arrived, up to ``CRM_BATCH_SIZE`` (see
    :mod:`crmstream.streams.batching`). The agent yields a :class:`BatchSummary` per batch.
    """
    settings = runtime.settings

    async def events(stream: faust.StreamT) -> AsyncIterator[BatchSummary]:
        async for batch in gather(stream, settings.batch_size, settings.batch_wait):
            yield await ingest(runtime, [event.message for event in batch])

    return app.agent(runtime.input_topics(app), name="events", concurrency=1)(events)
