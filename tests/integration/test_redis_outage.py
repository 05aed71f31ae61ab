"""A worker rides out a Redis outage: it retries with backoff and carries on."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from crmstream.schemas import Purchase
from crmstream.streams import topics
from crmstream.streams.dev.embedded import valkey_binary
from crmstream.streams.profiles import CUSTOMERS_KEY
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def publish(bootstrap: list[str], first: int, count: int) -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    with Publisher(bootstrap) as publisher:
        for n in range(first, first + count):
            publisher.publish(
                topics.PURCHASES,
                Purchase(
                    event_id=f"e{n}",
                    customer_id=f"c{n}",
                    occurred_at=at + timedelta(minutes=n),
                    amount=10.0,
                ),
            )
        publisher.flush()


def customers(url: str) -> int:
    try:
        return redis.Redis.from_url(url).scard(CUSTOMERS_KEY)
    except redis.ConnectionError:
        return 0


def test_a_worker_survives_redis_going_away_and_coming_back(stack, start_worker, tmp_path):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    store = stack._processes[1]
    assert "valkey" in " ".join(store.args) or "redis" in " ".join(store.args)
    port = stack.redis_url.rsplit(":", 1)[1].split("/")[0]
    with start_worker(checkpoint_interval="1") as worker:
        publish(bootstrap, 0, 50)
        wait_until(lambda: customers(stack.redis_url) == 50, 60, "the first purchases")
        store.kill()
        store.wait()
        publish(bootstrap, 50, 50)  # arrives while Redis is away
        time.sleep(6)  # several checkpoint intervals and heartbeats without Redis
        assert worker.process.poll() is None, worker.log()[-3000:]
        restarted = subprocess.Popen(
            [valkey_binary(), "--port", port, "--bind", "127.0.0.1", "--save", ""],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Redis came back empty (no persistence here): the purchases made while it was
            # away are applied once it answers again, and the worker goes on.
            wait_until(lambda: customers(stack.redis_url) == 50, 60, "the worker to resume")
            publish(bootstrap, 100, 10)
            wait_until(lambda: customers(stack.redis_url) == 60, 60, "new purchases")
            assert worker.process.poll() is None
            assert "redis unavailable" in worker.log()
        finally:
            worker.stop()
            restarted.terminate()
            restarted.wait(10)
