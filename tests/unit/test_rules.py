"""Marketing rules: loading and validation, firing limits, rendering, holdout, and the
shipped example rules on scripted customers (through the same fold as the worker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from crmstream.models.alerts import AlertPolicy
from crmstream.models.conversations import MessageScores
from crmstream.models.events import Policies, apply_event
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.rules import (
    RuleFileError,
    fire,
    in_holdout,
    load_rules,
    load_rules_file,
)
from crmstream.models.tiers import TierPolicy
from crmstream.schemas import AudienceChange, ChatMessage, Feedback, Purchase, Trigger
from crmstream.streams.ingest import OUTPUT_TOPICS
from crmstream.streams.topics import TRIGGERS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rules_of(body: str, **kwargs):
    return load_rules("rules:\n" + body, **kwargs)


def problems(text: str) -> list[dict]:
    with pytest.raises(RuleFileError) as caught:
        load_rules(text)
    return [msgspec.structs.asdict(p) for p in caught.value.problems]


def one_problem(text: str) -> dict:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def buy(n: int, amount: float, days: float = 0, customer: str = "c1") -> Purchase:
    return Purchase(
        event_id=f"p{n}",
        customer_id=customer,
        occurred_at=T0 + timedelta(days=days),
        amount=amount,
    )


def rate(n: int, rating: int, days: float = 0) -> Feedback:
    return Feedback(
        event_id=f"f{n}", customer_id="c1", occurred_at=T0 + timedelta(days=days), rating=rating
    )


def chat(n: int, days: float = 0) -> ChatMessage:
    return ChatMessage(
        event_id=f"m{n}",
        customer_id="c1",
        occurred_at=T0 + timedelta(days=days),
        conversation_id="k1",
        sender="customer",
        text="this is awful",
    )


class Customer:
    """One customer's events through ``apply_event``, as the worker folds them."""

    def __init__(self, rules, customer: str = "c1") -> None:
        self.policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}), rules)
        self.models = PurchaseModels.create()
        self.profile = Profile(customer_id=customer)
        self.offset = 0

    def send(self, event, scores: MessageScores | None = None) -> list[Trigger]:
        self.profile, outputs = apply_event(
            self.profile, event, self.offset, self.policies, self.models, scores
        )
        self.offset += 1
        return [o for o in outputs if isinstance(o, Trigger)]


# ------------------------------------------------------------------------------ loading


def test_the_example_file_loads_every_rule():
    rules = load_rules_file(EXAMPLES)
    assert [r.id for r in rules.rules] == [
        "first-purchase-over-100",
        "tier-upgraded-gold-platinum",
        "vip-negative-chat",
        "gold-propensity-fell",
        "three-low-ratings-30d",
        "spend-halved-30d",
    ]
    assert rules.rules[0].holdout == 0.1
    assert rules.rules[2].cooldown == timedelta(days=1)
    assert rules.version == load_rules_file(EXAMPLES).version


def test_triggers_go_to_the_triggers_topic():
    assert OUTPUT_TOPICS[Trigger] == TRIGGERS


def test_an_unknown_rule_field_is_named_with_its_rule_and_line():
    found = one_problem(
        "rules:\n  - id: r1\n    on: purchase\n    when: event.amount > 1.0\n    wen: true\n"
    )
    assert (found["code"], found["rule"], found["field"], found["line"], found["column"]) == (
        "unknown_field",
        "r1",
        "wen",
        5,
        5,
    )


def test_an_unknown_top_level_field_and_a_missing_rules_list_are_reported():
    codes = {p["code"] for p in problems("rule: []\n")}
    assert codes == {"unknown_field", "missing_field"}


@pytest.mark.parametrize(
    ("when", "code", "position"),
    [
        ("evnt.amount > 1.0", "unknown_variable", 1),
        ("event.amount > 1.0 && after.ordrs > 1", "unknown_field", 29),
        ("event.rating > 1", "unknown_field", 7),  # a feedback field on a purchase rule
        ("after.tier.name == 'x'", "unknown_field", 12),
        ("event.amount >", "syntax", 15),
        ("event.amount > (1.0", "syntax", 20),
        ('event.amount + "x" > 1.0', "type_error", None),
        ("event.amount", "type_error", None),  # not a boolean
        ("after.orders * 2.5 > 1.0", "type_error", None),  # CEL never mixes int and double
        ("event.amount > 1.0 && open('/etc/passwd') == ''", "unknown_function", 23),
        ("[1, 2].exists(x, x > event.amount)", "not_allowed", 8),
        ("[1, 2].map(x, x * 2) == [2, 4]", "not_allowed", 8),
        ("event.__class__ == 'x'", "unknown_field", 7),
        ("event.amount.lower() == 'x'", "unknown_function", 14),
    ],
)
def test_expression_problems_name_rule_field_and_position(when, code, position):
    found = one_problem(f"rules:\n  - id: r1\n    on: purchase\n    when: {when!r}\n")
    assert (found["code"], found["rule"], found["field"]) == (code, "r1", "when")
    assert found["line"] == 4
    assert found["position"] == position
    assert found["message"]


def test_every_problem_of_a_file_is_reported_at_once():
    text = """rules:
  - id: good
    on: purchase
    when: event.amount > 1.0
  - id: bad-limit
    on: purchase
    when: event.amount > 1.0
    once_per: year
  - id: bad-cooldown
    on: chat
    when: event.sentiment < 0.0
    cooldown: soon
  - id: both
    on: chat
    when: event.sentiment < 0.0
    cooldown: 1h
    once_per: customer
  - id: good
    on: feedback
    when: event.nps != null
  - id: Bad Id
    on: lunch
    when: "true"
    holdout: 1.5
"""
    found = {(p["rule"], p["code"]) for p in problems(text)}
    assert found == {
        ("bad-limit", "bad_once_per"),
        ("bad-cooldown", "bad_cooldown"),
        ("both", "conflicting_limits"),
        ("good", "duplicate_id"),
        ("Bad Id", "bad_id"),
        ("Bad Id", "unknown_event_type"),
        ("Bad Id", "bad_holdout"),
    }


def test_yaml_syntax_errors_have_a_line():
    found = one_problem("rules:\n  - id: r1\n    on: [purchase\n")
    assert found["code"] == "yaml_syntax"
    assert found["line"] is not None


def test_errors_read_as_file_line_rule_field():
    with pytest.raises(RuleFileError) as caught:
        load_rules("rules:\n  - id: r1\n    on: purchase\n    when: event.amout > 1.0\n", "r.yaml")
    assert str(caught.value).startswith(
        "r.yaml:4:11: rule 'r1', field 'when', expression position 7:"
    )
    assert caught.value.to_dict()["problems"][0]["code"] == "unknown_field"


def test_emit_templates_are_validated_like_when():
    found = one_problem(
        "rules:\n  - id: r1\n    on: purchase\n    when: 'true'\n"
        "    emit: {spent: 'paid {{ event.amont }}'}\n"
    )
    assert (found["code"], found["field"], found["position"]) == (
        "unknown_field",
        "emit.spent",
        15,
    )
    found = one_problem(
        "rules:\n  - id: r1\n    on: purchase\n    when: 'true'\n    emit: {items: [1, 2]}\n"
    )
    assert (found["code"], found["field"]) == ("bad_emit", "emit.items")


def test_oversized_and_deeply_nested_expressions_are_refused_before_they_are_parsed():
    deep = "(" * 5000 + "true" + ")" * 5000
    assert (
        one_problem(f"rules:\n  - id: r1\n    on: chat\n    when: '{deep}'\n")["code"] == "too_long"
    )
    nested = "(" * 30 + "true" + ")" * 30
    found = one_problem(f"rules:\n  - id: r1\n    on: chat\n    when: '{nested}'\n")
    assert found["code"] == "too_deep"
    many = " && ".join(["true"] * 200)
    assert one_problem(f"rules:\n  - id: r1\n    on: chat\n    when: '{many}'\n")["code"] == (
        "too_long"
    )


# ------------------------------------------------------------------------------- firing


def test_once_per_customer_fires_once_ever_and_the_state_is_in_the_profile():
    rules = rules_of("  - {id: r, on: purchase, when: 'event.amount > 10.0', once_per: customer}\n")
    customer = Customer(rules)
    fired = [len(customer.send(buy(n, 50.0, days=n * 40))) for n in range(3)]
    assert fired == [1, 0, 0]
    assert customer.profile.rules_fired == {"r": T0}


def test_once_per_customer_day_fires_once_each_day():
    rules = rules_of(
        "  - {id: r, on: purchase, when: 'event.amount > 10.0', once_per: customer+day}\n"
    )
    customer = Customer(rules)
    days = [0, 0.1, 0.2, 1.0, 1.4, 3.0]  # T0 is noon UTC
    fired = [len(customer.send(buy(n, 50.0, days=d))) for n, d in enumerate(days)]
    assert fired == [1, 0, 0, 1, 0, 1]


def test_cooldown_measures_event_time_since_the_last_firing():
    rules = rules_of("  - {id: r, on: purchase, when: 'event.amount > 10.0', cooldown: 2d}\n")
    customer = Customer(rules)
    days = [0, 1, 1.99, 2.0, 3, 4.5]
    fired = [len(customer.send(buy(n, 50.0, days=d))) for n, d in enumerate(days)]
    assert fired == [1, 0, 0, 1, 0, 1]


def test_without_a_limit_a_rule_fires_on_every_matching_event():
    rules = rules_of("  - {id: r, on: purchase, when: 'event.amount > 10.0'}\n")
    customer = Customer(rules)
    assert [len(customer.send(buy(n, a))) for n, a in enumerate([50.0, 5.0, 50.0])] == [1, 0, 1]


def test_trigger_ids_are_deterministic_and_distinct_per_firing_key():
    rules = rules_of(
        "  - {id: daily, on: purchase, when: 'true', once_per: customer+day}\n"
        "  - {id: each, on: purchase, when: 'true'}\n"
    )
    first = Customer(rules).send(buy(1, 20.0))
    again = Customer(rules).send(buy(1, 20.0))
    assert [t.trigger_id for t in first] == [t.trigger_id for t in again]
    other = Customer(rules).send(buy(2, 20.0))
    ids = {t.rule: t.trigger_id for t in other}
    assert ids["daily"] == first[0].trigger_id  # same customer and day: same key
    assert ids["each"] != first[1].trigger_id  # another event: another key
    assert first[0].event_id == "p1" and first[0].customer_id == "c1"


def test_emit_renders_literals_typed_values_and_text():
    rules = rules_of(
        "  - id: r\n    on: purchase\n    when: 'true'\n    emit:\n"
        "      campaign: welcome\n      rank: 3\n      vip: false\n"
        "      spent: '{{ event.amount }}'\n      orders: '{{ after.orders }}'\n"
        "      note: 'order {{ after.orders }} of {{ event.amount }} in {{ event.currency }}'\n"
        "      big: '{{ event.amount > 100.0 }}'\n"
    )
    (trigger,) = Customer(rules).send(buy(1, 150.0))
    assert trigger.attributes == {
        "campaign": "welcome",
        "rank": 3,
        "vip": False,
        "spent": 150.0,
        "orders": 1,
        "note": "order 1 of 150.0 in USD",
        "big": True,
    }


def test_a_rule_that_fails_at_run_time_does_not_fire_and_is_counted():
    rules = rules_of("  - {id: r, on: feedback, when: 'event.rating <= 2'}\n")
    customer = Customer(rules)
    nps_only = Feedback(event_id="f1", customer_id="c1", occurred_at=T0, nps=3)
    assert customer.send(nps_only) == []
    assert rules.errors["r"] == 1
    assert len(customer.send(rate(2, 1))) == 1


def test_rules_only_see_their_event_types():
    rules = rules_of("  - {id: r, on: feedback, when: 'true'}\n")
    customer = Customer(rules)
    assert customer.send(buy(1, 20.0)) == []
    assert len(customer.send(rate(2, 5))) == 1


def test_holdout_assignment_is_deterministic_and_about_the_fraction():
    customers = [f"c{i}" for i in range(20_000)]
    held = [c for c in customers if in_holdout("r1", c, 0.1)]
    assert 0.09 < len(held) / len(customers) < 0.11
    assert held == [c for c in customers if in_holdout("r1", c, 0.1)]
    other = {c for c in customers if in_holdout("r2", c, 0.1)}
    assert len(other & set(held)) < len(held) / 2  # independent per rule
    assert not any(in_holdout("r1", c, 0.0) for c in customers[:1000])


def test_holdout_customers_get_their_trigger_marked_and_the_state_advances():
    rules = rules_of("  - {id: r, on: purchase, when: 'true', once_per: customer, holdout: 0.5}\n")
    marks = {}
    for i in range(200):
        customer = Customer(rules, f"c{i}")
        (trigger,) = customer.send(buy(i, 20.0, customer=f"c{i}"))
        assert trigger.holdout == in_holdout("r", f"c{i}", 0.5)
        assert customer.send(buy(1000 + i, 20.0, customer=f"c{i}")) == []
        marks[trigger.holdout] = marks.get(trigger.holdout, 0) + 1
    assert marks[True] > 50 and marks[False] > 50


def test_windowed_traits_count_the_last_30_days_only():
    rules = rules_of(
        "  - id: r\n    on: feedback\n    when: 'true'\n"
        "    emit: {low30: '{{ traits.d30.low_ratings }}', fb90: '{{ traits.d90.feedback }}'}\n"
    )
    customer = Customer(rules)
    seen = [customer.send(rate(n, 1, days=d))[0].attributes for n, d in enumerate([0, 20, 40])]
    assert seen == [{"low30": 1, "fb90": 1}, {"low30": 2, "fb90": 2}, {"low30": 2, "fb90": 3}]


# ------------------------------------------------------------------ the shipped examples


@pytest.fixture
def examples():
    return load_rules_file(EXAMPLES)


def fired(triggers: list, rule: str) -> list[Trigger]:
    return [t for t in triggers if isinstance(t, Trigger) and t.rule == rule]


def test_example_first_purchase_over_100(examples):
    big = Customer(examples, "c1")
    (trigger,) = fired(big.send(buy(1, 150.0)), "first-purchase-over-100")
    assert trigger.attributes == {"campaign": "welcome-vip", "amount": 150.0}
    assert fired(big.send(buy(2, 300.0, days=1)), "first-purchase-over-100") == []
    small = Customer(examples, "c2")
    assert fired(small.send(buy(3, 80.0, customer="c2")), "first-purchase-over-100") == []
    assert fired(small.send(buy(4, 200.0, customer="c2")), "first-purchase-over-100") == []


def test_example_tier_upgraded_to_gold_or_platinum(examples):
    customer = Customer(examples)
    assert fired(customer.send(buy(1, 150.0)), "tier-upgraded-gold-platinum") == []  # silver
    (gold,) = fired(customer.send(buy(2, 400.0, days=1)), "tier-upgraded-gold-platinum")
    assert gold.attributes["tier"] == "gold"
    assert gold.attributes["message"] == "Welcome to gold, after 2 orders"
    assert fired(customer.send(buy(3, 100.0, days=2)), "tier-upgraded-gold-platinum") == []
    (platinum,) = fired(customer.send(buy(4, 2000.0, days=3)), "tier-upgraded-gold-platinum")
    assert platinum.attributes["tier"] == "platinum"


def test_example_vip_with_a_negative_chat(examples):
    customer = Customer(examples)
    angry = MessageScores(-0.8, "complaint")
    assert fired(customer.send(chat(1), angry), "vip-negative-chat") == []  # not a VIP yet
    customer.send(buy(2, 600.0))
    assert customer.profile.tier == "gold"
    (trigger,) = fired(customer.send(chat(3, days=0.1), angry), "vip-negative-chat")
    assert trigger.attributes == {"action": "call-back", "sentiment": -0.8, "intent": "complaint"}
    assert fired(customer.send(chat(4, days=0.2), angry), "vip-negative-chat") == []  # cooldown
    calm = MessageScores(0.2, "other")
    assert fired(customer.send(chat(5, days=2), calm), "vip-negative-chat") == []
    assert len(fired(customer.send(chat(6, days=2.1), angry), "vip-negative-chat")) == 1


def test_example_propensity_fell_below_0_2_for_a_gold_customer(examples):
    event = buy(1, 20.0)
    gold = Profile(customer_id="c1", tier="gold", orders=5, purchase_propensity=0.35)
    fell = msgspec.structs.replace(gold, orders=6, purchase_propensity=0.15)
    (trigger,) = fired(fire(examples, gold, fell, event)[1], "gold-propensity-fell")
    assert trigger.attributes == {"action": "win-back", "propensity": 0.15}
    silver = msgspec.structs.replace(fell, tier="silver")
    assert fired(fire(examples, gold, silver, event)[1], "gold-propensity-fell") == []
    already_low = msgspec.structs.replace(gold, purchase_propensity=0.1)
    assert fired(fire(examples, already_low, fell, event)[1], "gold-propensity-fell") == []
    unknown = msgspec.structs.replace(gold, purchase_propensity=None)
    assert fired(fire(examples, unknown, fell, event)[1], "gold-propensity-fell") == []
    assert examples.errors["gold-propensity-fell"] == 0  # null guarded, not an error


def test_example_three_low_ratings_in_30_days(examples):
    customer = Customer(examples)
    ratings = [(1, 0), (5, 3), (2, 10), (1, 25), (1, 26), (2, 70), (1, 80), (1, 90)]
    hits = [
        bool(fired(customer.send(rate(n, r, days=d)), "three-low-ratings-30d"))
        for n, (r, d) in enumerate(ratings)
    ]
    # third low rating in 30 days on day 25; days 26 and 70-90 are within the cooldown
    # or have fewer than three low ratings in their window; day 90 has three again
    assert hits == [False, False, False, True, False, False, False, True]
    spread = Customer(examples, "c2")
    for n, d in enumerate([0, 40, 80]):
        low = Feedback(
            event_id=f"s{n}",
            customer_id="c2",
            occurred_at=T0 + timedelta(days=d),
            rating=1,
        )
        assert fired(spread.send(low), "three-low-ratings-30d") == []


def test_example_spend_halved_in_the_last_30_days(examples):
    slowing = Customer(examples)
    for n, d in enumerate([0, 30, 60]):
        assert fired(slowing.send(buy(n, 300.0, days=d)), "spend-halved-30d") == []
    (trigger,) = fired(slowing.send(buy(9, 10.0, days=150)), "spend-halved-30d")
    assert trigger.attributes["spent_30d"] == 10.0
    assert trigger.attributes["usual_30d"] == pytest.approx(910.0 * 30 / 150)
    steady = Customer(examples, "c2")
    for n, d in enumerate([0, 30, 60, 90, 120]):
        assert fired(steady.send(buy(n, 300.0, days=d, customer="c2")), "spend-halved-30d") == []


# ------------------------------------------------------------------------------ audiences


def changes(outputs) -> list[tuple[str, str, str]]:
    return [(c.audience, c.change, c.event_id) for c in outputs if isinstance(c, AudienceChange)]


class Audiences(Customer):
    def send_all(self, event, scores=None):
        self.profile, outputs = apply_event(
            self.profile, event, self.offset, self.policies, self.models, scores
        )
        self.offset += 1
        return outputs


def test_example_audiences_enter_and_exit_once_with_deterministic_ids(examples):
    customer = Audiences(examples)
    assert changes(customer.send_all(buy(1, 150.0))) == []
    entered = customer.send_all(buy(2, 400.0, days=1))  # gold
    assert changes(entered) == [("vip", "enter", "p2")]
    assert customer.profile.audiences == ["vip"]
    assert changes(customer.send_all(buy(3, 10.0, days=2))) == []  # still a member
    assert changes(customer.send_all(rate(4, 1, days=3))) == []
    assert changes(customer.send_all(rate(5, 2, days=4))) == [("unhappy-30d", "enter", "f5")]
    assert customer.profile.audiences == ["vip", "unhappy-30d"]
    left = customer.send_all(rate(6, 5, days=40))  # the low ratings are out of the window
    assert changes(left) == [("unhappy-30d", "exit", "f6")]
    (change,) = [c for c in left if isinstance(c, AudienceChange)]
    again = Audiences(examples)
    for event in [
        buy(1, 150.0),
        buy(2, 400.0, days=1),
        buy(3, 10.0, days=2),
        rate(4, 1, days=3),
        rate(5, 2, days=4),
        rate(6, 5, days=40),
    ]:
        outputs = again.send_all(event)  # fmt: skip
    assert [c.change_id for c in outputs if isinstance(c, AudienceChange)] == [change.change_id]
    assert change.customer_id == "c1" and change.occurred_at == T0 + timedelta(days=40)


def test_an_audience_sees_after_and_traits_only():
    found = one_problem("audiences:\n  - id: a\n    when: event.amount > 1.0\n")
    assert (found["code"], found["rule"], found["field"], found["position"]) == (
        "unknown_variable",
        "a",
        "when",
        1,
    )
    assert "after, traits" in found["message"]
    codes = {p["code"] for p in problems("audiences:\n  - id: a\n    when: 'true'\n    on: chat\n")}
    assert codes == {"unknown_field"}


def test_an_audience_removed_from_the_file_is_left_at_the_next_event():
    first = load_rules("audiences:\n  - {id: everyone, when: 'after.orders >= 0'}\n")
    customer = Audiences(first)
    assert changes(customer.send_all(buy(1, 5.0))) == [("everyone", "enter", "p1")]
    customer.policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}),
                                 load_rules("rules: []\n"))  # fmt: skip
    assert changes(customer.send_all(buy(2, 5.0))) == [("everyone", "exit", "p2")]
    assert customer.profile.audiences == []


def test_audience_ids_are_unique():
    found = one_problem("audiences:\n  - {id: a, when: 'true'}\n  - {id: a, when: 'false'}\n")
    assert (found["code"], found["rule"]) == ("duplicate_id", "a")
