"""Marketing rules in a real worker: published events fire exactly the expected triggers,
once each across a restart, a re-send and a replay; the rule file is hot-reloaded, and an
invalid change keeps the previous rules running."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from crmstream.models.rules import in_holdout
from crmstream.schemas import AudienceChange, Feedback, Purchase, Trigger
from crmstream.streams import cli, topics
from crmstream.streams.rules import RULES_STATUS_PREFIX
from tests.helpers import committed_total, read_topic, wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)

RULES = """
audiences:
  - id: vip
    when: after.tier in ["gold", "platinum"]
rules:
  - id: first-purchase-over-100
    on: [purchase]
    when: before.orders == 0 && event.amount > 100.0
    emit: {campaign: welcome-vip, amount: "{{ event.amount }}"}
    once_per: customer
    holdout: 0.5
  - id: tier-upgraded-gold-platinum
    on: [purchase]
    when: after.tier_rank > before.tier_rank && after.tier in ["gold", "platinum"]
    emit: {tier: "{{ after.tier }}"}
  - id: three-low-ratings-30d
    on: [feedback]
    when: event.rating != null && event.rating <= 2 && traits.d30.low_ratings >= 3
    cooldown: 30d
"""
BIG_SPENDER = """
  - id: purchase-over-1000
    on: purchase
    when: event.amount > 1000.0
"""


def buy(event_id: str, customer: str, amount: float, day: float) -> Purchase:
    at = T0 + timedelta(days=day)
    return Purchase(event_id=event_id, customer_id=customer, occurred_at=at, amount=amount)


def rate(event_id: str, customer: str, rating: int, day: float) -> Feedback:
    at = T0 + timedelta(days=day)
    return Feedback(event_id=event_id, customer_id=customer, occurred_at=at, rating=rating)


FIRST = [
    buy("pa1", "a", 150.0, 0),
    buy("pa2", "a", 400.0, 1),  # CLV 550: gold
    buy("pb1", "b", 50.0, 0),
    rate("fb1", "b", 1, 1),
    rate("fb2", "b", 2, 5),
    rate("fb3", "b", 1, 9),  # third low rating in 30 days
    rate("fb4", "b", 1, 10),  # within the cooldown
    buy("pc1", "c", 120.0, 0),
]
EXPECTED_FIRST = {
    ("first-purchase-over-100", "a", "pa1"),
    ("tier-upgraded-gold-platinum", "a", "pa2"),
    ("three-low-ratings-30d", "b", "fb3"),
    ("first-purchase-over-100", "c", "pc1"),
}


def publish(stack, events) -> None:
    from crmstream.streams.tools.publisher import Publisher

    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with Publisher(bootstrap) as publisher:
        for event in events:
            topic = topics.PURCHASES if isinstance(event, Purchase) else topics.FEEDBACK
            publisher.publish(topic, event)
        publisher.flush()


def triggers(stack) -> list[Trigger]:
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    records = read_topic(bootstrap, topics.TRIGGERS)
    found = [msgspec.json.decode(r.value, type=Trigger) for r in records]
    for record, trigger in zip(records, found, strict=True):
        assert record.key == trigger.customer_id.encode()
    return found


def audience_changes(stack) -> list[AudienceChange]:
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    records = read_topic(bootstrap, topics.AUDIENCES)
    return [msgspec.json.decode(r.value, type=AudienceChange) for r in records]


def fired(found: list[Trigger]) -> set[tuple[str, str, str]]:
    return {(t.rule, t.customer_id, t.event_id) for t in found}


def consumed(stack, group: str, count: int) -> bool:
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    return (
        committed_total(bootstrap, group, topics.PURCHASES)
        + committed_total(bootstrap, group, topics.FEEDBACK)
        == count
    )


def rules_status(stack) -> list[dict[str, str]]:
    import redis

    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        keys = client.keys(RULES_STATUS_PREFIX + "*")
        return [client.hgetall(key) for key in keys]
    finally:
        client.close()


def test_worker_fires_each_trigger_once_reloads_rules_and_keeps_them_on_a_bad_file(
    stack, start_worker, tmp_path: Path, monkeypatch, capsys
):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    env = {"rules_file": str(path), "rules_reload_interval": "0.3", "checkpoint_interval": "1"}
    with start_worker(**env) as worker:
        publish(stack, FIRST)
        wait_until(lambda: len(triggers(stack)) >= 4, 90, "the first four triggers")
        wait_until(lambda: consumed(stack, "crmstream", len(FIRST)), 60, "all offsets committed")
        assert worker.stop() == 0, worker.log()[-3000:]
    first = triggers(stack)
    assert fired(first) == EXPECTED_FIRST
    assert len(first) == len(EXPECTED_FIRST)
    for trigger in first:
        assert trigger.holdout == (
            trigger.rule == "first-purchase-over-100"
            and in_holdout(trigger.rule, trigger.customer_id, 0.5)
        )
    welcome = {t.customer_id: t for t in first if t.rule == "first-purchase-over-100"}
    assert welcome["a"].attributes == {"campaign": "welcome-vip", "amount": 150.0}
    assert [t.attributes for t in first if t.rule == "tier-upgraded-gold-platinum"] == [
        {"tier": "gold"}
    ]

    # A restart, the same events re-sent, and a purchase that a once-per rule ignores.
    again = [*FIRST, buy("pc2", "c", 200.0, 2)]
    with start_worker(**env) as worker:
        publish(stack, again)
        total = len(FIRST) + len(again)
        wait_until(lambda: consumed(stack, "crmstream", total), 90, "the re-sent events")
        assert len(triggers(stack)) == len(first)

        # Hot reload: a new rule takes effect without a restart.
        path.write_text(RULES + BIG_SPENDER)
        wait_until(
            lambda: any(s.get("rules") == "4" for s in rules_status(stack)),
            30,
            "the worker to reload the rules",
        )
        publish(stack, [buy("pc3", "c", 1500.0, 3)])  # CLV 1820: gold as well
        wait_until(lambda: len(triggers(stack)) >= len(first) + 2, 60, "the new rule to fire")

        # An invalid file is refused loudly; the previous rules keep running.
        path.write_text(RULES + BIG_SPENDER + "    wen: typo\n")
        wait_until(lambda: "still running the previous rules" in worker.log(), 30, "the refusal")
        status = rules_status(stack)
        assert any("unknown field 'wen'" in s["problem"] and s["rules"] == "4" for s in status)
        monkeypatch.setenv("CRM_REDIS_URL", stack.redis_url)
        wait_until(lambda: cli.main(["health"]) == 0, 30, "a healthy worker")
        assert "rules: CRM_RULES_FILE refused" in capsys.readouterr().out
        assert cli.main(["health", "--json"]) == 0  # still healthy: the previous rules run
        health = json.loads(capsys.readouterr().out)
        (reported,) = [w["rules"] for w in health["workers"] if "rules" in w]
        assert "unknown field 'wen'" in reported["problem"] and reported["rules"] == "4"
        publish(stack, [buy("pd1", "d", 1200.0, 3)])  # CLV 1200: gold at once
        wait_until(lambda: len(triggers(stack)) >= len(first) + 5, 60, "the kept rules to fire")
        log = worker.log()
        assert "ERROR" in log and "unknown field 'wen'" in log
        assert worker.stop() == 0, worker.log()[-3000:]

    second = triggers(stack)
    assert fired(second) == EXPECTED_FIRST | {
        ("purchase-over-1000", "c", "pc3"),
        ("tier-upgraded-gold-platinum", "c", "pc3"),
        ("purchase-over-1000", "d", "pd1"),
        ("first-purchase-over-100", "d", "pd1"),
        ("tier-upgraded-gold-platinum", "d", "pd1"),
    }
    assert len(second) == len({t.trigger_id for t in second}) == 9

    # A replay of the whole input from offset 0 (a new consumer group): nothing fires again.
    path.write_text(RULES + BIG_SPENDER)  # a worker does not start on an invalid file
    replayed = len(FIRST) + len(again) + 2
    with start_worker(**{**env, "app_id": "crmstream-replay"}) as replay:
        wait_until(lambda: consumed(stack, "crmstream-replay", replayed), 90, "the replay")
        assert replay.stop() == 0, replay.log()[-3000:]
    assert len(triggers(stack)) == 9

    # Audiences: each customer entered once, whatever was redelivered or replayed.
    entered = audience_changes(stack)
    assert sorted((c.audience, c.customer_id, c.change, c.event_id) for c in entered) == [
        ("vip", "a", "enter", "pa2"),
        ("vip", "c", "enter", "pc3"),
        ("vip", "d", "enter", "pd1"),
    ]
    monkeypatch.setenv("CRM_REDIS_URL", stack.redis_url)
    monkeypatch.setenv("CRM_RULES_FILE", str(path))
    assert cli.main(["audiences", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"customers": 4, "audiences": {"vip": 3}}

    # The report: a and c got the welcome trigger on day 0, d on day 3 (the last day of
    # data, so its window is not over); within a day of it, a bought again and c did not.
    monkeypatch.setenv("CRM_KAFKA_URL", stack.kafka_url)
    assert cli.main(["rules", "report", "--days", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    welcome = report["rules"]["first-purchase-over-100"]
    assert (welcome["fires"], welcome["customers"]) == (3, 3)
    groups = {"treated": [], "holdout": []}
    for customer, bought in (("a", 1), ("c", 0)):
        held = in_holdout("first-purchase-over-100", customer, 0.5)
        groups["holdout" if held else "treated"].append(bought)
    for name, outcomes in groups.items():
        stats = welcome["uplift"][name]
        assert stats["customers"] == len(outcomes)
        expected = sum(outcomes) / len(outcomes) if outcomes else None
        assert stats["purchase_rate"] == expected


def test_a_worker_with_an_invalid_rule_file_does_not_start(stack, start_worker, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("event.amount > 100.0", "event.amout > 100.0"))
    with start_worker(rules_file=str(path)) as worker:
        code = asyncio.run(asyncio.to_thread(worker.process.wait, 60))
        assert code == 2
        log = worker.log()
        assert "invalid rules (CRM_RULES_FILE)" in log
        assert "rule 'first-purchase-over-100', field 'when'" in log
        assert "event has no field 'amout'" in log
