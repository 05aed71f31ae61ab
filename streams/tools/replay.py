"""Reading dead letters back: list them, and replay them (optionally fixed) to their topics.

Replays are tracked by a consumer group of their own (``<app id>-deadletter-replay``): a
plain ``replay`` sends each dead letter at most once, from where the previous replay
stopped. A replayed record carries the header ``crm.replay.of`` naming the dead letter it
came from. Workers apply a replayed event once: its ``event_id`` is remembered, so
replaying the same fix twice changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from crmstream.schemas import DeadLetterReason, DeadLetterRecord, DeadLetterSource, InvalidEvent
from crmstream.streams import topics
from crmstream.streams.tools.publisher import Publisher, validate
from crmstream.streams.tools.topicreader import read_topic

REPLAY_HEADER = "crm.replay.of"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """Turn ``--since`` (a duration like ``30m``, ``2h``, ``7d``, or an ISO 8601 time) into a
    Unix timestamp.

    Examples
    --------
    >>> parse_since("2h", now=10_000.0)
    2800.0
    >>> parse_since("2026-01-01T00:00:00Z")
    1767225600.0
    """
    match = _DURATION.match(text.strip())
    if match:
        now = time.time() if now is None else now
        return now - float(match[1]) * _UNITS[match[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since takes a duration (30m, 2h, 7d) or an ISO 8601 time, not {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def to_record(message: ConsumerRecord) -> DeadLetterRecord:
    """Present a record of ``crm.deadletter`` as a :class:`DeadLetterRecord`."""
    headers = {name: value.decode("utf-8", "replace") for name, value in message.headers or ()}
    timestamp = headers.get("crm.source.timestamp")
    value = message.value
    text: str | None = None
    encoded: str | None = None
    if value is not None:
        try:
            text = value.decode()
        except UnicodeDecodeError:
            encoded = base64.b64encode(value).decode()
    return DeadLetterRecord(
        deadletter_partition=message.partition,
        deadletter_offset=message.offset,
        source=DeadLetterSource(
            topic=headers.get("__connect.errors.topic", ""),
            partition=int(headers.get("__connect.errors.partition", -1)),
            offset=int(headers.get("__connect.errors.offset", -1)),
            timestamp=float(timestamp) if timestamp else None,
        ),
        reason=DeadLetterReason(
            code=headers.get("crm.error.code", "unknown"),
            path=headers.get("crm.error.path", "$"),
            message=headers.get("crm.error.message", ""),
        ),
        key=message.key.decode("utf-8", "replace") if message.key is not None else None,
        value=text,
        value_base64=encoded,
    )


def original_value(record: DeadLetterRecord) -> bytes | None:
    """The record's value as bytes (from ``value`` or ``value_base64``)."""
    if record.value is not None:
        return record.value.encode()
    if record.value_base64 is not None:
        try:
            return base64.b64decode(record.value_base64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"value_base64 is not base64: {exc}") from None
    return None


def dead_letters(
    bootstrap: list[str],
    since: float | None = None,
    reasons: Iterable[str] = (),
    start: dict[int, int] | None = None,
    security: Mapping[str, Any] | None = None,
) -> Iterator[tuple[ConsumerRecord, DeadLetterRecord]]:
    """Dead letters on the topic, optionally only those written after ``since`` (Unix
    time) with one of the reason codes in ``reasons``, from ``start`` offsets."""
    wanted = set(reasons)
    for message in read_topic(bootstrap, topics.DEADLETTER, start=start, security=security):
        if since is not None and message.timestamp / 1000 < since:
            continue
        record = to_record(message)
        if wanted and record.reason.code not in wanted:
            continue
        yield message, record


@dataclass
class ReplayReport:
    """What a replay did."""

    replayed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def _where(record: DeadLetterRecord) -> str:
    return f"dead letter {record.deadletter_partition}:{record.deadletter_offset}"


def _check_source(record: DeadLetterRecord) -> None:
    """Raise ValueError unless the record came from an input topic (so can go back)."""
    if record.source.topic not in topics.INPUTS:
        raise ValueError(f"came from {record.source.topic!r}, not an input topic")


def replay_key(value: bytes | None, key: str | None) -> str | None:
    """The key a record is replayed with: the ``customer_id`` of its value, which is the
    key the worker requires (so ``key_mismatch`` dead letters replay keyed right), or the
    original key when the value has none.

    Examples
    --------
    >>> replay_key(b'{"customer_id": "alice", "amount": 1}', "bob")
    'alice'
    >>> replay_key(b'not json', "bob"), replay_key(b'[1]', None)
    ('bob', None)
    """
    try:
        decoded = msgspec.json.decode(value) if value else None
    except msgspec.DecodeError:
        return key
    customer_id = decoded.get("customer_id") if isinstance(decoded, dict) else None
    return customer_id if isinstance(customer_id, str) else key


def _replay_one(publisher: Publisher, record: DeadLetterRecord, value: bytes | None) -> None:
    try:
        _check_source(record)
    except ValueError as exc:
        raise ValueError(f"{_where(record)} {exc}") from None
    marker = f"{topics.DEADLETTER}:{record.deadletter_partition}:{record.deadletter_offset}"
    publisher.send(
        record.source.topic,
        value or b"",
        replay_key(value, record.key),
        headers=[(REPLAY_HEADER, marker.encode())],
    )


def replay_pending(
    bootstrap: list[str],
    group: str,
    reasons: Iterable[str] = (),
    replay_all: bool = False,
    security: Mapping[str, Any] | None = None,
) -> ReplayReport:
    """Re-publish the original bytes of the dead letters not replayed yet (all of them with
    ``replay_all``) to their source topics, and remember how far this group got."""
    report = ReplayReport()
    security = security or {}
    tracker = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **security
    )
    try:
        partitions = sorted(tracker.partitions_for_topic(topics.DEADLETTER) or ())
        tps = [TopicPartition(topics.DEADLETTER, p) for p in partitions]
        start: dict[int, int] = {}
        if not replay_all:
            for tp in tps:
                committed = tracker.committed(tp)
                if committed is not None:
                    start[tp.partition] = committed
        reached: dict[TopicPartition, int] = {}
        wanted = set(reasons)
        with Publisher(bootstrap, **security) as publisher:
            for message, record in dead_letters(bootstrap, start=start, security=security):
                reached[TopicPartition(message.topic, message.partition)] = message.offset + 1
                if (wanted and record.reason.code not in wanted) or message.value is None:
                    report.skipped += 1  # tombstones have nothing to replay
                    continue
                _replay_one(publisher, record, message.value)
                report.replayed += 1
            publisher.flush()
        if reached:
            tracker.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in reached.items()})
    finally:
        tracker.close()
    return report


def replay_fixed(
    bootstrap: list[str], lines: Iterable[bytes], security: Mapping[str, Any] | None = None
) -> ReplayReport:
    """Re-publish corrected dead letters: JSON lines in the format of ``deadletter list
    --json`` whose ``value`` (or ``value_base64``) has been edited.

    Every record is validated first; if any is still invalid, nothing is sent and the
    report lists why.
    """
    report = ReplayReport()
    records: list[DeadLetterRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(msgspec.json.decode(line, type=DeadLetterRecord))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            report.errors.append(f"line {number}: not a dead-letter record: {exc}")
    fixed: list[tuple[DeadLetterRecord, bytes | None]] = []
    for record in records:
        where = _where(record)
        try:
            _check_source(record)
            value = original_value(record)
            validate(record.source.topic, value or b"")
        except InvalidEvent as exc:
            report.errors.append(f"{where}: still invalid: {exc}")
        except ValueError as exc:
            report.errors.append(f"{where}: {exc}")
        else:
            fixed.append((record, value))
    if report.errors:
        return report
    with Publisher(bootstrap, **(security or {})) as publisher:
        for record, value in fixed:
            _replay_one(publisher, record, value)
            report.replayed += 1
        publisher.flush()
    return report
