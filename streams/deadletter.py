"""Dead-letter records: the original bytes plus why and where they were rejected.

A dead-letter record on ``crm.deadletter`` keeps the original key and value byte for byte
(so it can be fixed and replayed) and carries its metadata in headers. The ``__connect.*``
headers follow Kafka Connect's dead-letter-queue convention, so existing DLQ tooling can
read them; the ``crm.error.*`` headers add the machine-readable reason.
"""

from __future__ import annotations

from crmstream.schemas.codec import InvalidEvent
from crmstream.streams.sink import Output
from crmstream.streams.topics import DEADLETTER


def deadletter_headers(
    error: InvalidEvent,
    topic: str,
    partition: int,
    offset: int,
    timestamp: float | None = None,
) -> list[tuple[str, bytes]]:
    """Headers for a rejected record.

    Examples
    --------
    >>> headers = dict(deadletter_headers(
    ...     InvalidEvent("invalid_json", "unexpected end"), "crm.purchases", 3, 42))
    >>> headers["crm.error.code"], headers["__connect.errors.offset"]
    (b'invalid_json', b'42')
    """
    headers = [
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.exception.class.name", b"crmstream.InvalidEvent"),
        ("__connect.errors.exception.message", str(error).encode()),
        ("crm.error.code", error.code.encode()),
        ("crm.error.path", error.path.encode()),
        ("crm.error.message", error.message.encode()),
    ]
    if timestamp is not None:
        headers.append(("crm.source.timestamp", repr(timestamp).encode()))
    return headers


def deadletter(
    error: InvalidEvent,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp: float | None = None,
) -> Output:
    """The dead-letter record for a rejected input record (original key and value kept)."""
    headers = deadletter_headers(error, topic, partition, offset, timestamp)
    return Output(DEADLETTER, key, value, tuple(headers))
