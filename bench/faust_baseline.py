"""The bare Faust worker that ``bench/mixed.py`` compares crmstream with.

One agent over the three input topics, like crmstream's, with the same batching
(``stream.take_events(CRM_BATCH_SIZE, within=CRM_BATCH_WAIT)``), fetch wait and size
(``CRM_FETCH_MAX_WAIT``, ``CRM_FETCH_PARTITION_BYTES``), session timeout and heartbeat;
per batch it only counts the events into the Redis hash
``bench:faust:<CRM_APP_ID>:counts`` (field ``<topic>:<partition>``) with one pipeline of
``HINCRBY``, one per topic partition in the batch. No decoding, no state, no output:
what is left is Faust, the Kafka client and one Redis round trip per batch.

    CRM_KAFKA_URL=... CRM_REDIS_URL=... python bench/faust_baseline.py
"""

from __future__ import annotations

import tempfile
from collections import Counter

import faust
import redis.asyncio as aioredis

from crmstream.streams import topics
from crmstream.streams.settings import Settings
from crmstream.streams.transport import transport_for


def counts_key(group: str) -> str:
    """The Redis hash the baseline of consumer group ``group`` counts into."""
    return f"bench:faust:{group}:counts"


def create_app(settings: Settings) -> faust.App:
    """The counting app: one agent over the three input topics, as crmstream has."""
    app = faust.App(
        settings.app_id,
        datadir=settings.data_dir or tempfile.mkdtemp(prefix="crmstream-bench-faust-"),
        broker=settings.kafka_url,
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=settings.fetch_partition_bytes,
        web_enabled=False,
    )
    app.transport = transport_for(app, settings.fetch_max_wait)
    client = aioredis.Redis.from_url(settings.redis_url)
    key = counts_key(settings.app_id)
    inputs = app.topic(
        *topics.INPUTS,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )

    async def count(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            counts = Counter(f"{e.message.topic}:{e.message.partition}" for e in events)
            pipe = client.pipeline(transaction=False)
            for field, n in counts.items():
                pipe.hincrby(key, field, n)
            await pipe.execute()

    app.agent(inputs, name="count", concurrency=1)(count)
    return app


def main() -> None:
    settings = Settings()
    app = create_app(settings)
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
