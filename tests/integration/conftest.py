"""Fixtures for tests of the events agent in Faust's test context, with a real Redis.

The agent reads the three input topics as one subscription; :class:`Feeder` puts raw
records into it as if they came from a given topic and partition, with offsets counted
per partition as Kafka would, and returns the agent's summary of the batch.
"""

from __future__ import annotations

from collections import Counter

import pytest

from crmstream.streams.app import create_app
from crmstream.streams.ingest import BatchSummary
from crmstream.streams.settings import Settings
from crmstream.streams.sink import Output
from tests.helpers import consumed


class RecordingSink:
    """Stands in for the Kafka producer: keeps what the agent sends."""

    def __init__(self) -> None:
        self.sent: list[Output] = []

    async def send(self, outputs):
        self.sent.extend(outputs)

    def on(self, topic: str) -> list[Output]:
        return [o for o in self.sent if o.topic == topic]


class Feeder:
    """Puts records into the events agent's test context, one batch each."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.offsets: Counter[tuple[str, int]] = Counter()

    async def put(
        self, topic: str, value: bytes, key: bytes = b"c1", partition: int = 0, offset=None
    ) -> BatchSummary:
        agent = self.agent
        if offset is None:
            offset = self.offsets[(topic, partition)]
            self.offsets[(topic, partition)] += 1
        message = consumed(topic, partition, offset, key, value, agent.app.consumer_generation_id)
        channel = agent.stream().channel
        event = await channel.decode(message)
        await channel.put(event)
        agent.sent_offset += 1
        async with agent.new_value_processed:
            await agent.new_value_processed.wait()
            if agent._crash_reason:
                raise agent._crash_reason
        return agent.results[agent.processed_offset - 1]


def make_app(stack, **overrides):
    sink = RecordingSink()
    options = {
        "kafka_url": stack.kafka_url,
        "redis_url": stack.redis_url,
        "batch_wait": 0.01,
        "fx_rates": {"EUR": 2.0},
        **overrides,
    }
    settings = Settings(**options)
    app, runtime = create_app(settings, sink=sink)
    app.finalize()
    app.flow_control.resume()
    return app, runtime, sink


@pytest.fixture
def app_and_sink(stack):
    return make_app(stack)
