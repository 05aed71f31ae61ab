"""What agents are given: settings, stores, the output sink and the partitions' models."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import faust
from faust.types import TP

from crmstream.models.contact import ContactKeys
from crmstream.models.events import Policies
from crmstream.streams import topics
from crmstream.streams.audit import audit_event, audit_output
from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.erasure import ErasedIds
from crmstream.streams.items import ItemStore
from crmstream.streams.metrics import Stages, flush_counts
from crmstream.streams.profiles import UNAVAILABLE, ProfileStore, retry_redis
from crmstream.streams.prometheus import WorkerMetrics
from crmstream.streams.replicas import Replicas
from crmstream.streams.routing import Routing
from crmstream.streams.rules import RULES_STATUS_PREFIX, RulesWatcher
from crmstream.streams.settings import Settings
from crmstream.streams.sink import Sink

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything an agent needs besides its stream, built once per worker."""

    settings: Settings
    profiles: ProfileStore
    sink: Sink
    policies: Policies
    replicas: Replicas
    checkpoints: CheckpointStore
    stages: Stages = field(default_factory=Stages)
    rules: RulesWatcher | None = None
    #: The shared item statistics of recommendations (None: purchases' items are ignored).
    items: ItemStore | None = None
    worker_id: str = ""
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    routing: Routing = field(init=False)
    #: The keys that protect ``crm.customers`` contact details as they are decoded.
    contact: ContactKeys = field(init=False)
    #: Which messages belong to erased customers (``CRM_ERASURE_POLICY=deadletter``).
    erased: ErasedIds | None = field(init=False)

    def __post_init__(self) -> None:
        self.routing = Routing(self.settings.partitions)
        self.contact = self.settings.contact_keys()
        self.erased = None
        if self.settings.erasure_policy == "deadletter":
            self.erased = ErasedIds(lambda: self.profiles.client, self.contact)

    def input_topics(self, app: faust.App) -> faust.TopicT:
        """The three input topics as one subscription of raw bytes: one agent reads them
        all, so a customer's events of a batch are folded once, in order per partition."""
        return app.topic(
            *topics.INPUTS,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.partitions,
            replicas=self.settings.replication_factor,
        )

    def ceiling(self, topic: str, partition: int) -> int | None:
        """The furthest offset Kafka may commit for an input partition: what the models'
        latest checkpoint includes (see :mod:`crmstream.streams.replicas`)."""
        return self.replicas.committable().get((topic, partition))

    async def checkpoint(self, app: faust.App, partitions: list[int] | None = None) -> None:
        """Checkpoint the models (all, or ``partitions``') and commit what they include."""
        written = await retry_redis(
            "writing model checkpoints",
            lambda: self.replicas.checkpoint(partitions, self.stages),
        )
        if written:
            log.debug("checkpointed models: %d bytes", written)
        self.metrics.checkpointed()
        await self.commit(app)

    async def retire(self, app: faust.App, partitions: list[int]) -> None:
        """Checkpoint revoked partitions' models, commit, and never write them again."""
        await self.checkpoint(app, partitions)
        self.replicas.retire(partitions)

    async def commit(self, app: faust.App) -> None:
        """Commit, for the partitions this worker is assigned, the offsets the checkpoints
        include (Faust's own commits stop short of them, see the transport)."""
        try:
            assigned = app.consumer.assignment()
        except Exception:  # the consumer is not running (tests, shutdown)
            return
        offsets = {
            TP(topic, partition): offset
            for (topic, partition), offset in self.replicas.committable().items()
            if TP(topic, partition) in assigned
        }
        if offsets:
            try:
                await app.consumer._commit(offsets)
            except Exception as exc:  # the broker is away: the next checkpoint commits
                log.warning("could not commit checkpointed offsets (%s); will retry", exc)

    async def reload_rules(self) -> bool:
        """Reload ``CRM_RULES_FILE`` if it changed (see :mod:`crmstream.streams.rules`) and
        say in Redis which rules this worker runs; True if new rules took effect.

        The batch in hand keeps the rules it started with: it read ``policies`` once.
        """
        if self.rules is None:
            return False
        problem = self.rules.problem
        new = self.rules.poll()
        if new is not None:
            self.policies = dataclasses.replace(self.policies, rules=new)
            await self._audit_rules("loaded", version=new.version, rules=len(new.rules))
        elif self.rules.problem and self.rules.problem != problem:
            await self._audit_rules("refused", problem=self.rules.problem[:500])
        try:
            key = RULES_STATUS_PREFIX + self.worker_id
            await self.profiles.client.hset(key, mapping=self.rules.status())
            await self.profiles.client.expire(key, 3600)
        except UNAVAILABLE as exc:
            log.debug("rules status not written (%s)", exc)
        return new is not None

    async def _audit_rules(self, outcome: str, **details: str | int) -> None:
        """Record on ``crm.audit`` that this worker loaded or refused a changed rule file."""
        assert self.rules is not None
        event = audit_event(
            f"worker:{self.worker_id}", "rules.change", self.rules.path, outcome=outcome, **details
        )
        try:
            await self.sink.send([audit_output(event)])
        except Exception as exc:  # the broker is away: the change itself is logged
            log.error("could not record the rules change on crm.audit (%s)", exc)

    async def flush_metrics(self) -> None:
        """Add the stage timings to ``crm:metrics:stages`` and the event counters to
        ``crm:metrics:counts`` (skipped while Redis is away)."""
        try:
            await self.stages.flush(self.profiles.client)
            await flush_counts(self.profiles.client, self.routing.counts)
        except UNAVAILABLE as exc:
            log.debug("stage metrics not flushed (%s)", exc)
