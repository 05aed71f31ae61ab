"""The worker's partition check hashes keys as Kafka's default partitioner does, and
reports a misplaced key at most once a minute per topic partition."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st
from kafka.cluster import ClusterMetadata
from kafka.partitioner.default import DefaultPartitioner

from crmstream.streams import routing
from crmstream.streams.routing import Routing, partition_for


class Cluster(ClusterMetadata):
    def __init__(self, partitions: int) -> None:
        super().__init__()
        self._partitions_for = set(range(partitions))

    def topics(self, exclude_internal_topics=True):
        return {"t"}

    def partitions_for_topic(self, topic):
        return self._partitions_for

    def available_partitions_for_topic(self, topic):
        return self._partitions_for


@given(st.binary(min_size=1, max_size=64), st.integers(1, 64))
def test_partition_is_the_kafka_python_default_partitioners(key, partitions):
    expected = DefaultPartitioner().partition("t", key, key, b"", b"", Cluster(partitions))
    assert partition_for(key, partitions) == expected


def test_a_misplaced_key_is_counted_every_time_and_reported_once_a_minute(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(routing.time, "monotonic", lambda: clock[0])
    checker = Routing(4)
    right = partition_for(b"carol", 4)
    wrong = (right + 1) % 4
    with caplog.at_level(logging.WARNING, logger=routing.__name__):
        assert not checker.misrouted("crm.chats", right, b"carol")
        for _ in range(5):
            assert checker.misrouted("crm.chats", wrong, b"carol")
        clock[0] += routing.WARN_INTERVAL + 1
        assert checker.misrouted("crm.chats", wrong, b"carol")
    assert checker.counts == {"misrouted:crm.chats": 6}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert f"crm.chats[{wrong}] holds key 'carol'" in lines[0]
    assert "(4 more since the last warning)" in lines[1]


def test_the_cache_of_partitions_stays_bounded(monkeypatch):
    monkeypatch.setattr(routing, "CACHE_SIZE", 10)
    checker = Routing(8)
    for n in range(25):
        key = f"c{n}".encode()
        checker.misrouted("crm.purchases", partition_for(key, 8), key)
    assert len(checker._cache) <= 10
    assert not checker.counts
