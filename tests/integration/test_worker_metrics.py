"""A real worker's ``/metrics`` (parsed by prometheus_client's parser, counters against what
was published) and ``/health`` (503 while it has lag but is frozen with SIGSTOP; 200 again
after SIGCONT)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crmstream.schemas import ChatMessage, Purchase
from crmstream.streams import topics
from crmstream.streams.dev.embedded import free_port
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

TOKEN = "metrics-token-0123456789"
AT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def health(url: str) -> int:
    try:
        return httpx.get(url + "/health", timeout=3).status_code
    except httpx.HTTPError:
        return 0


def purchase(n: int, customer: str) -> Purchase:
    return Purchase(
        event_id=f"p{n}", customer_id=customer, occurred_at=AT, amount=900.0, cost=300.0
    )


def test_metrics_count_what_was_published_and_health_follows_progress(stack, start_worker):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {
        "web_enabled": "true",
        "web_port": str(port),
        "liveness_timeout": "3",
        "checkpoint_interval": "2",
        "api_token": TOKEN,
    }
    with start_worker(**settings) as worker, Publisher(bootstrap) as publisher:
        wait_until(lambda: health(url) == 200, 60, "the worker's /health")
        # the token is required (503 until the worker's own web server is up)
        wait_until(
            lambda: httpx.get(url + "/metrics").status_code == 401, 60, "the worker's /metrics"
        )
        for n in range(20):
            publisher.publish(topics.PURCHASES, purchase(n, f"m{n}"))
        for n in range(2):
            publisher.send(topics.PURCHASES, b"{not json", f"bad{n}")
        publisher.publish(
            topics.CHATS,
            ChatMessage(
                event_id="chat-1",
                customer_id="m1",
                occurred_at=AT,
                conversation_id="k",
                sender="customer",
                text="This is terrible, awful service. I hate it.",
            ),
        )
        publisher.flush()
        found = wait_until(
            lambda: (
                (s := samples(url))
                and value(s, "crm_events_total", topic=topics.PURCHASES) == 22
                and value(s, "crm_events_total", topic=topics.CHATS) == 1
                and s
            ),
            60,
            "the worker to count every event",
        )
        assert (
            value(found, "crm_deadletters_total", topic=topics.PURCHASES, reason="invalid_json")
            == 2
        )
        assert value(found, "crm_tier_changes_total", to_tier="gold") == 20
        # critical or warning: the chat may be applied before or after m1's purchase
        assert (
            sum(
                value(found, "crm_alerts_total", kind="strongly_negative", severity=severity)
                for severity in ("warning", "critical")
            )
            == 1
        )
        assert value(found, "crm_batch_seconds_count") >= 1
        # Every input event was in exactly one batch.
        batches = value(found, "crm_batch_events_count")
        assert batches == value(found, "crm_batch_seconds_count")
        assert value(found, "crm_batch_events_sum") == sum(
            v for k, v in found.items() if k[0] == "crm_events_total"
        )
        lags = {k: v for k, v in found.items() if k[0] == "crm_consumer_lag"}
        assert lags and set(lags.values()) == {0.0}
        assert any(k[0] == "crm_anomaly_rate" for k in found)
        wait_until(
            lambda: value(samples(url), "crm_checkpoint_age_seconds") > 0, 30, "a checkpoint"
        )
        assert health(url) == 200

        # The worker frozen as a whole: its sidecar answers /health for it.
        os.kill(worker.process.pid, signal.SIGSTOP)
        try:
            for n in range(20, 70):
                publisher.publish(topics.PURCHASES, purchase(n, f"m{n}"))
                if n % 10 == 9:
                    publisher.flush()
            wait_until(lambda: health(url) == 503, 60, "/health to report the frozen worker")
            stalled = httpx.get(url + "/health").json()
            assert stalled["status"] == "stalled" and "events waiting" in stalled["detail"]
            frozen = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert frozen.status_code == 503  # a frozen worker's metrics cannot be had
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        wait_until(lambda: health(url) == 200, 90, "/health after SIGCONT")
        wait_until(
            lambda: value(samples(url), "crm_events_total", topic=topics.PURCHASES) == 72,
            90,
            "the worker to catch up after SIGCONT",
        )
        sidecar = [c for c in psutil.Process(worker.process.pid).children() if c.is_running()]
    assert len(sidecar) == 1
    sidecar[0].wait(10)  # the sidecar ends with its worker
