"""Cost of marketing rules per event: 20 rules on a mixed stream of events.

Prints the µs per event of :func:`crmstream.models.rules.fire` alone (20 rules that all
apply to every event type, so each event evaluates all 20), and of the whole fold
(:func:`crmstream.models.events.apply_event`) with and without the rules::

    .venv/bin/python bench/rules.py [--events 3000]

Thread CPU time, on one core; the fold includes the purchase models (River), as in the
worker. No timed assertion anywhere: this prints figures.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta

import msgspec

from crmstream.models.alerts import AlertPolicy
from crmstream.models.conversations import MessageScores
from crmstream.models.events import Policies, apply_event
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.rules import fire, load_rules
from crmstream.models.tiers import TierPolicy
from crmstream.schemas import ChatMessage, Feedback, Purchase

ALL = "[purchase, chat, feedback]"
#: Twenty rules over every variable family; all apply to every event type.
CONDITIONS = [
    "before.orders == 0 && after.orders > 0",
    "after.tier_rank > before.tier_rank && after.tier in ['gold', 'platinum']",
    "after.tier in ['gold', 'platinum'] && after.negative_streak >= 2",
    "after.purchase_propensity != null && after.purchase_propensity < 0.2",
    "traits.d30.low_ratings >= 3",
    "traits.d30.revenue < 0.5 * traits.avg_30d_revenue && before.orders >= 3",
    "traits.d7.orders >= 3",
    "traits.d90.revenue > 1000.0",
    "after.clv > 500.0 && before.clv <= 500.0",
    "after.messages >= 5 && traits.d7.messages >= 3",
    "after.last_rating != null && after.last_rating <= 2",
    "after.sentiment_avg != null && after.sentiment_avg < -0.3",
    "after.days_since_first_purchase != null && after.days_since_first_purchase > 365.0",
    "event.type == 'purchase' && after.orders % 10 == 0",
    "event.type == 'feedback' && traits.d30.feedback >= 2",
    "event.type == 'chat' && traits.d30.negative_messages >= 2",
    "after.segment != null && after.segment == 2",
    "after.customer_id.startsWith('c1') && after.orders > 2",
    "traits.d30.avg_order > 80.0",
    "after.revenue > before.revenue * 1.5 && before.revenue > 0.0",
]


def rule_file() -> str:
    lines = ["rules:"]
    for n, when in enumerate(CONDITIONS):
        limit = "    cooldown: 1d" if n % 2 else "    once_per: customer+week"
        lines += [
            f"  - id: rule-{n:02d}",
            f"    on: {ALL}",
            f'    when: "{when}"',
            f"    emit: {{n: {n}, orders: '{{{{ after.orders }}}}'}}",
            limit,
        ]
    return "\n".join(lines) + "\n"


def stream(n: int, customers: int = 200, seed: int = 7) -> list[tuple[object, object]]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[tuple[object, object]] = []
    for i in range(n):
        at = start + timedelta(hours=i)
        customer = f"c{rng.randrange(customers)}"
        kind = rng.random()
        if kind < 0.5:
            amount = round(rng.uniform(5, 300), 2)
            event = Purchase(event_id=f"e{i}", customer_id=customer, occurred_at=at, amount=amount)
            events.append((event, None))
        elif kind < 0.8:
            event = ChatMessage(
                event_id=f"e{i}",
                customer_id=customer,
                occurred_at=at,
                conversation_id=f"k{i}",
                sender="customer",
                text="where is my order",
            )
            events.append((event, MessageScores(rng.uniform(-1, 1), "delivery")))
        else:
            event = Feedback(
                event_id=f"e{i}", customer_id=customer, occurred_at=at, rating=rng.randint(1, 5)
            )
            events.append((event, None))
    return events


def run(events, policies) -> tuple[float, float, int]:
    """(µs per event of the fold, µs per event of the rules alone, triggers fired)."""
    models = PurchaseModels.create()
    profiles: dict[str, Profile] = {}
    folding = firing = 0.0
    fired = 0
    for offset, (event, scores) in enumerate(events):
        before = profiles.get(event.customer_id) or Profile(customer_id=event.customer_id)
        start = time.thread_time_ns()
        after, outputs = apply_event(before, event, offset, policies, models, scores)
        folding += time.thread_time_ns() - start
        profiles[event.customer_id] = after
        if policies.rules is not None:
            fired += sum(1 for o in outputs if type(o).__name__ == "Trigger")
            # the rules alone, again on the same states as the fold gave them (the once-per
            # and cooldown state as before the event); the result is discarded
            state = msgspec.structs.replace(after, rules_fired=before.rules_fired)
            start = time.thread_time_ns()
            fire(policies.rules, before, state, event)
            firing += time.thread_time_ns() - start
    n = len(events)
    return folding / n / 1000, firing / n / 1000, fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    rules = load_rules(rule_file(), "20 rules")
    assert len(rules.rules) == 20
    base = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}))
    events = stream(args.events)
    run(events[:300], base)  # warm up
    without, _, _ = run(events, base)
    with_rules, firing, fired = run(
        events, Policies(base.tiers, base.alerts, base.currencies, rules)
    )
    print(f"{len(events)} events (50% purchases, 30% chats, 20% feedback), 200 customers")
    print(f"rules alone (fire, 20 rules evaluated per event): {firing:8.1f} µs/event")
    print(f"fold without rules:                              {without:8.1f} µs/event")
    print(f"fold with 20 rules (traits, rules, triggers):    {with_rules:8.1f} µs/event")
    print(f"added by the rules:                              {with_rules - without:8.1f} µs/event")
    print(f"triggers fired: {fired} ({fired / len(events):.2f} per event)")
    print(f"evaluation errors (null fields etc.): {sum(rules.errors.values())}")


if __name__ == "__main__":
    main()
