"""A worker and ``rules backtest`` fire the same triggers on the same purchases: marketing
can trust a backtest to show what the rule file will do live."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import msgspec
import pytest

from crmstream.models.rules import load_rules_file
from crmstream.schemas import Trigger
from crmstream.streams import topics
from crmstream.streams.evaluation.backtest import backtest
from crmstream.streams.settings import Settings
from crmstream.streams.tools.backfill import load_csv, parse_mapping, to_purchases
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import committed_total, read_topic, wait_until

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: first-purchase-over-100
    on: [purchase]
    when: before.orders == 0 && event.amount > 100.0
    emit: {amount: "{{ event.amount }}"}
    once_per: customer
    holdout: 0.2
  - id: tier-upgraded-gold-platinum
    on: [purchase]
    when: after.tier_rank > before.tier_rank && after.tier in ["gold", "platinum"]
    emit: {tier: "{{ after.tier }}", orders: "{{ after.orders }}"}
  - id: spend-halved-30d
    on: [purchase]
    when: >-
      before.orders >= 3 && after.days_since_first_purchase >= 90.0
      && traits.d30.revenue < 0.5 * traits.avg_30d_revenue
    emit: {spent_30d: "{{ traits.d30.revenue }}"}
    once_per: customer+month
  - id: busy-week
    on: [purchase]
    when: traits.d7.orders >= 2
    emit: {orders_7d: "{{ traits.d7.orders }}"}
    cooldown: 7d
  - id: big-order-weekly
    on: [purchase]
    when: event.amount > 200.0
    once_per: customer+week
"""
MAP = "event_id=order,customer_id=customer,occurred_at=day,amount=total"


def write_history(path: Path, purchases: int = 400, customers: int = 50) -> None:
    rng = random.Random(11)
    start = date(2025, 1, 1)
    lines = ["order,customer,day,total"]
    for n in range(purchases):
        day = start + timedelta(days=rng.randrange(300))
        amount = round(rng.lognormvariate(4.0, 0.9), 2)
        lines.append(f"o{n},cust{rng.randrange(customers)},{day.isoformat()},{amount}")
    path.write_text("\n".join(lines) + "\n")


def key(trigger: Trigger) -> tuple:
    return (
        trigger.trigger_id,
        trigger.rule,
        trigger.customer_id,
        trigger.event_id,
        trigger.occurred_at,
        tuple(sorted(trigger.attributes.items())),
        trigger.holdout,
    )


def test_worker_and_backtest_fire_the_same_triggers(stack, start_worker, tmp_path):
    history, rules_path = tmp_path / "history.csv", tmp_path / "rules.yaml"
    write_history(history)
    rules_path.write_text(RULES)
    frame, _ = load_csv(history, parse_mapping(MAP))
    purchases = list(to_purchases(frame, "csv"))
    settings = Settings()
    offline = backtest(
        load_rules_file(rules_path), purchases, settings.policies(), settings.purchase_models()
    )
    fired = {t.rule for t in offline.triggers}
    assert fired == {r for r in offline.rules}, "every rule should fire on this history"

    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    with start_worker(rules_file=str(rules_path), checkpoint_interval="1") as worker:
        with Publisher(bootstrap) as publisher:
            for purchase in purchases:
                publisher.publish(topics.PURCHASES, purchase)
            publisher.flush()
        wait_until(
            lambda: committed_total(bootstrap, "crmstream", topics.PURCHASES) == len(purchases),
            120,
            "the worker to apply every purchase",
        )
        assert worker.stop() == 0, worker.log()[-3000:]
    live = [
        msgspec.json.decode(r.value, type=Trigger) for r in read_topic(bootstrap, topics.TRIGGERS)
    ]
    assert len(live) == len(offline.triggers) > 50
    assert sorted(map(key, live)) == sorted(map(key, offline.triggers))
