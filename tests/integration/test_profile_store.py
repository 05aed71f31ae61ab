"""ProfileStore against a real Redis: each event applied once, whatever arrives twice."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.models.history import History, HistoryLimits, MessageEntry, remember
from crmstream.models.profile import Profile
from crmstream.schemas.inputs import ChatMessage, Item, Purchase
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.profiles import (
    _SCRIPTS,
    CUSTOMERS_PER_CALL,
    Delivery,
    ProfileStore,
    history_keys,
    items_key,
    profile_key,
)
from crmstream.streams.sink import Output

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(stack: EmbeddedStack) -> str:
    return stack.redis_url


@pytest.fixture(params=[True, False], ids=["batched", "per-customer"])
def batched(request: pytest.FixtureRequest) -> bool:
    """Both ways of calling the scripts: many customers per call (one server) and one
    per call (what a cluster gets)."""
    return request.param


def delivery(offset: int, event_id: str, amount: float, customer: str = "c1", partition: int = 0):
    return Delivery("crm.purchases", partition, offset, customer, event_id, amount)


def add(profile: Profile, d: Delivery) -> tuple[Profile, list[Output]]:
    """A minimal fold: count the order, add the amount, emit one output per event."""
    profile = Profile(
        customer_id=profile.customer_id,
        orders=profile.orders + 1,
        revenue=profile.revenue + d.record,
        first_purchase_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return profile, [Output("crm.alerts", d.customer_id.encode(), d.event_id.encode())]


async def test_same_batch_twice_applies_once(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched)
    batch = [delivery(0, "e0", 10.0), delivery(1, "e1", 5.0), delivery(2, "e2", 1.0, "c2")]
    first = await store.apply(batch, add)
    again = await store.apply(batch, add)
    assert (first.applied, first.duplicates) == (3, 0)
    assert (again.applied, again.duplicates, again.outputs) == (0, 3, [])
    profile = await store.get("c1")
    assert (profile.orders, profile.revenue) == (2, 15.0)
    assert await store.count_customers() == 2
    await store.close()


async def test_resent_event_id_at_a_new_offset_is_a_duplicate(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched)
    await store.apply([delivery(0, "e0", 10.0)], add)
    result = await store.apply([delivery(7, "e0", 10.0), delivery(8, "e8", 2.0)], add)
    assert (result.applied, result.duplicates) == (1, 1)
    assert (await store.get("c1")).orders == 2
    await store.close()


async def test_duplicates_inside_one_batch_are_applied_once(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched)
    result = await store.apply([delivery(0, "e0", 1.0), delivery(1, "e0", 1.0)], add)
    assert (result.applied, result.duplicates) == (1, 1)
    await store.close()


async def test_offset_guard_holds_after_the_dedupe_window_expires(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched, dedupe_window=0.05)
    batch = [delivery(0, "e0", 10.0), delivery(1, "e1", 5.0)]
    await store.apply(batch, add)
    await asyncio.sleep(0.2)
    assert await store.client.exists("crm:{c1}:seen") == 0, "seen ids should have expired"
    replay = await store.apply(batch, add)
    assert replay.applied == 0
    assert (await store.get("c1")).orders == 2
    # Offsets are tracked per source partition: the same offset elsewhere is new.
    other = await store.apply([delivery(0, "x0", 1.0, partition=1)], add)
    assert other.applied == 1
    await store.close()


async def test_a_concurrent_writer_wins_and_the_loser_refolds(redis_url, batched):
    ours, theirs = (
        ProfileStore(redis_url, batch_scripts=batched),
        ProfileStore(redis_url, batch_scripts=batched),
    )
    interfered = []

    async def interfere(outputs):
        if not interfered:
            interfered.append(outputs)
            await theirs.apply([delivery(0, "e0", 10.0), delivery(1, "e1", 5.0)], add)

    result = await ours.apply([delivery(0, "e0", 10.0)], add, before_commit=interfere)
    assert result.conflicts == 1
    assert (result.applied, result.duplicates) == (0, 1)
    profile = await ours.get("c1")
    assert (profile.orders, profile.revenue) == (2, 15.0)
    await ours.close()
    await theirs.close()


async def test_a_batch_of_more_customers_than_one_call_holds(redis_url, batched):
    """Several script calls' worth of customers in one batch: each customer gets their
    own events and outputs, and a customer changed by another writer meanwhile alone is
    folded again."""
    ours, theirs = ProfileStore(redis_url, batch_scripts=batched), ProfileStore(redis_url)
    customers = [f"many-{n}" for n in range(2 * CUSTOMERS_PER_CALL + 7)]
    batch = [delivery(n, f"big-{n}", float(n), customer) for n, customer in enumerate(customers)]
    interfered = []

    async def interfere(outputs):
        if not interfered:
            interfered.append(outputs)
            await theirs.apply([delivery(0, "other-0", 100.0, customers[-1], partition=3)], add)

    result = await ours.apply(batch, add, before_commit=interfere)
    assert (result.applied, result.duplicates, result.conflicts) == (len(customers), 0, 1)
    assert sorted(o.value.decode() for o in result.outputs) == sorted(d.event_id for d in batch)
    found = await ours.get_many(customers)
    assert [found[c].revenue for c in customers[:-1]] == [
        float(n) for n in range(len(customers) - 1)
    ]
    assert (found[customers[-1]].orders, found[customers[-1]].revenue) == (
        2,
        100.0 + len(customers) - 1,
    )
    assert (await ours.apply(batch, add)).duplicates == len(customers)
    await ours.close()
    await theirs.close()


async def test_profile_fields_are_readable_in_redis(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched)
    await store.apply([delivery(4, "e4", 12.5)], add)
    fields = await store.client.hgetall(profile_key("c1"))
    stored = json.loads(fields["profile"])
    assert (stored["orders"], stored["revenue"]) == (1, 12.5)
    assert fields["o:crm.purchases:0"] == "4"
    assert fields["_v"] == "1"
    await store.close()


async def test_unknown_customer_has_no_profile(redis_url):
    store = ProfileStore(redis_url)
    assert await store.get("nobody") is None
    await store.close()


async def test_scripts_lost_by_the_server_are_loaded_again(redis_url, batched):
    """A restarted or flushed server forgets its Lua scripts: the store loads them again
    and applies the batch once."""
    store = ProfileStore(redis_url, batch_scripts=batched)
    await store.apply([delivery(0, "s0", 10.0, "flushed")], add)
    await store.client.script_flush()
    assert await store.client.script_exists(*(s.sha for s in _SCRIPTS)) == [False] * len(_SCRIPTS)
    result = await store.apply([delivery(1, "s1", 5.0, "flushed")], add)
    assert (result.applied, result.duplicates) == (1, 0)
    assert (await store.get("flushed")).orders == 2
    assert await store.client.script_exists(*(s.sha for s in _SCRIPTS)) == [True] * len(_SCRIPTS)
    await store.close()


async def test_get_many_reads_the_known_profiles_in_one_call(redis_url):
    store = ProfileStore(redis_url)
    await store.apply([delivery(0, "m0", 3.0, "many-a"), delivery(1, "m1", 4.0, "many-b")], add)
    found = await store.get_many(["many-b", "many-a", "many-unknown", "many-a"])
    assert sorted(found) == ["many-a", "many-b"]
    assert (found["many-a"].revenue, found["many-b"].revenue) == (3.0, 4.0)
    assert await store.get_many([]) == {}
    await store.close()


def said(profile: Profile, d: Delivery) -> tuple[Profile, list[Output]]:
    """A fold that remembers each event as a message of the customer's history, as the
    worker's fold does (with limits of 3 messages and 30 days)."""
    entry = MessageEntry(at=d.record, event_id=d.event_id, sentiment=-0.5, intent="refund")
    history = remember(profile.history, LIMITS, d.record, entry)
    after = msgspec.structs.replace(profile, history=history, last_message_at=d.record)
    return after, []


LIMITS = HistoryLimits(messages=3, alerts=2, tiers=2, max_age=timedelta(days=30))


async def test_history_is_kept_in_lists_the_worker_never_reads(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched, history=LIMITS)
    day = datetime(2026, 3, 1, tzinfo=UTC)
    chats = [
        Delivery("crm.chats", 0, n, "talker", f"m{n}", day + timedelta(days=n)) for n in range(5)
    ]
    await store.apply(chats[:2], said)
    await store.apply(chats[2:], said)
    # The profile's JSON holds no history: the worker's reads stay small however much it says.
    raw = await store.client.hget(profile_key("talker"), "profile")
    assert json.loads(raw)["history"] == {}
    # The lists hold the newest 3 messages (each batch appended its own, then trimmed).
    lengths = [await store.client.llen(key) for key in history_keys("talker")]
    assert lengths == [3, 0, 0]
    profile = await store.get("talker")
    assert [m.event_id for m in profile.history.messages] == ["m2", "m3", "m4"]
    # A message 40 days after the last one leaves the others past the 30-day age limit.
    late = Delivery("crm.chats", 0, 9, "talker", "m9", day + timedelta(days=44))
    await store.apply([late], said)
    assert [m.event_id for m in (await store.get("talker")).history.messages] == ["m9"]
    # Redelivered and re-sent events add nothing to the history.
    await store.apply([late, Delivery("crm.chats", 0, 10, "talker", "m9", late.record)], said)
    assert await store.client.llen(history_keys("talker")[0]) == 3
    without = await store.get_many(["talker"], history=False)
    assert without["talker"].history == History()
    await store.close()


async def test_a_history_stored_in_the_profile_moves_to_the_lists(redis_url, batched):
    """Profiles written before history had lists of their own keep it, and move it on their
    next change."""
    store = ProfileStore(redis_url, batch_scripts=batched, history=LIMITS)
    day = datetime(2026, 3, 1, tzinfo=UTC)
    old = MessageEntry(at=day, event_id="m0", sentiment=0.1, intent="other")
    legacy = Profile(customer_id="legacy", history=History(messages=[old]), last_message_at=day)
    await store.client.hset(profile_key("legacy"), "profile", msgspec.json.encode(legacy))
    assert [m.event_id for m in (await store.get("legacy")).history.messages] == ["m0"]
    await store.apply([Delivery("crm.chats", 0, 1, "legacy", "m1", day + timedelta(days=1))], said)
    assert json.loads(await store.client.hget(profile_key("legacy"), "profile"))["history"] == {}
    assert [m.event_id for m in (await store.get("legacy")).history.messages] == ["m0", "m1"]
    await store.close()


def basket(profile: Profile, d: Delivery) -> tuple[Profile, list[Output]]:
    """A fold that counts each purchase's items in the customer's item state, and its chats
    as messages."""
    record = d.record
    if isinstance(record, Purchase):
        state = profile.items
        skus = state.last_basket + [item.sku for item in record.items or ()]
        items = msgspec.structs.replace(state, last_basket=skus, baskets=state.baskets + 1)
        return msgspec.structs.replace(profile, items=items, orders=profile.orders + 1), []
    return msgspec.structs.replace(profile, messages=profile.messages + 1), []


async def test_item_state_is_read_and_written_only_for_purchases_with_items(redis_url, batched):
    store = ProfileStore(redis_url, batch_scripts=batched)
    at = datetime(2026, 3, 1, tzinfo=UTC)

    def buy(offset: int, *skus: str) -> Delivery:
        items = [Item(sku=sku) for sku in skus] or None
        purchase = Purchase(
            event_id=f"p{offset}", customer_id="shopper", occurred_at=at, amount=9.0, items=items
        )
        return Delivery("crm.purchases", 0, offset, "shopper", purchase.event_id, purchase)

    chat = ChatMessage(
        event_id="c1",
        customer_id="shopper",
        occurred_at=at,
        conversation_id="k",
        sender="customer",
        text="hello",
    )
    await store.apply([buy(0, "tea", "milk")], basket)
    # The item state has a key of its own; the profile's JSON (read with every event) has none.
    raw = json.loads(await store.client.hget(profile_key("shopper"), "profile"))
    assert raw["items"]["last_basket"] == []
    assert json.loads(await store.client.get(items_key("shopper")))["last_basket"] == [
        "tea",
        "milk",
    ]
    # A chat, and a purchase without items, neither read nor rewrite it.
    await store.client.set(items_key("shopper"), '{"last_basket":["sentinel"],"baskets":1}')
    await store.apply([Delivery("crm.chats", 0, 0, "shopper", "c1", chat), buy(1)], basket)
    assert json.loads(await store.client.get(items_key("shopper")))["last_basket"] == ["sentinel"]
    # A purchase with items folds into the stored state, exactly once.
    await store.apply([buy(2, "jam")], basket)
    await store.apply([buy(2, "jam")], basket)
    profile = await store.get("shopper")
    assert (profile.orders, profile.messages) == (3, 1)
    assert (profile.items.last_basket, profile.items.baskets) == (["sentinel", "jam"], 2)
    without = await store.get_many(["shopper"], history=False)
    assert without["shopper"].items.last_basket == []
    await store.close()
