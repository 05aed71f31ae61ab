"""Create every crmstream topic with ``CRM_PARTITIONS`` partitions before anything reads.

A consumer that subscribes to a topic that does not exist yet makes most brokers create it
with *their* default partition count, so topics must exist before the worker subscribes:
:func:`declare_topics` runs when the worker starts, before its consumer does. A topic that
already exists with another partition count is reported loudly (its count is not changed:
adding partitions moves customers between partitions).
"""

from __future__ import annotations

import contextlib
import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from crmstream.streams import topics
from crmstream.streams.credentials import kafka_python_options
from crmstream.streams.settings import Settings

log = logging.getLogger(__name__)


def partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """The partition count of each existing topic of ``names``."""
    existing = set(admin.list_topics())
    present = [name for name in names if name in existing]
    if not present:
        return {}
    return {
        meta.get("name") or meta["topic"]: len(meta["partitions"])
        for meta in admin.describe_topics(present)
        if meta.get("partitions")
    }


def declare_topics(settings: Settings) -> dict[str, int]:
    """Create the missing topics; return every topic's actual partition count."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="crmstream-declare",
        **kafka_python_options(settings),
    )
    try:
        counts = partition_counts(admin, list(topics.ALL))
        missing = [name for name in topics.ALL if name not in counts]
        if missing:
            new = [
                NewTopic(name, settings.partitions, settings.replication_factor) for name in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                admin.create_topics(new)
            counts = partition_counts(admin, list(topics.ALL))
    finally:
        admin.close()
    for name in topics.ALL:
        count = counts.get(name)
        if count is not None and count != settings.partitions:
            log.error(
                "topic %s has %d partitions but CRM_PARTITIONS is %d: workers and producers "
                "must agree on one count; recreate the topic or set CRM_PARTITIONS=%d",
                name,
                count,
                settings.partitions,
                count,
            )
    log.info("topics: %s", ", ".join(f"{name}={counts.get(name, '?')}" for name in topics.ALL))
    return counts
