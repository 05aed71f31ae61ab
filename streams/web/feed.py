"""The live alert feed of one dashboard process: ``crm.alerts`` read from Kafka.

Each dashboard runs one consumer of ``crm.alerts`` (no consumer group: it reads every
partition, commits nothing and competes with nobody), keeps the most recent alerts in
memory and hands each new one to every open page. Alerts from all workers reach every
dashboard, and nothing is read from a worker's memory.

Reconnects neither lose nor repeat an alert: the id of every server-sent event is a
:class:`Cursor`, the next offset to read on each partition of ``crm.alerts`` once this
event is delivered (``0:15.1:7``). A browser sends the last id it saw back as
``Last-Event-ID``; the feed resumes at exactly those offsets, from memory when the buffer
still holds them and from Kafka when it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from crmstream.schemas.outputs import Alert
from crmstream.streams import topics

log = logging.getLogger(__name__)

_decode_alert = msgspec.json.Decoder(Alert).decode
_CURSOR = re.compile(r"^(\d{1,5}:\d{1,19})(\.\d{1,5}:\d{1,19}){0,1023}$")


class Cursor(dict[int, int]):
    """Partition → next offset to read; rendered as the SSE event id ``0:15.1:7``.

    Examples
    --------
    >>> cursor = Cursor.parse("0:15.3:7")
    >>> cursor[3], cursor.render()
    (7, '0:15.3:7')
    >>> Cursor.parse("0:x")
    Traceback (most recent call last):
    ...
    ValueError: a Last-Event-ID looks like 0:15.1:7 (partition:offset, dot-separated)
    """

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Read a cursor from an event id; ``ValueError`` if it is not one."""
        if not _CURSOR.match(text):
            raise ValueError(
                "a Last-Event-ID looks like 0:15.1:7 (partition:offset, dot-separated)"
            )
        pairs = (part.split(":") for part in text.split("."))
        return cls((int(p), int(o)) for p, o in pairs)

    def render(self) -> str:
        """The cursor as an event id."""
        return ".".join(f"{p}:{o}" for p, o in sorted(self.items()))


@dataclass(frozen=True, slots=True)
class FeedItem:
    """An alert and where it is on ``crm.alerts``."""

    partition: int
    offset: int
    alert: Alert


class Subscription:
    """What one open page receives: feed items and acknowledgements, in order."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[FeedItem | dict[str, object] | None] = asyncio.Queue(capacity)
        self.overflowed = False

    def put(self, item: FeedItem | dict[str, object]) -> None:
        """Queue ``item``; a page that cannot keep up is ended (it reconnects and resumes)."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class AlertFeed:
    """Reads ``crm.alerts`` into a bounded buffer and fans new alerts out to subscribers."""

    def __init__(
        self,
        bootstrap: list[str],
        capacity: int = 20000,
        topic: str = topics.ALERTS,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        #: TLS/SASL options of its consumers (``credentials.aiokafka_options``).
        self.security = dict(security or {})
        self.capacity = capacity
        self.topic = topic
        self.buffer: deque[FeedItem] = deque()
        #: Per partition: the lowest offset the buffer can serve (older ones are in Kafka).
        self.floor: dict[int, int] = {}
        #: Per partition: the next offset the consumer will read.
        self.positions: dict[int, int] = {}
        self.subscribers: set[Subscription] = set()
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._by_id: dict[str, FeedItem] = {}

    async def start(self) -> None:
        """Start reading in the background (the topic may not exist yet)."""
        self._task = asyncio.create_task(self._run(), name="alert-feed")

    async def stop(self) -> None:
        """Stop reading and end every subscription."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        for subscription in list(self.subscribers):
            subscription.put(subscription_end())

    def get(self, alert_id: str) -> FeedItem | None:
        """The buffered alert with this id (the newest copy), or ``None``."""
        return self._by_id.get(alert_id)

    def forget(self, customer_id: str) -> int:
        """Drop a customer's alerts from the buffer (they were erased); returns how many.
        Kafka keeps them until the topic's retention: consumers follow ``crm.erasures``."""
        kept = deque(i for i in self.buffer if i.alert.customer_id != customer_id)
        dropped = len(self.buffer) - len(kept)
        if dropped:
            self.buffer = kept
            self._by_id = {
                k: v for k, v in self._by_id.items() if v.alert.customer_id != customer_id
            }
        return dropped

    def recent(self) -> list[FeedItem]:
        """Every buffered alert, oldest first."""
        return list(self.buffer)

    def subscribe(self, cursor: Cursor | None, backlog: int, capacity: int = 10000):
        """Register a subscriber; return it, the buffered items it must get first, the
        gaps it must read from Kafka first (partition → (from, to) offsets), and its start
        cursor. No ``await`` here, so nothing arrives between the snapshot and the queue."""
        subscription = Subscription(capacity)
        self.subscribers.add(subscription)
        gaps: dict[int, tuple[int, int]] = {}
        if cursor is None:
            items = list(self.buffer)[-backlog:] if backlog else []
            start = Cursor(self.positions)
            for item in reversed(items):
                start[item.partition] = item.offset
        else:
            start = Cursor(cursor)
            items = [i for i in self.buffer if i.offset >= cursor.get(i.partition, 0)]
            for partition, floor in self.floor.items():
                wanted = cursor.get(partition, 0)
                if wanted < floor:  # at most a buffer's worth is read back from Kafka
                    gaps[partition] = (max(wanted, floor - self.capacity), floor)
        return subscription, items, gaps, start

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber (its page closed)."""
        self.subscribers.discard(subscription)

    def broadcast(self, message: dict[str, object]) -> None:
        """Send a non-alert message (an acknowledgement) to every subscriber."""
        for subscription in list(self.subscribers):
            subscription.put(message)

    async def read_range(self, gaps: dict[int, tuple[int, int]]) -> list[FeedItem]:
        """The alerts at ``[from, to)`` of each partition, read from Kafka."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            **self.security,
        )
        await consumer.start()
        items: list[FeedItem] = []
        try:
            tps = {TopicPartition(self.topic, p): span for p, span in gaps.items()}
            consumer.assign(list(tps))
            for tp, (low, _) in tps.items():
                consumer.seek(tp, low)
            pending = {tp for tp, (low, high) in tps.items() if low < high}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000)
                if not batches:
                    break  # the records were deleted by retention: nothing more to get
                for tp, records in batches.items():
                    high = tps[tp][1]
                    items.extend(self._decode(r.partition, r.offset, r.value) for r in records)
                    if records[-1].offset + 1 >= high:
                        pending.discard(tp)
        finally:
            await consumer.stop()
        return [
            item
            for item in items
            if item.alert is not None and item.offset < gaps[item.partition][1]
        ]

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert feed: reading %s failed; retrying in 1s", self.topic)
                if self._consumer is not None:
                    with contextlib.suppress(Exception):
                        await self._consumer.stop()
                    self._consumer = None
                await asyncio.sleep(1.0)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            **self.security,
        )
        self._consumer = consumer
        await consumer.start()
        partitions = await self._partitions(consumer)
        tps = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(tps)
        if not self.positions:
            ends = await consumer.end_offsets(tps)
            beginnings = await consumer.beginning_offsets(tps)
            keep = max(1, self.capacity // len(tps))
            for tp in tps:
                self.positions[tp.partition] = max(beginnings[tp], ends[tp] - keep)
                self.floor[tp.partition] = self.positions[tp.partition]
        for tp in tps:
            consumer.seek(tp, self.positions.get(tp.partition, 0))
            self.floor.setdefault(tp.partition, self.positions.get(tp.partition, 0))
        self.ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._add(self._decode(record.partition, record.offset, record.value))

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[int]:
        while True:
            # A fresh metadata request (the consumer's cached metadata only covers topics it
            # was told of when it started; ``topics()`` does the same request).
            cluster = await consumer._client.fetch_all_metadata()
            found = cluster.partitions_for_topic(self.topic)
            if found:
                return sorted(found)
            await asyncio.sleep(0.5)

    def _decode(self, partition: int, offset: int, value: bytes | None) -> FeedItem:
        try:
            alert = _decode_alert(value or b"")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning(
                "alert feed: %s[%d]@%d is not an alert: %s", self.topic, partition, offset, exc
            )
            alert = None
        return FeedItem(partition, offset, alert)  # type: ignore[arg-type]

    def _add(self, item: FeedItem) -> None:
        self.positions[item.partition] = item.offset + 1
        if item.alert is None:
            return
        self.buffer.append(item)
        self._by_id[item.alert.alert_id] = item
        while len(self.buffer) > self.capacity:
            old = self.buffer.popleft()
            self.floor[old.partition] = old.offset + 1
            if self._by_id.get(old.alert.alert_id) is old:
                del self._by_id[old.alert.alert_id]
        for subscription in list(self.subscribers):
            subscription.put(item)


def subscription_end() -> dict[str, object]:
    """The message that ends a subscription (the dashboard stops)."""
    return {"type": "end"}


def after(items: Iterable[FeedItem], cursor: Cursor) -> list[FeedItem]:
    """The items at or past ``cursor`` (``cursor`` is not changed).

    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> a = Alert(alert_id="a", customer_id="c", kind="anomaly", severity="warning",
    ...           score=1.0, reason="r", occurred_at=at, source_event_ids=["e"])
    >>> [i.offset for i in after([FeedItem(0, 4, a), FeedItem(0, 5, a)], Cursor({0: 5}))]
    [5]
    """
    return [i for i in items if i.offset >= cursor.get(i.partition, 0)]
