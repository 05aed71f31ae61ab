"""Publishing events to crmstream's input topics with kafka-python.

:class:`Publisher` validates every event against the topic's contract before sending, so
a publisher learns at once what the worker would otherwise dead-letter::

    from crmstream.streams.tools.publisher import Publisher

    with Publisher(["kafka:9092"]) as publisher:
        publisher.publish("crm.purchases", {
            "event_id": "o-1001", "customer_id": "alice",
            "occurred_at": "2026-05-01T10:00:00Z", "amount": 240.0, "cost": 90.0,
        })
    # leaving the block flushes: every event is acknowledged by the broker
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgspec
from kafka import KafkaProducer

from crmstream.schemas import InvalidEvent, decode
from crmstream.streams import topics

Headers = Sequence[tuple[str, bytes]]


@dataclass
class PublishReport:
    """How a batch of lines went: how many were sent, and which lines were refused why."""

    sent: int = 0
    errors: list[tuple[int, InvalidEvent]] = field(default_factory=list)


def validate(topic: str, value: bytes) -> Any:
    """Decode ``value`` with the contract of input ``topic``; raise :class:`InvalidEvent`.

    For topics that are not crmstream inputs, only checks that the value is a JSON object.
    """
    record_type = topics.INPUT_TYPES.get(topic)
    if record_type is not None:
        return decode(value, record_type)
    try:
        record = msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if not isinstance(record, dict):
        raise InvalidEvent("schema_violation", "expected a JSON object")
    return record


class Publisher:
    """A Kafka producer for JSON events keyed by ``customer_id``.

    Sends are acknowledged by all in-sync replicas (``acks='all'``) and idempotent;
    :meth:`flush` (and leaving a ``with`` block) blocks until everything sent so far is
    durable. ``config`` goes to :class:`kafka.KafkaProducer` (e.g. SASL and TLS options).
    """

    def __init__(self, bootstrap_servers: list[str], **config: Any) -> None:
        config = {"acks": "all", "linger_ms": 5, "retries": 5, **config}
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **config)

    def publish(self, topic: str, event: Any) -> None:
        """Validate one event (a mapping, a ``msgspec.Struct`` or JSON bytes) against the
        topic's contract and queue it keyed by its customer id; raise
        :class:`InvalidEvent` instead of sending something the worker would reject."""
        value = event if isinstance(event, bytes) else msgspec.json.encode(event)
        record = validate(topic, value)
        customer_id = record.get("customer_id") if isinstance(record, dict) else record.customer_id
        self.send(topic, value, customer_id if isinstance(customer_id, str) else None)

    def send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one raw record, unvalidated."""
        if isinstance(key, str):
            key = key.encode()
        self._producer.send(topic, key=key, value=value, headers=list(headers or ()))

    def send_lines(self, topic: str, lines: Iterable[str | bytes]) -> PublishReport:
        """Validate and send JSON lines (blank lines skipped); invalid lines are reported
        with their line number and not sent."""
        report = PublishReport()
        for number, line in enumerate(lines, start=1):
            raw = (line.encode() if isinstance(line, str) else line).strip()
            if not raw:
                continue
            try:
                self.publish(topic, raw)
            except InvalidEvent as exc:
                report.errors.append((number, exc))
                continue
            report.sent += 1
        return report

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until all queued records are acknowledged."""
        self._producer.flush(timeout=timeout)

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
