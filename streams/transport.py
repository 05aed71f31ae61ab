"""Faust's Kafka transport with a bounded fetch wait.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. Apache Kafka answers a
fetch as soon as data arrives, so the wait costs nothing there; brokers that hold a fetch
until the wait expires (Tansu, the embedded development broker, does) add up to that
much latency to every alert. :func:`transport_for` gives the app a transport whose
consumers wait at most ``CRM_FETCH_MAX_WAIT`` seconds.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver


def transport_for(app: faust.App, fetch_max_wait: float) -> driver.Transport:
    """A Kafka transport for ``app`` whose consumers wait at most ``fetch_max_wait`` s."""
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

    class Transport(driver.Transport):
        Consumer = BoundedConsumer

    return Transport(app.conf.broker_consumer, app)
