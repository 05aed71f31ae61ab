"""Acknowledgements of alerts ("handled by …"), shared by every dashboard through Redis.

An acknowledgement is stored once per alert in the hash ``crm:alerts:acks`` (the first
one wins; acknowledging again returns it unchanged), recorded in the stream
``crm:alerts:acks:log`` (who, when, which alert: the audit trail), and announced on the
channel ``crm:alerts:acks:events`` so every open page of every dashboard shows it at once.
Redis persistence (AOF) keeps them across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis

from crmstream.streams.customer_keys import ACKS_KEY, ACKS_LOG_KEY, acks_index_key

log = logging.getLogger(__name__)

ACKS_CHANNEL = "crm:alerts:acks:events"
#: Entries kept in the audit stream (approximately; trimmed by Redis).
ACKS_LOG_LENGTH = 1_000_000

# KEYS[1] acks hash, KEYS[2] audit stream; ARGV alert id, the encoded ack, who, when (ms),
# the stream's length. Returns the stored ack, 1 if it is new (0 if it was there), and the
# log entry's id.
_ACK = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  return {stored, 0, ''}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'alert_id', ARGV[1],
                         'by', ARGV[3], 'at', ARGV[4])
return {ARGV[2], 1, entry}
"""


class Ack(msgspec.Struct, frozen=True):
    """Who acknowledged an alert, and when (seconds since the epoch)."""

    alert_id: str
    by: str
    at: float


_decode_ack = msgspec.json.Decoder(Ack).decode
_encode = msgspec.json.encode


class AckStore:
    """Reads and writes acknowledgements; the Redis client is created on first use."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._client: aioredis.Redis | None = None
        self._script = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.redis_url)
            self._script = self._client.register_script(_ACK)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ack(self, alert_id: str, by: str, customer_id: str | None = None) -> tuple[Ack, bool]:
        """Acknowledge ``alert_id``; return the stored ack and whether it is new. The ack
        is indexed under ``customer_id``'s key, so that erasing them removes it."""
        _ = self.client
        now = time.time()
        ack = Ack(alert_id, by, round(now, 3))
        stored, created, entry = await self._script(  # type: ignore[misc]
            keys=[ACKS_KEY, ACKS_LOG_KEY],
            args=[alert_id, _encode(ack), by, int(now * 1000), ACKS_LOG_LENGTH],
        )
        result = _decode_ack(stored)
        if created:
            if customer_id is not None:
                entry_id = entry.decode() if isinstance(entry, bytes) else str(entry)
                await self.client.sadd(acks_index_key(customer_id), f"{alert_id}|{entry_id}")
            await self.client.publish(ACKS_CHANNEL, stored)
        return result, bool(created)

    async def get_many(self, alert_ids: list[str]) -> dict[str, Ack]:
        """The acknowledgements of those alerts that have one."""
        if not alert_ids:
            return {}
        values = await self.client.hmget(ACKS_KEY, alert_ids)
        return {i: _decode_ack(v) for i, v in zip(alert_ids, values, strict=True) if v}

    async def follow(self, on_ack: Callable[[Ack], None]) -> None:
        """Call ``on_ack`` for every acknowledgement any dashboard makes, until cancelled
        (resubscribing after a lost connection)."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(ACKS_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_ack(_decode_ack(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("acknowledgements: subscription lost (%s); retrying in 1s", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
