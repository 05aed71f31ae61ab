"""Where agents send their outputs: a seam between agent logic and the Kafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import faust
import msgspec

from crmstream.schemas import encode
from crmstream.streams import topics


class Output(msgspec.Struct, frozen=True):
    """A record to publish: topic, key, value bytes and headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def keyed_outputs(topic: str, records: Sequence[Any]) -> list[Output]:
    """Encode output records for ``topic``, each keyed by its ``customer_id``."""
    return [Output(topic, r.customer_id.encode(), encode(r)) for r in records]


class Sink(Protocol):
    """Publishes records and returns once the broker has acknowledged all of them."""

    async def send(self, outputs: Sequence[Output]) -> None: ...


class FaustSink:
    """A :class:`Sink` on the Faust app's producer (raw bytes, acknowledged sends)."""

    def __init__(self, app: faust.App) -> None:
        self._topics = {
            name: app.topic(name, key_serializer="raw", value_serializer="raw")
            for name in topics.OUTPUTS
        }

    async def send(self, outputs: Sequence[Output]) -> None:
        futures = [
            await self._topics[o.topic].send(key=o.key, value=o.value, headers=list(o.headers))
            for o in outputs
        ]
        await asyncio.gather(*futures)
