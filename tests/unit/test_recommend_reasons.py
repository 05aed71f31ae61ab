"""``recommend()`` formats reasons for its top k only: same results as scoring with a
reason for every candidate (the straightforward version below, as it was before)."""

from __future__ import annotations

import heapq
import random

import pytest

from crmstream.models.recommend import (
    DAY,
    DEFAULT_PARAMS,
    EPOCH,
    CustomerItems,
    ItemStats,
    ItemView,
    Recommendation,
    RecommendParams,
    basket_update,
    cycle_days,
    recommend,
    remember,
)


def reference(
    state: CustomerItems, view: ItemView, now: float, params: RecommendParams, k: int
) -> list[Recommendation]:
    scores: dict[str, float] = {}
    reasons: dict[str, tuple[float, str]] = {}

    def add(item: str, value: float, reason: str) -> None:
        scores[item] = scores.get(item, 0.0) + value
        best = reasons.get(item)
        if best is None or value > best[0]:
            reasons[item] = (value, reason)

    if view.total > 0:
        weight = params.popularity_weight / view.total
        for item, count in view.popular:
            add(item, weight * count, "popular")
    if state.weight > 0:
        for history in state.items:
            share = history.weight / state.weight
            cycle = cycle_days(history)
            if cycle is not None:
                since = (now - history.last) / DAY
                if since < cycle:
                    share *= 1.0 - params.cycle_damping * (1.0 - since / cycle)
                add(history.item, share, f"you buy this every ~{max(round(cycle), 1)} days")
            else:
                add(history.item, share, "you bought this before")
    basket = [x for x in state.last_basket if view.count.get(x, 0.0) > 0]
    if basket:
        weight = params.co_weight / len(basket)
        for source in basket:
            per = weight / view.count[source]
            for item, together in view.neighbours.get(source, ()):
                add(item, per * together, f"bought with {source}")
    top = heapq.nsmallest(k, scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return [Recommendation(item, round(score, 6), reasons[item][1]) for item, score in top]


@pytest.mark.parametrize(
    "params",
    [
        DEFAULT_PARAMS,
        RecommendParams(cycle_damping=0.5, co_weight=1.0, popularity_weight=0.5),
        RecommendParams(co_weight=0.0, popular=5),
    ],
)
def test_the_same_items_scores_and_reasons_as_with_a_reason_for_every_candidate(
    params: RecommendParams,
) -> None:
    rng = random.Random(3)
    catalogue = [f"sku{i}" for i in range(60)]  # small: many shared candidates and ties
    stats = ItemStats(params)
    states: dict[int, CustomerItems] = {}
    compared = reasons = 0
    seen: set[str] = set()
    for step in range(1500):
        customer = rng.randrange(40)
        at = EPOCH + step * 0.2 * DAY
        state = states.get(customer, CustomerItems())
        view = stats.view(state.last_basket, params)
        for k in (1, 3, 10, 200):
            got = recommend(state, view, at, params, k)
            assert got == reference(state, view, at, params, k)
            compared += 1
            seen.update(r.reason.split(" ", 1)[0] for r in got)
            reasons += len(got)
        basket = rng.sample(catalogue[: 10 + customer], rng.randrange(1, 6))
        stats.learn(basket_update(basket, at, params))
        states[customer] = remember(state, basket, at, params)
    assert compared == 6000 and reasons > 30_000
    # Every kind of reason came up (without co-occurrence no pairs are counted at all).
    assert seen == ({"popular", "you", "bought"} if params.co_weight > 0 else {"popular", "you"})


def test_nothing_to_score_is_an_empty_list() -> None:
    assert recommend(CustomerItems(), ItemView(), EPOCH) == []
    assert recommend(CustomerItems(), ItemView(), EPOCH, k=0) == []
