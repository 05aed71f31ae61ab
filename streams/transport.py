"""Faust's Kafka transport with a bounded fetch wait and commits held to the checkpoints.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. Apache Kafka answers a
fetch as soon as data arrives, so the wait costs nothing there; brokers that hold a fetch
until the wait expires (Tansu, the embedded development broker, does) add up to that
much latency to every alert. :func:`transport_for` gives the app a transport whose
consumers wait at most ``CRM_FETCH_MAX_WAIT`` seconds.

Faust commits the offsets its streams have acknowledged. The models of a partition are
checkpointed only on an interval (see :mod:`crmstream.streams.replicas`), so the consumer
here never commits an offset past what the latest checkpoint includes: ``ceiling``
answers, per topic and partition, the highest offset that may be committed (``None``:
nothing yet). After a crash Kafka then redelivers from the checkpoint, and the models
learn what they had not checkpointed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

#: The highest offset that may be committed for a topic partition (``None``: none).
Ceiling = Callable[[str, int], int | None]


def clamp(offsets: Mapping[TP, int], ceiling: Ceiling) -> dict[TP, int]:
    """The commits ``offsets`` as far as ``ceiling`` allows.

    Examples
    --------
    >>> ceilings = {("t", 0): 5}
    >>> clamp({TP("t", 0): 9, TP("t", 1): 3}, lambda t, p: ceilings.get((t, p)))
    {TP(topic='t', partition=0): 5}
    """
    out = {}
    for tp, offset in offsets.items():
        limit = ceiling(tp.topic, tp.partition)
        if limit is not None and limit > 0:
            out[tp] = min(offset, limit)
    return out


def transport_for(
    app: faust.App, fetch_max_wait: float, ceiling: Ceiling | None = None
) -> driver.Transport:
    """A Kafka transport for ``app`` whose consumers wait at most ``fetch_max_wait`` s and
    commit no further than ``ceiling`` allows (input topics only: ``ceiling`` is asked
    about every topic the app consumes)."""
    wait_ms = max(1, int(fetch_max_wait * 1000))

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_consumer(self, *args: Any, **kwargs: Any) -> Any:
            consumer = super()._create_consumer(*args, **kwargs)
            # Read by aiokafka when the consumer starts its fetcher.
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class BoundedConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _commit(self, offsets: Mapping[TP, int]) -> bool:
            if ceiling is not None:
                offsets = clamp(offsets, ceiling)
                if not offsets:
                    return False
            return await super()._commit(offsets)

    class Transport(driver.Transport):
        Consumer = BoundedConsumer

    return Transport(app.conf.broker_consumer, app)
