"""Fixtures for agent tests: the app in Faust's test context, outputs recorded."""

from __future__ import annotations

import pytest

from crmstream.streams.app import create_app
from crmstream.streams.settings import Settings
from crmstream.streams.sink import Output


class RecordingSink:
    """Stands in for the Kafka producer: keeps what the agent sends."""

    def __init__(self) -> None:
        self.sent: list[Output] = []

    async def send(self, outputs):
        self.sent.extend(outputs)

    def on(self, topic: str) -> list[Output]:
        return [o for o in self.sent if o.topic == topic]


@pytest.fixture
def app_and_sink(stack):
    sink = RecordingSink()
    settings = Settings(
        kafka_url=stack.kafka_url, redis_url=stack.redis_url, batch_wait=0.01, fx_rates={"EUR": 2.0}
    )
    app, runtime = create_app(settings, sink=sink)
    app.finalize()
    app.flow_control.resume()
    yield app, runtime, sink
