"""The shared path of every input agent: decode, dead-letter the bad, apply the good."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust
import msgspec
from faust.types import Message

from crmstream.models.profile import Profile
from crmstream.schemas import InvalidEvent, decode
from crmstream.streams.app import Runtime
from crmstream.streams.deadletter import deadletter
from crmstream.streams.profiles import ApplyResult, Delivery
from crmstream.streams.sink import Output

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Extra validation a topic needs beyond its schema (raises :class:`InvalidEvent`).
Check = Callable[[Runtime, Any], None]
Fold = Callable[[Profile, Delivery[Any]], tuple[Profile, Sequence[Output]]]
#: Runs before the fold with the batch's valid deliveries (e.g. loads model replicas).
Before = Callable[[list[Delivery[Any]]], Awaitable[None]]
#: Runs after the profiles are written (e.g. models learn from what was applied).
After = Callable[[ApplyResult], Awaitable[None]]


class BatchSummary(msgspec.Struct, frozen=True):
    """What an agent did with one batch (yielded, so tests and sinks can see it)."""

    received: int
    applied: int
    duplicates: int
    deadlettered: int
    outputs: int


def to_delivery(
    message: Message, type_: type[R], runtime: Runtime, check: Check | None
) -> Delivery[R]:
    """Decode and validate one message, or raise :class:`InvalidEvent`."""
    record = decode(message.value or b"", type_)
    if check is not None:
        check(runtime, record)
    return Delivery(
        message.topic,
        message.partition,
        message.offset,
        record.customer_id,  # type: ignore[attr-defined]
        record.event_id,  # type: ignore[attr-defined]
        record,
    )


async def ingest(
    runtime: Runtime,
    messages: Sequence[Message],
    type_: type[R],
    fold: Fold,
    check: Check | None = None,
    before: Before | None = None,
    after: After | None = None,
) -> BatchSummary:
    """Apply a batch of messages of one input topic to the customers' profiles.

    Records that fail to decode or ``check`` go to the dead-letter topic (acknowledged by
    the broker before this returns, so the batch's offsets may be committed); the others
    are applied through :meth:`ProfileStore.apply` with ``fold``, whose outputs are sent
    before the profiles are written.
    """
    deliveries: list[Delivery[R]] = []
    rejected: list[Output] = []
    for message in messages:
        try:
            deliveries.append(to_delivery(message, type_, runtime, check))
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
    if rejected:
        await runtime.sink.send(rejected)
    if before is not None and deliveries:
        await before(deliveries)
    result = await runtime.profiles.apply(deliveries, fold, runtime.sink.send)
    if after is not None:
        await after(result)
    return BatchSummary(
        received=len(messages),
        applied=result.applied,
        duplicates=result.duplicates,
        deadlettered=len(rejected),
        outputs=len(result.outputs),
    )


def input_agent(
    app: faust.App,
    runtime: Runtime,
    topic: str,
    type_: type[R],
    fold: Fold,
    check: Check | None = None,
    before: Before | None = None,
    after: After | None = None,
) -> faust.types.AgentT:
    """Define the agent of input ``topic``: batches of events through :func:`ingest`.

    One actor per worker (``concurrency=1``) keeps each partition's events in order. The
    agent yields a :class:`BatchSummary` per batch.
    """
    settings = runtime.settings

    async def agent(stream: faust.StreamT) -> AsyncIterator[BatchSummary]:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            messages = [event.message for event in events]
            yield await ingest(runtime, messages, type_, fold, check, before, after)

    name = topic.removeprefix("crm.")
    return app.agent(runtime.input_topic(app, topic), name=name, concurrency=1)(agent)
