"""Online models, one replica per input partition, checkpointed in Redis.

Every customer's events are on one partition number of each input topic (the topics are
keyed by ``customer_id`` and have the same partition count), so the models for partition
``p`` learn from ``crm.chats`` and ``crm.feedback`` partition ``p`` and follow that
partition from worker to worker, like the profiles do. Replicas never share state, so
several workers cannot corrupt one another's models.

A replica remembers, per source partition, the last offset it has learned and the recent
event ids it learned from; it learns an event only once. Its checkpoint (key
``crm:models:<name>:<p>``, a pickle of the models with those offsets) is written after every
batch it learned from and *before* the batch's Kafka offsets are committed, so after a
crash the events that the checkpoint lacks are redelivered and learned, and those it has
are skipped. The checkpoint is pickled: Redis must be trusted storage (ACL user, TLS).
"""

from __future__ import annotations

import logging
import pickle
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crmstream.streams.profiles import ApplyResult, Delivery, ProfileStore

log = logging.getLogger(__name__)

#: Recent event ids a replica remembers to skip re-sent copies it has learned already.
RECENT_IDS = 10_000

ModelFactory = Callable[[], dict[str, Any]]
Teach = Callable[[dict[str, Any], Delivery[Any]], bool]


def checkpoint_key(name: str, partition: int) -> str:
    """Redis key of the checkpoint of the ``name`` models of partition ``partition``."""
    return f"crm:models:{name}:{partition}"


@dataclass
class Replica:
    """The models of one partition and what they have learned."""

    partition: int
    models: dict[str, Any]
    offsets: dict[str, int] = field(default_factory=dict)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_IDS))
    learned: int = 0
    dirty: bool = False

    def should_learn(self, delivery: Delivery[Any]) -> bool:
        """Whether ``delivery`` is new to these models."""
        if delivery.offset <= self.offsets.get(delivery.source, -1):
            return False
        return delivery.event_id not in self.recent

    def seen(self, delivery: Delivery[Any], learned: bool) -> None:
        """Record that ``delivery`` has been considered, and whether it taught anything.

        Only learning makes a new checkpoint necessary: an event that teaches nothing
        teaches nothing again if it is redelivered, so its offset can wait for the next
        checkpoint (pickling the models after every batch of chit-chat would be costly).
        """
        self.offsets[delivery.source] = max(delivery.offset, self.offsets.get(delivery.source, -1))
        self.recent.append(delivery.event_id)
        if learned:
            self.learned += 1
            self.dirty = True

    def dumps(self) -> bytes:
        return pickle.dumps(
            {
                "models": self.models,
                "offsets": self.offsets,
                "recent": list(self.recent),
                "learned": self.learned,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def loads(cls, partition: int, blob: bytes) -> Replica:
        state = pickle.loads(blob)
        return cls(
            partition,
            state["models"],
            state["offsets"],
            deque(state["recent"], maxlen=RECENT_IDS),
            state["learned"],
        )


class ModelReplicas:
    """The replicas this worker holds, loaded from their checkpoints on first use."""

    def __init__(self, store: ProfileStore, factory: ModelFactory, name: str) -> None:
        self.store = store
        self.factory = factory
        self.name = name
        self._replicas: dict[int, Replica] = {}

    def __getitem__(self, partition: int) -> Replica:
        """A replica already loaded with :meth:`load`."""
        return self._replicas[partition]

    async def load(self, partitions: Iterable[int]) -> None:
        """Make sure the replicas of ``partitions`` are in memory (from checkpoints)."""
        missing = sorted(set(partitions) - self._replicas.keys())
        if not missing:
            return
        blobs = await self.store.raw_client.mget([checkpoint_key(self.name, p) for p in missing])
        for partition, blob in zip(missing, blobs, strict=True):
            if blob is None:
                replica = Replica(partition, self.factory())
            else:
                replica = Replica.loads(partition, blob)
                log.info(
                    "restored %s models of partition %d (%d events learned)",
                    self.name,
                    partition,
                    replica.learned,
                )
            self._replicas[partition] = replica

    async def prepare(self, deliveries: Iterable[Delivery[Any]]) -> None:
        """Load the replicas a batch of deliveries needs (an ``ingest`` ``before`` hook)."""
        await self.load({d.partition for d in deliveries})

    async def learn(self, result: ApplyResult, teach: Teach) -> None:
        """Teach the replicas the events ``result`` applied, each once, then checkpoint.

        ``teach(models, delivery)`` updates the models and returns whether it learned
        anything from the delivery.
        """
        for delivery in result.learnable:
            replica = self[delivery.partition]
            if not replica.should_learn(delivery):
                continue
            replica.seen(delivery, teach(replica.models, delivery))
        await self.checkpoint()

    async def checkpoint(self) -> None:
        """Write the checkpoint of every replica that changed since the last one."""
        dirty = [r for r in self._replicas.values() if r.dirty]
        if not dirty:
            return
        pipe = self.store.raw_client.pipeline(transaction=False)
        for replica in dirty:
            pipe.set(checkpoint_key(self.name, replica.partition), replica.dumps())
        await pipe.execute()
        for replica in dirty:
            replica.dirty = False

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget replicas of partitions this worker no longer owns (another worker may
        now teach them; they are reloaded from the checkpoint if they come back)."""
        for partition in partitions:
            self._replicas.pop(partition, None)
