"""Reading a topic to its end with kafka-python (for tools, not for the workers)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def read_topic(
    bootstrap: list[str],
    topic: str,
    start: dict[int, int] | None = None,
    idle: float = 0.5,
    group_id: str | None = None,
    security: Mapping[str, Any] | None = None,
) -> Iterator[ConsumerRecord]:
    """Yield every record of ``topic`` from ``start`` (partition → offset; default: the
    beginning) up to its current end, partition by partition in offset order.

    The end is where every partition's position has reached the end offset taken at the
    start *and* one more poll of ``idle`` seconds finds nothing: some Kafka-protocol
    brokers (Tansu) answer ListOffsets with the base offset of the last batch rather than
    the high watermark, so the end offset alone would stop one batch early. ``security``:
    TLS/SASL options of the client (:func:`~crmstream.streams.credentials.kafka_python_options`).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(security or {}),
    )
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        for tp in tps:
            if start and tp.partition in start:
                consumer.seek(tp, start[tp.partition])
            else:
                consumer.seek_to_beginning(tp)
        ends = consumer.end_offsets(tps)
        while True:
            batch = consumer.poll(timeout_ms=int(idle * 1000))
            for tp in sorted(batch, key=lambda t: t.partition):
                yield from batch[tp]
            if not batch and all(consumer.position(tp) >= ends[tp] for tp in tps):
                return
    finally:
        consumer.close()
