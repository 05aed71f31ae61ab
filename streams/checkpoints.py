"""Authenticated checkpoints of a partition's shared model weights, in Redis.

A checkpoint is the pickle of one partition's models (their size does not depend on the
number of customers: per-customer model state lives with each customer) together with the
input offsets it includes. Pickles can run code when loaded, so every blob is signed with
an HMAC-SHA256 keyed by ``CRM_CHECKPOINT_SECRET`` and the signature is checked *before*
anything is unpickled: a blob that was tampered with, or written by a deployment with
another secret, is refused with :class:`CheckpointRefused` and never loaded.

Layout of a blob: ``b"crm1"`` (format), the 32-byte HMAC of the payload, the payload.
Keys: ``crm:models:<partition>``.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from typing import Any

import redis.asyncio as aioredis

from crmstream.streams.redis_client import connect

#: Format marker at the start of every checkpoint blob.
MAGIC = b"crm1"
_DIGEST = hashlib.sha256().digest_size


class CheckpointRefused(RuntimeError):
    """A checkpoint failed authentication (tampered, truncated or another secret)."""


def checkpoint_key(partition: int) -> str:
    """Redis key of the checkpoint of partition ``partition``'s models.

    Examples
    --------
    >>> checkpoint_key(3)
    'crm:models:3'
    """
    return f"crm:models:{partition}"


def seal(state: Any, secret: bytes) -> bytes:
    """Pickle ``state`` and sign it.

    Examples
    --------
    >>> blob = seal({"a": 1}, b"k")
    >>> blob[:4], open_sealed(blob, b"k", "example")
    (b'crm1', {'a': 1})
    """
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + hmac.new(secret, payload, hashlib.sha256).digest() + payload


def open_sealed(blob: bytes, secret: bytes, where: str) -> Any:
    """Check a blob's signature, then unpickle it; :class:`CheckpointRefused` otherwise.

    Examples
    --------
    >>> blob = seal([1, 2], b"k")
    >>> try:
    ...     open_sealed(blob[:-1] + b"x", b"k", "crm:models:0")
    ... except CheckpointRefused as refused:
    ...     print(str(refused)[:45])
    checkpoint crm:models:0 failed authentication
    """
    head, signature = blob[: len(MAGIC)], blob[len(MAGIC) : len(MAGIC) + _DIGEST]
    payload = blob[len(MAGIC) + _DIGEST :]
    if head != MAGIC:
        raise CheckpointRefused(
            f"checkpoint {where} is not in a format this version reads (no {MAGIC!r} "
            "header); refusing to load it (delete the key to start afresh)"
        )
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise CheckpointRefused(
            f"checkpoint {where} failed authentication: it was modified or written with "
            "another CRM_CHECKPOINT_SECRET; refusing to load it (delete the key to start "
            "that partition's models afresh)"
        )
    return pickle.loads(payload)  # authenticated above


class CheckpointStore:
    """Reads and writes authenticated checkpoints; the Redis client is created lazily."""

    def __init__(self, redis_url: str, secret: bytes) -> None:
        self.redis_url = redis_url
        self._secret = secret
        self._client: aioredis.Redis | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = connect(self.redis_url)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def load(self, partitions: list[int]) -> dict[int, Any]:
        """The checkpointed states of ``partitions`` that exist (one round trip)."""
        if not partitions:
            return {}
        # One GET per partition in a pipeline, not an MGET: on a cluster the partitions'
        # keys live in different slots.
        pipe = self.client.pipeline(transaction=False)
        for partition in partitions:
            pipe.get(checkpoint_key(partition))
        blobs = await pipe.execute()
        return {
            p: open_sealed(blob, self._secret, checkpoint_key(p))
            for p, blob in zip(partitions, blobs, strict=True)
            if blob is not None
        }

    def seal(self, state: Any) -> bytes:
        """A partition's state, pickled and signed with this store's secret (the state is
        captured now: later changes to its objects are not in the blob)."""
        return seal(state, self._secret)

    async def write(self, blobs: dict[int, bytes]) -> int:
        """Write sealed checkpoints per partition (one round trip); returns the bytes
        written."""
        if not blobs:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for partition, blob in blobs.items():
            pipe.set(checkpoint_key(partition), blob)
        await pipe.execute()
        return sum(len(blob) for blob in blobs.values())

    async def save(self, states: dict[int, Any]) -> int:
        """Write the checkpoints of ``states`` (one round trip); returns the bytes written."""
        return await self.write({p: self.seal(state) for p, state in states.items()})
