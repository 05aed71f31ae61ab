"""The recommendation model on synthetic baskets of known structure."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from crmstream.models.alerts import AlertPolicy
from crmstream.models.events import Policies, apply_event
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.recommend import (
    DAY,
    DEFAULT_PARAMS,
    EPOCH,
    CustomerItems,
    ItemStats,
    RecommendParams,
    basket_update,
    recommend,
    remember,
)
from crmstream.models.rules import load_rules
from crmstream.models.tiers import TierPolicy
from crmstream.schemas import Purchase, Trigger
from crmstream.schemas.inputs import Item


def _learn_all(
    baskets: list[tuple[str, float, list[str]]], params: RecommendParams = DEFAULT_PARAMS
) -> tuple[ItemStats, dict[str, CustomerItems]]:
    stats = ItemStats(params)
    states: dict[str, CustomerItems] = {}
    for customer, at, items in baskets:
        stats.learn(basket_update(items, at, params))
        states[customer] = remember(states.get(customer, CustomerItems()), items, at, params)
    return stats, states


def _top(state: CustomerItems, stats: ItemStats, now: float, k: int = 5) -> list[str]:
    view = stats.view(state.last_basket, DEFAULT_PARAMS)
    return [r.item for r in recommend(state, view, now, DEFAULT_PARAMS, k)]


def test_co_purchase_pairs_are_recommended_with_their_reason() -> None:
    # Many customers buy pasta with sauce and tea with lemon; a new customer buys pasta.
    rng = random.Random(1)
    baskets = []
    for n in range(200):
        pair = ["pasta", "sauce"] if n % 2 else ["tea", "lemon"]
        baskets.append((f"c{n}", EPOCH + n * 3600, [*pair, f"noise{rng.randrange(50)}"]))
    stats, _ = _learn_all(baskets)
    state = remember(CustomerItems(), ["pasta"], EPOCH + 300 * 3600, DEFAULT_PARAMS)
    top = recommend(state, stats.view(["pasta"], DEFAULT_PARAMS), EPOCH + 301 * 3600, k=3)
    assert [r.item for r in top][:2] == ["pasta", "sauce"]
    assert top[1].reason == "bought with pasta"
    assert top[2].item in {"tea", "lemon"} and top[2].reason == "popular"
    assert top[1].score > 2 * top[2].score


def test_repurchase_cycle_ranks_a_due_item_above_one_just_bought() -> None:
    # The customer buys coffee every 14 days and a lamp every 60 (on its own visit).
    baskets = [("c", EPOCH + d * DAY, ["coffee"]) for d in range(0, 140, 14)]
    baskets += [("c", EPOCH + d * DAY + 1, ["lamp"]) for d in (0, 60, 120)]
    baskets.sort(key=lambda b: b[1])
    stats, states = _learn_all(baskets)
    state = states["c"]
    coffee_due = 126 * DAY + 14 * DAY  # the lamp was bought 20 days before: not due for 40
    top = recommend(state, stats.view(state.last_basket, DEFAULT_PARAMS), EPOCH + coffee_due)
    assert top[0].item == "coffee"
    assert top[0].reason == "you buy this every ~14 days"
    lamp = next(r for r in top if r.item == "lamp")
    assert lamp.reason == "you buy this every ~60 days"
    # With damping, right after buying the lamp it scores lower than when it is due again.
    damped = RecommendParams(cycle_damping=0.5)
    soon = recommend(state, stats.view([], damped), EPOCH + 121 * DAY, damped)
    due = recommend(state, stats.view([], damped), EPOCH + 180 * DAY, damped)
    assert next(r.score for r in soon if r.item == "lamp") < next(
        r.score for r in due if r.item == "lamp"
    )


def test_cold_start_gets_popular_items_and_a_new_item_enters_once_bought() -> None:
    baskets = [(f"c{n}", EPOCH + n, ["bread"] if n % 3 else ["milk", "bread"]) for n in range(30)]
    stats, _ = _learn_all(baskets)
    assert _top(CustomerItems(), stats, EPOCH + 100, k=2) == ["bread", "milk"]
    assert "kombucha" not in stats.count
    stats.learn(basket_update(["kombucha", "bread"], EPOCH + 200, DEFAULT_PARAMS))
    state = remember(CustomerItems(), ["bread"], EPOCH + 300, DEFAULT_PARAMS)
    assert "kombucha" in _top(state, stats, EPOCH + 400, k=5)


def test_neighbour_lists_stay_capped_and_keep_the_heaviest() -> None:
    params = RecommendParams(cap=10)
    stats = ItemStats(params)
    for n in range(100):  # "hub" is bought with 100 different items, "friend" every time
        stats.learn(basket_update(["hub", "friend", f"x{n}"], EPOCH + n, params))
    assert len(stats.neighbours["hub"]) <= 15
    assert stats.top_neighbours("hub", 1)[0][0] == "friend"


def test_recent_baskets_weigh_more_than_old_ones() -> None:
    params = DEFAULT_PARAMS
    stats = ItemStats(params)
    for n in range(10):
        stats.learn(basket_update(["old"], EPOCH + n, params))
    for n in range(6):
        stats.learn(basket_update(["new"], EPOCH + 365 * DAY + n, params))
    assert [item for item, _ in stats.popular(2)] == ["new", "old"]


def test_customer_state_is_bounded_and_drops_the_least_recent() -> None:
    params = RecommendParams(max_items=5)
    state = CustomerItems()
    for n in range(20):
        state = remember(state, [f"i{n}"], EPOCH + n, params)
    assert [x.item for x in state.items] == ["i19", "i18", "i17", "i16", "i15"]
    assert state.baskets == 20


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from("abcdefghij"), min_size=1, max_size=6), min_size=1, max_size=20
    ),
    st.integers(min_value=0, max_value=12),
)
def test_top_k_is_at_most_k_distinct_items_best_first(baskets: list[list[str]], k: int) -> None:
    stats, states = _learn_all([("c", EPOCH + n * DAY, b) for n, b in enumerate(baskets)])
    top = recommend(states["c"], stats.view(states["c"].last_basket, DEFAULT_PARAMS), EPOCH, k=k)
    items = [r.item for r in top]
    assert len(items) == len(set(items)) <= k
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True)
    assert all(r.reason for r in top)


def test_a_trigger_can_carry_the_next_best_offer() -> None:
    rules = load_rules(
        "rules:\n"
        "  - id: offer\n"
        "    on: [purchase]\n"
        "    when: after.next_best_offer != null\n"
        "    emit:\n"
        '      offer: "{{ after.next_best_offer }}"\n'
        '      why: "{{ after.next_best_offer_reason }}"\n'
    )
    policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}), rules)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    plain = Purchase(event_id="p1", customer_id="c1", occurred_at=at, amount=5.0)
    profile, outputs = apply_event(
        Profile(customer_id="c1"), plain, 0, policies, PurchaseModels.create()
    )
    assert outputs == []  # no items bought yet: no offer
    basket = msgspec.structs.replace(plain, event_id="p2", items=[Item(sku="tea")])
    profile, outputs = apply_event(profile, basket, 1, policies, PurchaseModels.create())
    [trigger] = [o for o in outputs if isinstance(o, Trigger)]
    assert trigger.attributes == {"offer": "tea", "why": "you bought this before"}
    assert profile.recommendations[0].item == "tea"


def test_the_fold_scores_recommendations_only_when_a_rule_reads_them() -> None:
    reads = load_rules(
        "rules:\n  - id: offer\n    on: [purchase]\n    when: after.next_best_offer != null\n"
    )
    other = load_rules("rules:\n  - id: big\n    on: [purchase]\n    when: event.amount > 1\n")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    basket = Purchase(
        event_id="p1", customer_id="c1", occurred_at=at, amount=5.0, items=[Item(sku="tea")]
    )
    scored = []
    for rules in (reads, other, None):
        policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}), rules)
        profile, _ = apply_event(
            Profile(customer_id="c1"), basket, 0, policies, PurchaseModels.create()
        )
        assert profile.items.baskets == 1  # the item state is always kept
        scored.append([r.item for r in profile.recommendations])
    assert scored == [["tea"], [], []]
