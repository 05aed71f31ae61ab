"""Cost of scoring one customer's top-k (:func:`crmstream.models.recommend.recommend`) on
realistic state: Complete Journey purchases replayed into in-memory item statistics, and
the customers' states and item views as they were before each of the last ``--calls``
purchases; thread CPU time, one core::

    .venv/bin/python bench/recommend_scoring.py [--households 400] [--purchases 5000]

No timed assertion anywhere: this prints figures.
"""

from __future__ import annotations

import argparse
import time

from crmstream.models.recommend import (
    DEFAULT_PARAMS,
    CustomerItems,
    ItemStats,
    ItemView,
    basket_update,
    recommend,
    remember,
)
from crmstream.streams.datasets.completejourney import load_lines
from crmstream.streams.tools.backfill import to_basket_purchases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--households", type=int, default=400)
    parser.add_argument("--purchases", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    params = DEFAULT_PARAMS
    lines = load_lines(households=args.households)
    purchases = list(to_basket_purchases(lines, "completejourney"))[: args.purchases]
    stats = ItemStats(params)
    states: dict[str, CustomerItems] = {}
    calls: list[tuple[CustomerItems, ItemView, float]] = []
    for n, purchase in enumerate(purchases):
        items = [x.sku for x in purchase.items or ()]
        at = purchase.occurred_at.timestamp()
        state = states.get(purchase.customer_id, CustomerItems())
        if n >= len(purchases) - args.calls:
            calls.append((state, stats.view(state.last_basket, params), at))
        stats.learn(basket_update(items, at, params))
        states[purchase.customer_id] = remember(state, items, at, params)
    candidates = sum(
        len(
            {x.item for x in state.items}
            | {item for item, _ in view.popular}
            | {item for row in view.neighbours.values() for item, _ in row}
        )
        for state, view, _ in calls
    ) / len(calls)
    print(
        f"{args.households} households: the last {len(calls)} of {len(purchases)} purchases, "
        f"{candidates:.0f} candidates per call"
    )
    for _ in range(args.rounds):
        start = time.thread_time_ns()
        for state, view, at in calls:
            recommend(state, view, at, params)
        spent = (time.thread_time_ns() - start) / 1000 / len(calls)
        print(f"recommend(), top {params.k}: {spent:.1f} µs per call")


if __name__ == "__main__":
    main()
