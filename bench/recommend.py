"""Cost of recommendations per purchase, on Complete Journey baskets.

Prints, per purchase with items (thread CPU time, one core):

* the pure model: learning the basket into in-memory item statistics, remembering it in
  the customer's state, and scoring their top-k (:mod:`crmstream.models.recommend`);
* the fold (:func:`crmstream.models.events.apply_event`) with and without the purchase's
  items, and the profile's JSON size and encode+decode time with the recommendations'
  state, and without it (as the worker stores it, the item state under a key of its own);
* against an embedded Redis, per batch of ``--batch`` purchases as the worker does: the
  read of the item statistics before the fold and the exactly-once update after it
  (:mod:`crmstream.streams.items`), wall time and the Redis server's CPU per purchase::

    .venv/bin/python bench/recommend.py [--purchases 5000] [--batch 100]

No timed assertion anywhere: this prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgspec

from crmstream.models.alerts import AlertPolicy
from crmstream.models.events import Policies, apply_event
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.recommend import (
    DEFAULT_PARAMS,
    CustomerItems,
    ItemStats,
    basket_update,
    recommend,
    remember,
)
from crmstream.models.tiers import TierPolicy
from crmstream.schemas import Purchase
from crmstream.streams.datasets.completejourney import load_lines
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.items import ItemStore
from crmstream.streams.profiles import Delivery, profile_from_fields, profile_to_fields
from crmstream.streams.tools.backfill import to_basket_purchases


def _cpu() -> float:
    return time.thread_time_ns() / 1000.0


def pure(purchases: list[Purchase]) -> dict[str, float]:
    params = DEFAULT_PARAMS
    stats = ItemStats(params)
    states: dict[str, CustomerItems] = {}
    learn = score = 0.0
    for purchase in purchases:
        items = [x.sku for x in purchase.items or ()]
        at = purchase.occurred_at.timestamp()
        start = _cpu()
        stats.learn(basket_update(items, at, params))
        state = remember(states.get(purchase.customer_id, CustomerItems()), items, at, params)
        states[purchase.customer_id] = state
        middle = _cpu()
        recommend(state, stats.view(state.last_basket, params), at, params)
        score += _cpu() - middle
        learn += middle - start
    n = len(purchases)
    return {"learn": learn / n, "recommend": score / n}


def fold(purchases: list[Purchase]) -> dict[str, float]:
    policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}))
    stats = ItemStats()
    out = {}
    for label, with_items in (("without items", False), ("with items", True)):
        models = PurchaseModels.create()
        profiles: dict[str, Profile] = {}
        spent = 0.0
        for offset, purchase in enumerate(purchases):
            record = purchase if with_items else msgspec.structs.replace(purchase, items=None)
            profile = profiles.get(purchase.customer_id) or Profile(
                customer_id=purchase.customer_id
            )
            view = stats.view([x.sku for x in purchase.items or ()][:10], DEFAULT_PARAMS)
            start = _cpu()
            profiles[purchase.customer_id], _ = apply_event(
                profile, record, offset, policies, models, items=view
            )
            spent += _cpu() - start
            if with_items:
                items = [x.sku for x in purchase.items or ()]
                stats.learn(basket_update(items, purchase.occurred_at.timestamp(), DEFAULT_PARAMS))
        out[label] = spent / len(purchases)
        sizes, codec, apart = [], 0.0, []
        for profile in profiles.values():
            apart.append(len(profile_to_fields(profile, items_apart=True)["profile"]))
            start = _cpu()
            fields = profile_to_fields(profile)
            profile_from_fields(fields)
            codec += _cpu() - start
            sizes.append(len(fields["profile"]))
        out[f"profile bytes {label}"] = sum(sizes) / len(sizes)
        out[f"profile bytes apart {label}"] = sum(apart) / len(apart)
        out[f"profile codec {label}"] = codec / len(sizes)
    return out


async def redis_cost(
    purchases: list[Purchase], batch: int, redis_url: str, item_ttl: float
) -> dict[str, float]:
    store = ItemStore(redis_url, item_ttl=item_ttl)
    client = store.client
    await client.flushdb()  # each run counts every purchase anew

    async def server_cpu() -> float:
        info = await client.info("cpu")
        return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6

    deliveries = [
        Delivery("crm.purchases", 0, offset, p.customer_id, p.event_id, p)
        for offset, p in enumerate(purchases)
    ]
    read = write = 0.0
    calls = 0
    server = await server_cpu()
    for start in range(0, len(deliveries), batch):
        chunk = deliveries[start : start + batch]
        bought = {x.sku for d in chunk for x in (d.record.items or ())[:10]}
        began = time.perf_counter()
        await store.view(bought)
        middle = time.perf_counter()
        calls += await store.learn(chunk)
        write += time.perf_counter() - middle
        read += middle - began
    server = await server_cpu() - server
    await store.close()
    n = len(purchases)
    return {
        "read": read * 1e6 / n,
        "write": write * 1e6 / n,
        "server": server / n,
        "scripts": calls / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchases", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    lines = load_lines(households=400)
    purchases = list(to_basket_purchases(lines, "completejourney"))[: args.purchases]
    items = sum(len(p.items or ()) for p in purchases) / len(purchases)
    print(f"{len(purchases)} Complete Journey purchases, {items:.1f} items each on average")
    model = pure(purchases)
    print(f"model, µs per purchase: learn {model['learn']:.1f}, recommend {model['recommend']:.1f}")
    folded: dict[str, Any] = fold(purchases)
    print(
        "fold (apply_event), µs per purchase: without items "
        f"{folded['without items']:.1f}, with items {folded['with items']:.1f}"
    )
    print(
        "profile JSON, bytes: without items "
        f"{folded['profile bytes without items']:.0f}, with items "
        f"{folded['profile bytes with items']:.0f}; encode+decode µs: "
        f"{folded['profile codec without items']:.1f} -> {folded['profile codec with items']:.1f}"
    )
    print(
        "profile JSON as every event of the customer reads it (the item state has a key of "
        "its own, read only for purchases with items): "
        f"{folded['profile bytes apart with items']:.0f} bytes"
    )
    with EmbeddedStack() as stack:
        for item_ttl, label in ((0.0, "no cache"), (30.0, "30 s item cache")):
            cost = asyncio.run(redis_cost(purchases, args.batch, stack.redis_url, item_ttl))
            print(
                f"redis ({label}), per purchase in batches of {args.batch}: read "
                f"{cost['read']:.1f} µs, exactly-once update {cost['write']:.1f} µs (wall), "
                f"server CPU {cost['server']:.1f} µs, {cost['scripts']:.1f} script calls"
            )


if __name__ == "__main__":
    main()
