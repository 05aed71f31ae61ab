"""CPU time per stage of the worker's hot path, for benchmarks and operators.

Every stage of a batch (decode, Redis, items, sentiment, intent, purchase models, the
fold of chats and feedback, checkpoint, produce) adds the CPU time of the worker's main
thread it took, timed where it runs without waiting (the worker runs one part of a batch
while another waits on Redis); ``redis`` is what the others leave of a batch's CPU time:
the Redis client's work (encoding, packing, parsing) and the event loop's; :meth:`Stages.flush`
adds the totals to the Redis hash ``crm:metrics:stages`` (fields: the stage names in
microseconds, and ``events``), summed over every worker of the deployment.
Event counters (e.g. ``misrouted:<topic>``, see :mod:`crmstream.streams.routing`) are
added the same way to ``crm:metrics:counts`` by :func:`flush_counts`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis

STAGES_KEY = "crm:metrics:stages"
COUNTS_KEY = "crm:metrics:counts"
STAGES = (
    "decode",
    "redis",
    "items",
    "sentiment",
    "intent",
    "purchase_models",
    "fold",
    "checkpoint",
    "produce",
)


class Stages:
    """Accumulates CPU microseconds per stage.

    Examples
    --------
    >>> stages = Stages()
    >>> with stages.timed("decode"):
    ...     _ = sum(range(1000))
    >>> stages.totals["decode"] >= 0, stages.events
    (True, 0)
    """

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.events = 0
        #: Every microsecond ever added, never reset by :meth:`flush`.
        self.added = 0.0

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.thread_time_ns()
        try:
            yield
        finally:
            self.add(stage, (time.thread_time_ns() - start) / 1000.0)

    def add(self, stage: str, microseconds: float) -> None:
        self.totals[stage] += microseconds
        self.added += microseconds

    async def flush(self, client: aioredis.Redis) -> None:
        """Add the totals so far to ``crm:metrics:stages`` and start again from zero."""
        if not self.totals and not self.events:
            return
        totals, events = dict(self.totals), self.events
        self.totals.clear()
        self.events = 0
        pipe = client.pipeline(transaction=False)
        for stage, micros in totals.items():
            pipe.hincrbyfloat(STAGES_KEY, stage, round(micros, 1))
        pipe.hincrby(STAGES_KEY, "events", events)
        try:
            await pipe.execute()
        except BaseException:
            self.totals.update(totals)
            self.events += events
            raise


async def flush_counts(client: aioredis.Redis, counts: Counter[str]) -> None:
    """Add ``counts`` to ``crm:metrics:counts`` and clear them (kept if Redis fails)."""
    if not counts:
        return
    taken = dict(counts)
    counts.clear()
    pipe = client.pipeline(transaction=False)
    for name, count in taken.items():
        pipe.hincrby(COUNTS_KEY, name, count)
    try:
        await pipe.execute()
    except BaseException:
        counts.update(taken)
        raise
