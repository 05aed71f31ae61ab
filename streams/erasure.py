"""Erasing a customer: every key crmstream keeps of them, then a notice on ``crm.erasures``.

Everything crmstream keeps of one customer is in Redis (Kafka topics hold events and
outputs only until their retention):

* keys of their own, all under their hash tag ``crm:{<id>}:...``: listed in
  :data:`~crmstream.streams.customer_keys.CUSTOMER_KEYS`, the one registry of
  per-customer keys, where a feature that adds one registers it;
* entries in shared keys: their id in the set of customers, their propensity snapshots
  in the per-partition due indexes, their alerts' acknowledgements (and the entries of
  the acknowledgement log), found through their acknowledgement index.

Shared model weights hold nothing per customer (a design rule; the text models learn
redacted text), so they need no change.

:class:`Eraser` removes all of it, twice (the second pass, ``settle`` seconds later,
removes what a batch already in a worker's hands wrote meanwhile), then publishes an
:class:`~crmstream.schemas.outputs.Erasure` on ``crm.erasures``. With
``CRM_ERASURE_POLICY=deadletter`` it first adds the keyed hash of the id (never the id) to
the set ``crm:erased``: workers then dead-letter the customer's later events with reason
``erased`` (their key is kept, their value is not: it would be the customer's data).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from faust.types import Message

from crmstream.models.contact import ContactKeys
from crmstream.schemas import InvalidEvent
from crmstream.schemas.inputs import CUSTOMER_ID_PATTERN
from crmstream.schemas.outputs import Erasure, deterministic_id
from crmstream.streams import topics
from crmstream.streams.customer_keys import (
    ACKS_KEY,
    ACKS_LOG_KEY,
    acks_index_key,
    customer_keys,
)
from crmstream.streams.deadletter import deadletter
from crmstream.streams.due import done_key, due_key, pair_key, pairs_key
from crmstream.streams.profiles import CUSTOMERS_KEY
from crmstream.streams.sink import Output, keyed_outputs

log = logging.getLogger(__name__)

#: Keyed hashes of erased customer ids (with ``CRM_ERASURE_POLICY=deadletter``).
ERASED_KEY = "crm:erased"
_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)


def erased_marker(keys: ContactKeys, customer_id: str) -> str:
    """What ``crm:erased`` holds for an erased id: its keyed hash, not the id."""
    return keys.digest("id", customer_id)


@dataclass
class ErasureReport:
    """What one erasure removed, and the notice it published."""

    customer_id: str
    keys: int = 0
    shared_entries: int = 0
    notice: Erasure | None = None
    policy: str = "deadletter"
    details: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "keys_removed": self.keys,
            "shared_entries_removed": self.shared_entries,
            "erasure_id": self.notice.erasure_id if self.notice else None,
            "policy": self.policy,
        }


Publish = Callable[[Sequence[Output]], Any]


class Eraser:
    """Erases customers from a Redis (see the module); ``publish`` sends the notice (a
    callable that sends outputs and returns once they are acknowledged, sync or async)."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: ContactKeys,
        partitions: int,
        publish: Publish,
        policy: str = "deadletter",
        settle: float = 1.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self.publish = publish
        self.policy = policy
        self.settle = settle

    async def erase(self, customer_id: str) -> ErasureReport:
        """Erase one customer; raise ``ValueError`` for a malformed id."""
        if not _CUSTOMER_ID.match(customer_id):
            raise ValueError(f"a customer id matches {CUSTOMER_ID_PATTERN}")
        report = ErasureReport(customer_id, policy=self.policy)
        if self.policy == "deadletter":
            await self.client.sadd(ERASED_KEY, erased_marker(self.keys, customer_id))
        await self._remove(customer_id, report)
        if self.settle > 0:
            await asyncio.sleep(self.settle)
            await self._remove(customer_id, report)
        at = datetime.now(UTC)
        notice = Erasure(
            erasure_id=deterministic_id("erasure", customer_id, at.isoformat()),
            customer_id=customer_id,
            erased_at=at,
        )
        sent = self.publish(keyed_outputs(topics.ERASURES, [notice]))
        if asyncio.iscoroutine(sent):
            await sent
        report.notice = notice
        log.info(
            "erased a customer: %d keys, %d shared entries", report.keys, report.shared_entries
        )
        return report

    async def _remove(self, customer_id: str, report: ErasureReport) -> None:
        client = self.client
        acks = await client.smembers(acks_index_key(customer_id))
        alert_ids = []
        log_ids = []
        for member in acks:
            text = member.decode() if isinstance(member, bytes) else member
            alert_id, _, entry = text.partition("|")
            alert_ids.append(alert_id)
            if entry:
                log_ids.append(entry)
        due_members = []
        pair_members = []
        for partition in range(self.partitions):
            for key in (due_key(partition), done_key(partition), pairs_key(partition)):
                found = [
                    m
                    async for m, _ in client.zscan_iter(key, match=f"{_glob(customer_id)}|*")
                    if (m.decode() if isinstance(m, bytes) else m).rpartition("|")[0] == customer_id
                ]
                if found:
                    due_members.append((key, found))
                    if key == pairs_key(partition):  # and the pairs themselves
                        pair_members.append((pair_key(partition), found))
        pipe = client.pipeline(transaction=False)
        owned = customer_keys(customer_id)
        pipe.delete(*owned)  # one hash tag: one slot, one command
        pipe.srem(CUSTOMERS_KEY, customer_id)
        for key, members in due_members:
            pipe.zrem(key, *members)
        for key, members in pair_members:
            pipe.hdel(key, *members)
        if alert_ids:
            pipe.hdel(ACKS_KEY, *alert_ids)
        if log_ids:
            pipe.xdel(ACKS_LOG_KEY, *log_ids)
        replies = await pipe.execute()
        report.keys += int(replies[0])
        report.shared_entries += sum(int(r) for r in replies[1:])


def _glob(text: str) -> str:
    """``text`` with the glob characters of a MATCH pattern escaped (ids hold none, but
    ``.`` and ``-`` are literal anyway)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class ErasedIds:
    """The workers' side of ``CRM_ERASURE_POLICY=deadletter``: which messages of a batch
    belong to erased customers (one ``SMISMEMBER`` per batch; the keyed hash of a key is
    computed once and remembered)."""

    #: Keyed hashes remembered (customers come back batch after batch); cleared when full.
    CACHE = 100_000

    def __init__(self, client: Callable[[], aioredis.Redis], keys: ContactKeys) -> None:
        self._client = client
        self.keys = keys
        self._markers: dict[bytes, str] = {}

    def marker(self, key: bytes) -> str:
        """The ``crm:erased`` member of a message key (its customer id)."""
        found = self._markers.get(key)
        if found is None:
            if len(self._markers) >= self.CACHE:
                self._markers.clear()
            found = self._markers[key] = self.keys.digest("id", key.decode("utf-8", "replace"))
        return found

    async def screen(self, messages: Sequence[Message]) -> tuple[list[Message], list[Output]]:
        """The messages to process, and the dead letters of those of erased customers."""
        customers = list({m.key for m in messages if m.key})
        if not customers:
            return list(messages), []
        markers = [self.marker(k) for k in customers]
        flags = await self._client().smismember(ERASED_KEY, markers)
        erased = {k for k, flag in zip(customers, flags, strict=True) if flag}
        if not erased:
            return list(messages), []
        kept: list[Message] = []
        letters: list[Output] = []
        reason = InvalidEvent("erased", "the customer was erased (CRM_ERASURE_POLICY=deadletter)")
        for message in messages:
            if message.key not in erased:
                kept.append(message)
                continue
            log.warning(
                "dead-lettering %s[%d]@%d: the customer was erased",
                message.topic,
                message.partition,
                message.offset,
            )
            letters.append(
                deadletter(
                    reason,
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    None,  # the value is the erased customer's data: it is not kept
                    message.timestamp,
                )
            )
        return kept, letters
