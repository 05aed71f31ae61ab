"""Batches of an agent's events, handed over as soon as every event that has arrived is in
one (natural batching).

Faust's ``stream.take_events(max_, within)`` hands over a batch when it holds ``max_``
events or ``within`` seconds after it began to wait. Events move from the agent's channel
into a batch one at a time, through Faust's per-event work (measured here: 50-100 µs
each), so in the 10 ms of ``CRM_BATCH_WAIT`` a batch took only 90-200 of the thousands of
events already waiting: draining 20,000 waiting events, the worker applied 195 batches
with a median of 91 events, and every batch costs a fixed few milliseconds (its Redis
round trips) whatever its size. A longer ``within`` fills batches under load, but then a
lone event waits for all of it.

:func:`gather` hands over a batch as soon as the agent's channel holds no more events (the
batch has everything that has arrived) or it holds ``max_size`` events, and at the latest
``max_wait`` seconds after the worker began to wait for it. Under load a batch is then
whatever arrived while the previous one was applied (a larger batch costs less per
event), and a lone event goes at once. The same drain, with an earlier form of this
function (the consumer read the stream itself): 53 batches, median 396 events.

Events are acknowledged once the consumer is done with their batch, as with
``take_events``: Faust commits only acknowledged offsets (and crmstream's consumer no
further than its models' checkpoint, see :mod:`crmstream.streams.transport`), and before a
rebalance or a stop it waits until every event it delivered is acknowledged. So a batch is
never held while the consumer waits for more events: events still queued can be dropped
by Faust (skipped, then acknowledged) when partitions move or the worker stops, and a
batch that waited for them would never be handed over. Like ``take_events``, the stream
is drained in the background into a buffer, and the consumer is handed the buffer when it
is ready, or ``max_wait`` seconds after it began to wait, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT


async def gather(
    stream: faust.StreamT, max_size: int, max_wait: float
) -> AsyncIterator[list[EventT]]:
    """The events of ``stream`` in batches of at most ``max_size``; see the module.

    ``stream`` must read a channel, as an agent's stream does: a batch is ready when that
    channel's queue is empty or the batch is full. The consumer waits at most ``max_wait``
    seconds for that, then takes what there is. This uses what Faust's own
    ``take_events`` uses: a stream processor that fills the buffer, and the stream drained
    in the background (``Stream._enable_passive``).
    """
    queue = getattr(stream.channel, "queue", None)
    if queue is None:
        raise ValueError(
            f"gather() needs a stream over a channel (an agent's stream), not {stream.channel!r}"
        )
    buffer: list[EventT] = []
    ready = asyncio.Event()  # hand the buffer over now
    room = asyncio.Event()  # the buffer may take events: not while full or handed over
    room.set()

    async def add(value: Any) -> Any:
        event = stream.current_event
        if event is None:
            raise RuntimeError("gather: a stream value without its event")
        if not room.is_set():
            await stream.wait(room)
        buffer.append(event)
        if len(buffer) >= max_size:
            room.clear()
            ready.set()
        elif not queue.qsize():  # every event that has arrived is in the buffer
            ready.set()
        return value

    # Acknowledge each batch's events once the consumer is done with them, not as the
    # background drain moves them into the buffer.
    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # private, as take_events uses it
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=max_wait)
            ready.clear()
            if not buffer:
                continue
            room.clear()
            batch = list(buffer)
            buffer.clear()
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
                room.set()
    finally:
        stream._processors.remove(add)  # private, as take_events uses it
