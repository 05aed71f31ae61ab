"""A worker creates every topic with CRM_PARTITIONS partitions before it subscribes."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient

from crmstream.streams import topics
from crmstream.streams.declare import partition_counts
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def counts(bootstrap: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return partition_counts(admin, list(topics.ALL))
    finally:
        admin.close()


def test_every_topic_gets_the_configured_partition_count(stack, start_worker):
    """3 partitions, not the broker's default (4): the input topics must not be created by
    the consumer's subscription with the broker's count."""
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with start_worker(partitions="3") as worker:
        wait_until(lambda: "topics: " in worker.log(), 60, "the worker to declare its topics")
        assert counts(bootstrap) == dict.fromkeys(topics.ALL, 3)
        assert "crm.purchases=3" in worker.log()


def test_a_topic_with_another_count_is_reported(stack, start_worker):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with start_worker(partitions="3") as first:
        wait_until(lambda: "topics: " in first.log(), 60, "the first worker to declare")
    with start_worker(partitions="5") as second:
        wait_until(lambda: "topics: " in second.log(), 60, "the second worker to declare")
        assert "has 3 partitions but CRM_PARTITIONS is 5" in second.log()
    assert counts(bootstrap)[topics.PURCHASES] == 3
