"""The publisher-facing commands: publish with per-line errors, deadletter list and replay."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import msgspec
import pytest

from crmstream.schemas import AuditEvent, DeadLetterRecord
from crmstream.streams import topics
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.tools.publisher import Publisher
from crmstream.streams.tools.replay import dead_letters
from tests.helpers import read_topic, wait_until

pytestmark = pytest.mark.integration

AT = "2026-04-01T09:00:00Z"


def cli(stack, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crmstream.streams.cli", *args],
        env={**os.environ, **stack.env(), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def purchase(event_id: str, amount: float, currency: str = "USD") -> bytes:
    return msgspec.json.encode(
        {
            "event_id": event_id,
            "customer_id": "dora",
            "occurred_at": AT,
            "amount": amount,
            "currency": currency,
        }
    )


def revenue(redis_url: str) -> float | None:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            profile = await store.get("dora")
            return None if profile is None else profile.revenue
        finally:
            await store.close()

    return asyncio.run(fetch())


def test_publish_reports_each_refused_line_with_its_number(stack, tmp_path):
    lines = [
        {"event_id": "f1", "customer_id": "dora", "occurred_at": AT, "rating": 5},
        {"event_id": "f2", "customer_id": "dora", "occurred_at": AT, "rating": 6},
        "not json at all",
        {"event_id": "f3", "customer_id": "dora one", "occurred_at": AT, "nps": 3},
        {"event_id": "f4", "customer_id": "dora", "occurred_at": AT, "nps": 9},
    ]
    source = tmp_path / "feedback.jsonl"
    source.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    result = cli(stack, "publish", topics.FEEDBACK, str(source))
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()[-3:]
    assert errors[0].startswith(f"{source}:2: schema_violation at $.rating")
    assert errors[1].startswith(f"{source}:3: invalid_json")
    assert errors[2].startswith(f"{source}:4: bad_customer_id at $.customer_id")
    assert "published 2 events to crm.feedback (3 refused)" in result.stdout
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    sent = [json.loads(r.value)["event_id"] for r in read_topic(bootstrap, topics.FEEDBACK)]
    assert sorted(sent) == ["f1", "f4"]


def test_list_filters_and_replay_after_a_configuration_fix(stack, start_worker):
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with start_worker() as worker:
        with Publisher(bootstrap) as publisher:
            for value in (
                purchase("p1", 10.0),
                purchase("p2", 4.0, "XTS"),
                purchase("p3", 6.0, "XTS"),
            ):
                publisher.send(topics.PURCHASES, value, "dora")
            publisher.send(topics.PURCHASES, purchase("p4", -1.0), "dora")
        wait_until(lambda: len(list(dead_letters(bootstrap))) == 3, 60, "three dead letters")
        wait_until(lambda: revenue(stack.redis_url) == 10.0, 30, "the valid purchase")
        assert worker.stop() == 0

    listing = cli(stack, "deadletter", "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count("unsupported_currency at $.currency") == 2
    assert listing.stdout.count("schema_violation at $.amount") == 1
    assert "3 dead letters" in listing.stderr

    as_json = cli(stack, "deadletter", "list", "--json", "--reason", "unsupported_currency")
    records = [
        msgspec.json.decode(line, type=DeadLetterRecord) for line in as_json.stdout.splitlines()
    ]
    assert sorted(json.loads(r.value)["event_id"] for r in records) == ["p2", "p3"]
    assert {(r.source.topic, r.key) for r in records} == {(topics.PURCHASES, "dora")}

    assert (
        cli(stack, "deadletter", "list", "--since", "1h").stderr.strip().endswith("3 dead letters")
    )
    future = cli(stack, "deadletter", "list", "--since", "2099-01-01T00:00:00+00:00")
    assert future.stderr.strip().endswith("0 dead letters")
    assert cli(stack, "deadletter", "list", "--since", "last tuesday").returncode == 2

    # The operator adds the missing rate, then replays what was rejected for it.
    with start_worker(fx_rates='{"XTS": 2.0}') as worker:
        first = cli(stack, "deadletter", "replay", "--reason", "unsupported_currency")
        assert first.returncode == 0, first.stderr
        assert "replayed 2 dead letters (1 passed over)" in first.stdout
        wait_until(lambda: revenue(stack.redis_url) == 30.0, 60, "the replayed purchases")
        second = cli(stack, "deadletter", "replay", "--reason", "unsupported_currency")
        assert "replayed 0 dead letters" in second.stdout
        forced = cli(stack, "deadletter", "replay", "--all", "--reason", "unsupported_currency")
        assert "replayed 2 dead letters" in forced.stdout
        marker = Publisher(bootstrap)
        marker.send(topics.PURCHASES, purchase("p5", 1.0), "dora")
        marker.close()
        # The marker is applied after the forced replay (same partition, later offset),
        # so once it shows, the replayed copies have been seen and skipped.
        wait_until(lambda: revenue(stack.redis_url) == 31.0, 60, "the marker purchase")
        assert worker.stop() == 0
    assert len(list(dead_letters(bootstrap))) == 3
    audit = [
        msgspec.json.decode(r.value, type=AuditEvent) for r in read_topic(bootstrap, topics.AUDIT)
    ]
    replays = [(a.action, a.actor[:4], a.details["replayed"]) for a in audit]
    assert replays == [("deadletter.replay", "cli:", n) for n in (2, 0, 2)]
