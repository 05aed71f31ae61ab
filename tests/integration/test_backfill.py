"""`crmstream backfill cdnow` against the embedded broker: order, keys, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from itertools import islice

import msgspec
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from crmstream.schemas import Purchase, decode
from crmstream.streams import topics
from crmstream.streams.tools.backfill import load_cdnow, to_purchases
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

LIMIT = 500


def backfill(stack) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crmstream.streams.cli", "backfill", "cdnow", "--limit", str(LIMIT)],
        env={**os.environ, **stack.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def by_partition(records) -> dict[int, list[Purchase]]:
    partitions: dict[int, list[Purchase]] = defaultdict(list)
    for record in records:
        purchase = decode(record.value, Purchase)
        assert record.key == purchase.customer_id.encode()
        partitions[record.partition].append(purchase)
    return partitions


def test_backfill_cdnow_publishes_in_event_time_order_and_deterministically(stack):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:  # several partitions, so keying and per-partition order are really exercised
        admin.create_topics([NewTopic(topics.PURCHASES, num_partitions=4, replication_factor=1)])
    finally:
        admin.close()

    first = backfill(stack)
    assert first.returncode == 0, first.stderr
    assert "warning" not in first.stderr
    assert f"published {LIMIT} purchases" in first.stdout
    assert "dropped 255 (255 duplicate)" in first.stdout

    records = read_topic(bootstrap, topics.PURCHASES)
    assert len(records) == LIMIT
    partitions = by_partition(records)
    assert len(partitions) > 1
    for purchases in partitions.values():
        times = [p.occurred_at for p in purchases]
        assert times == sorted(times)
    expected = [
        msgspec.structs.asdict(p) for p in islice(to_purchases(load_cdnow().frame, "cdnow"), LIMIT)
    ]
    published = sorted(
        (msgspec.structs.asdict(p) for ps in partitions.values() for p in ps),
        key=lambda p: p["event_id"],
    )
    assert published == sorted(expected, key=lambda p: p["event_id"])

    second = backfill(stack)
    assert second.returncode == 0, second.stderr
    # History older than what is already on the topic is published, with a warning.
    newest = max(p["occurred_at"] for p in expected).isoformat()
    assert f"warning: crm.purchases already holds purchases up to {newest}" in second.stderr
    again = by_partition(read_topic(bootstrap, topics.PURCHASES))
    assert sum(map(len, again.values())) == 2 * LIMIT
    for partition, purchases in partitions.items():
        run1 = [p.event_id for p in purchases]
        assert [p.event_id for p in again[partition]] == run1 + run1
