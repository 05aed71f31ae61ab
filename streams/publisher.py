"""Publishing events to crmstream's input topics with kafka-python."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgspec
from kafka import KafkaProducer


@dataclass
class PublishReport:
    """How a batch of lines went: how many were sent, and which lines were refused."""

    sent: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


class Publisher:
    """A Kafka producer for JSON events keyed by ``customer_id``.

    Sends are acknowledged by all in-sync replicas (``acks='all'``); :meth:`flush` blocks
    until everything sent so far is durable.
    """

    def __init__(self, bootstrap_servers: list[str], **config: Any) -> None:
        config = {"acks": "all", "linger_ms": 5, "retries": 5, **config}
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **config)

    def send(self, topic: str, value: bytes, key: str | bytes | None = None) -> None:
        """Queue one raw record (no validation)."""
        if isinstance(key, str):
            key = key.encode()
        self._producer.send(topic, key=key, value=value)

    def send_json(self, topic: str, event: Any) -> None:
        """Queue one event (a mapping or a ``msgspec.Struct``), keyed by its customer id."""
        value = msgspec.json.encode(event)
        customer_id = (
            event.get("customer_id")
            if isinstance(event, dict)
            else getattr(event, "customer_id", None)
        )
        self.send(topic, value, customer_id if isinstance(customer_id, str) else None)

    def send_lines(self, topic: str, lines: Iterable[str | bytes]) -> PublishReport:
        """Send JSON lines (blank lines skipped); lines that are not JSON objects are refused."""
        report = PublishReport()
        for number, line in enumerate(lines, start=1):
            raw = line.encode() if isinstance(line, str) else line
            if not raw.strip():
                continue
            try:
                event = msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                report.errors.append((number, f"not JSON: {exc}"))
                continue
            if not isinstance(event, dict):
                report.errors.append((number, "not a JSON object"))
                continue
            customer_id = event.get("customer_id")
            self.send(topic, raw.strip(), customer_id if isinstance(customer_id, str) else None)
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
