"""The Faust app factory and the runtime that agents are given."""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from dataclasses import dataclass

import faust
from faust.types import TP

from crmstream.models.alerts import AlertPolicy
from crmstream.models.intent import IntentModel
from crmstream.models.money import Currencies
from crmstream.models.sentiment import SentimentModel
from crmstream.models.tiers import TierPolicy
from crmstream.streams import topics
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.replicas import ModelReplicas
from crmstream.streams.settings import Settings
from crmstream.streams.sink import FaustSink, Sink
from crmstream.streams.transport import transport_for

log = logging.getLogger(__name__)

#: The package whose ``register_all(app, runtime)`` defines the agents.
AGENTS = "crmstream.agents"


#: Topics whose events teach the conversation models.
CONVERSATIONS = (topics.CHATS, topics.FEEDBACK)


def conversation_models() -> dict[str, object]:
    """Fresh models for one partition of the conversation topics (chats and feedback)."""
    return {"sentiment": SentimentModel(), "intent": IntentModel()}


@dataclass
class Runtime:
    """Everything an agent needs besides its stream, built once per worker."""

    settings: Settings
    profiles: ProfileStore
    sink: Sink
    tiers: TierPolicy
    currencies: Currencies
    alerts: AlertPolicy
    replicas: ModelReplicas
    purchase_replicas: ModelReplicas

    def input_topic(self, app: faust.App, name: str) -> faust.TopicT:
        """An input topic of raw bytes, declared with the configured partition count."""
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.partitions,
            replicas=self.settings.replication_factor,
        )


def create_app(
    settings: Settings, *, sink: Sink | None = None, agents: str | None = AGENTS
) -> tuple[faust.App, Runtime]:
    """Build the Faust app and its runtime from settings.

    Nothing connects here: Kafka clients start with the worker, Redis on first use.
    ``sink`` replaces the Kafka producer seam (agent tests record outputs with it);
    ``agents`` names the package whose ``register_all`` defines the agents.
    """
    datadir = settings.data_dir or os.path.join(
        tempfile.gettempdir(), f"crmstream-{settings.app_id}"
    )
    app = faust.App(
        settings.app_id,
        datadir=datadir,
        broker=settings.kafka_url,
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        consumer_auto_offset_reset="earliest",
        # An error that escapes an agent (bad input never does: it is dead-lettered) stops
        # the worker rather than restarting the agent past the batch in hand: the process
        # supervisor restarts it and Kafka redelivers from the last committed offset.
        agent_supervisor="mode.CrashingSupervisor",
        producer_acks=-1,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
    )
    app.transport = transport_for(app, settings.fetch_max_wait)
    profiles = ProfileStore(settings.redis_url, settings.dedupe_window)
    runtime = Runtime(
        settings=settings,
        profiles=profiles,
        sink=sink if sink is not None else FaustSink(app),
        tiers=settings.tier_policy(),
        currencies=settings.currencies(),
        alerts=settings.alert_policy(),
        replicas=ModelReplicas(profiles, conversation_models, "conversations"),
        purchase_replicas=ModelReplicas(profiles, settings.purchase_models, "purchases"),
    )

    @app.on_partitions_revoked.connect  # type: ignore[misc]
    async def forget_models(sender: object, revoked: set[TP], **kwargs: object) -> None:
        runtime.replicas.drop({tp.partition for tp in revoked if tp.topic in CONVERSATIONS})
        runtime.purchase_replicas.drop(
            {tp.partition for tp in revoked if tp.topic == topics.PURCHASES}
        )

    @app.task
    async def declare_topics() -> None:
        for name in topics.ALL:
            await runtime.input_topic(app, name).maybe_declare()
        log.info("declared %d topics with %d partitions", len(topics.ALL), settings.partitions)

    if agents is not None:
        importlib.import_module(agents).register_all(app, runtime)
    return app, runtime
