"""Is an input record keyed and partitioned the way crmstream's guarantees assume?

Every input record must be keyed by its ``customer_id`` and sit on the partition that
Kafka's default partitioner (Java's, kafka-python's: murmur2 of the key, modulo the
partition count) gives that key. One customer's events then share one partition, so they
are applied in order, by one worker, and taught to one partition's models.

* A record whose key is not its ``customer_id`` (or that has no key) is dead-lettered
  with reason ``key_mismatch``: the key decides where the customer's other events go, so
  applying it would silently split the customer. The record is kept unchanged and can be
  re-published with the right key.
* A record whose key hashes to another partition (a producer with another partitioner,
  e.g. librdkafka's default ``consistent_random``) is *applied*: the profile write is
  exactly-once whatever the partition (offsets are kept per source partition and event
  ids per customer), and per-customer model state lives in the profile. What is lost is
  only the order relative to that customer's events on their right partition. It is
  counted (metric ``misrouted:<topic>`` in ``crm:metrics:counts``) and a warning is
  logged at most once a minute per topic and partition, with the number held back, so
  the producer can be fixed (``partitioner=murmur2_random`` for librdkafka clients).

Partitions are counted by ``CRM_PARTITIONS``, which the worker declares topics with (and
checks at start: a topic with another count is logged as an error).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from kafka.partitioner.default import murmur2

log = logging.getLogger(__name__)

#: Seconds between two warnings about misrouted records of one topic partition.
WARN_INTERVAL = 60.0
#: Keys whose partition is remembered (a dict lookup instead of a pure-Python hash).
CACHE_SIZE = 100_000


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``.

    Examples
    --------
    >>> partition_for(b"alice", 8), partition_for(b"bob", 8)
    (5, 6)
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Routing:
    """Checks records' partitions against their keys; counts and reports the misrouted.

    Examples
    --------
    >>> routing = Routing(8)
    >>> routing.misrouted("crm.purchases", 5, b"alice")
    False
    >>> routing.misrouted("crm.purchases", 3, b"alice")
    True
    >>> routing.counts
    Counter({'misrouted:crm.purchases': 1})
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.counts: Counter[str] = Counter()
        self._cache: dict[bytes, int] = {}
        self._warned: dict[tuple[str, int], float] = {}
        self._held: Counter[tuple[str, int]] = Counter()

    def misrouted(self, topic: str, partition: int, key: bytes) -> bool:
        """Whether ``key`` belongs on another partition of ``topic``; counted and reported."""
        expected = self._cache.get(key)
        if expected is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            expected = self._cache[key] = partition_for(key, self.partitions)
        if expected == partition:
            return False
        self.counts["misrouted:" + topic] += 1
        self._report(topic, partition, key, expected)
        return True

    def _report(self, topic: str, partition: int, key: bytes, expected: int) -> None:
        where = (topic, partition)
        now = time.monotonic()
        last = self._warned.get(where)
        if last is not None and now - last < WARN_INTERVAL:
            self._held[where] += 1
            return
        self._warned[where] = now
        held = self._held.pop(where, 0)
        log.warning(
            "%s[%d] holds key %r, which murmur2 puts on partition %d of %d: its producer "
            "does not use Kafka's default partitioner (librdkafka clients: set "
            "partitioner=murmur2_random), or the topic does not have CRM_PARTITIONS "
            "partitions; applied anyway%s",
            topic,
            partition,
            key.decode("utf-8", "replace"),
            expected,
            self.partitions,
            f" ({held} more since the last warning)" if held else "",
        )
