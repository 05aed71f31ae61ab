"""The Faust app factory: the app, its runtime, and the worker's lifecycle hooks."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import socket
import tempfile

import faust
from faust.types import TP

from crmstream.models.conversations import ConversationModels
from crmstream.streams import topics
from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.credentials import faust_credentials, redis_client_url
from crmstream.streams.due import DueIndex
from crmstream.streams.items import ItemStore
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.prometheus import WorkerMetrics, expose
from crmstream.streams.replicas import PartitionModels, Replicas
from crmstream.streams.rules import RulesWatcher
from crmstream.streams.runtime import Runtime
from crmstream.streams.settings import Settings
from crmstream.streams.sink import FaustSink, Sink
from crmstream.streams.transport import transport_for

log = logging.getLogger(__name__)

#: The package whose ``register_all(app, runtime)`` defines the agents.
AGENTS = "crmstream.agents"


def describe_assignment(assigned: set[TP]) -> str:
    """The input partitions of an assignment, as the worker logs them.

    Examples
    --------
    >>> describe_assignment({TP("crm.chats", 2), TP("crm.chats", 0), TP("other", 1)})
    'crm.chats=0,2 crm.customers=- crm.feedback=- crm.purchases=-'
    """
    parts = []
    for topic in sorted(topics.INPUTS):
        numbers = sorted(tp.partition for tp in assigned if tp.topic == topic)
        parts.append(f"{topic}={','.join(map(str, numbers)) or '-'}")
    return " ".join(parts)


def create_app(
    settings: Settings, *, sink: Sink | None = None, agents: str | None = AGENTS
) -> tuple[faust.App, Runtime]:
    """Build the Faust app and its runtime from settings.

    Nothing connects here: topics are declared when a worker starts
    (:mod:`crmstream.streams.worker`), Kafka clients start with the worker, Redis on first
    use. ``sink`` replaces the Kafka producer seam (agent
    tests record outputs with it); ``agents`` names the package whose ``register_all``
    defines the agents.
    """
    datadir = settings.data_dir or os.path.join(
        tempfile.gettempdir(), f"crmstream-{settings.app_id}"
    )
    app = faust.App(
        settings.app_id,
        datadir=datadir,
        broker=settings.kafka_url,
        broker_credentials=faust_credentials(settings),
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=settings.fetch_partition_bytes,
        # An error that escapes an agent (bad input never does: it is dead-lettered) stops
        # the worker rather than restarting the agent past the batch in hand: the process
        # supervisor restarts it and Kafka redelivers from the last committed offset.
        agent_supervisor="mode.CrashingSupervisor",
        producer_acks=-1,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
    )
    redis_url = redis_client_url(settings)
    profiles = ProfileStore(redis_url, settings.dedupe_window, settings.history_limits())
    checkpoints = CheckpointStore(redis_url, settings.checkpoint_hmac_key())

    def partition_models() -> PartitionModels:
        return PartitionModels(settings.purchase_models(), ConversationModels.create())

    policies = settings.policies()
    rules = RulesWatcher(settings.rules_file) if settings.rules_file else None
    if rules is not None:  # an invalid file stops the worker here, with its problems
        policies = dataclasses.replace(policies, rules=rules.load())
    runtime = Runtime(
        settings=settings,
        profiles=profiles,
        sink=sink if sink is not None else FaustSink(app),
        policies=policies,
        replicas=Replicas(
            checkpoints,
            lambda: DueIndex(profiles.client),
            partition_models,
            profiles.model_states,
        ),
        checkpoints=checkpoints,
        rules=rules,
        items=ItemStore(redis_url, policies.recommend) if policies.recommend else None,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        metrics=WorkerMetrics(settings.liveness_timeout),
    )
    runtime.metrics.replicas = runtime.replicas
    if settings.web_enabled:
        expose(app, runtime.metrics, settings.api_token.get_secret_value())
    app.transport = transport_for(app, settings.fetch_max_wait, runtime.ceiling)

    @app.on_partitions_revoked.connect  # type: ignore[misc]
    async def retire_models(sender: object, revoked: set[TP], **kwargs: object) -> None:
        partitions = sorted({tp.partition for tp in revoked})
        if partitions:
            await runtime.retire(app, partitions)

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def assign_models(sender: object, assigned: set[TP], **kwargs: object) -> None:
        runtime.replicas.assigned({tp.partition for tp in assigned})
        runtime.metrics.write_progress(assigned)
        inputs = {tp.partition for tp in assigned if tp.topic in topics.INPUTS}
        log.info("ready: %d partitions assigned: %s", len(inputs), describe_assignment(assigned))

    if settings.web_enabled:

        @app.timer(0.5)
        async def write_progress() -> None:
            runtime.metrics.write_progress()

    @app.on_before_shutdown.connect  # type: ignore[misc]
    async def final_checkpoint(sender: object, **kwargs: object) -> None:
        try:
            await runtime.checkpoint(app)
            await runtime.flush_metrics()
        except Exception as exc:  # the next owner replays from the previous checkpoint
            log.warning("final checkpoint not written (%s); the next start replays more", exc)

    @app.timer(settings.checkpoint_interval)
    async def checkpoint_models() -> None:
        await runtime.checkpoint(app)
        await runtime.flush_metrics()

    if rules is not None:

        @app.timer(settings.rules_reload_interval)
        async def reload_rules() -> None:
            await runtime.reload_rules()

    if agents is not None:
        importlib.import_module(agents).register_all(app, runtime)
    return app, runtime
