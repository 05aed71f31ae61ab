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
batch has everything that has arrived), or it holds ``max_size`` events, or
``max_wait`` seconds have passed since its first event. Under load a batch is then
whatever arrived while the previous one was applied (a larger batch costs less per
event), and a lone event goes at once. The same drain: 53 batches, median 396 events.

Events are acknowledged once the consumer is done with their batch, as with
``take_events``: Faust commits only acknowledged offsets (and crmstream's consumer no
further than its models' checkpoint, see :mod:`crmstream.streams.transport`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import faust
from faust.types import EventT


async def gather(
    stream: faust.StreamT, max_size: int, max_wait: float
) -> AsyncIterator[list[EventT]]:
    """The events of ``stream`` in batches of at most ``max_size``; see the module.

    ``stream`` must read a channel, as an agent's stream does: a batch ends when that
    channel's queue is empty. A batch is handed over the moment that is seen, so
    ``max_wait`` only bounds how long gathering may go on while events keep coming faster
    than they are moved (the first event of a batch waits at most that long, plus the
    time it takes to move one more event).
    """
    queue = getattr(stream.channel, "queue", None)
    if queue is None:
        raise ValueError(
            f"gather() needs a stream over a channel (an agent's stream), not {stream.channel!r}"
        )
    clock = time.monotonic
    # Acknowledge each batch's events once the consumer is done with them, not as each
    # one is moved into the batch.
    stream.enable_acks = False
    batch: list[EventT] = []
    first = 0.0
    async for event in stream.events():
        if not batch:
            first = clock()
        batch.append(event)
        if len(batch) < max_size and queue.qsize() and clock() - first < max_wait:
            continue
        try:
            yield batch
        finally:
            done, batch = batch, []
            for taken in done:
                await stream.ack(taken)
