"""Profile arithmetic, the Redis field encoding of profiles, and currency conversion."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmstream.models.money import Currencies, UnsupportedCurrency
from crmstream.models.profile import Profile, apply_purchase
from crmstream.models.tiers import TIERS, TierPolicy
from crmstream.schemas.inputs import Purchase
from crmstream.schemas.outputs import TierChange
from crmstream.streams.profiles import profile_from_fields, profile_to_fields

POLICY = TierPolicy(silver=100.0, gold=500.0, platinum=2000.0, hysteresis=0.25)
JAN_1 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
JAN_2 = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
JAN_3 = datetime(2026, 1, 3, 12, 0, tzinfo=UTC)


def purchase(
    amount: float,
    cost: float | None = None,
    at: datetime = JAN_1,
    event_id: str = "e1",
    customer_id: str = "c1",
) -> Purchase:
    return Purchase(
        event_id=event_id, customer_id=customer_id, occurred_at=at, amount=amount, cost=cost
    )


# --- apply_purchase: arithmetic -----------------------------------------------------------


def test_first_purchase_starts_the_profile():
    profile, _ = apply_purchase(Profile(customer_id="c1"), purchase(40.0, 15.0, JAN_2), POLICY)
    assert profile.customer_id == "c1"
    assert profile.orders == 1
    assert profile.revenue == 40.0
    assert profile.cost == 15.0
    assert profile.clv == 25.0
    assert profile.first_purchase_at == JAN_2
    assert profile.last_purchase_at == JAN_2


def test_purchases_accumulate_orders_revenue_and_cost():
    profile = Profile(customer_id="c1")
    for amount, cost in [(10.0, 4.0), (20.0, None), (30.5, 0.5)]:
        profile, _ = apply_purchase(profile, purchase(amount, cost), POLICY)
    assert profile.orders == 3
    assert profile.revenue == 60.5
    assert profile.cost == 4.5  # a purchase without a cost counts as cost 0
    assert profile.clv == 56.0


@pytest.mark.parametrize(
    ("revenue", "cost", "clv"),
    [(0.0, 0.0, 0.0), (250.0, 100.0, 150.0), (10.0, 25.0, -15.0)],
)
def test_clv_is_revenue_minus_cost(revenue, cost, clv):
    assert Profile(customer_id="c1", revenue=revenue, cost=cost).clv == clv


def test_first_and_last_purchase_with_out_of_order_timestamps():
    profile = Profile(customer_id="c1")
    for index, at in enumerate([JAN_2, JAN_1, JAN_3, JAN_2]):
        profile, _ = apply_purchase(profile, purchase(1.0, at=at, event_id=f"e{index}"), POLICY)
    assert profile.first_purchase_at == JAN_1
    assert profile.last_purchase_at == JAN_3
    assert profile.orders == 4


def test_purchase_times_compare_as_instants_across_offsets():
    # 01:00 at +05:00 is 20:00 UTC the day before: earlier than 21:00 UTC.
    plus_five = timezone(timedelta(hours=5))
    early = datetime(2026, 1, 2, 1, 0, tzinfo=plus_five)
    late = datetime(2026, 1, 1, 21, 0, tzinfo=UTC)
    profile = Profile(customer_id="c1")
    profile, _ = apply_purchase(profile, purchase(1.0, at=late, event_id="late"), POLICY)
    profile, _ = apply_purchase(profile, purchase(1.0, at=early, event_id="early"), POLICY)
    assert profile.first_purchase_at == early
    assert profile.last_purchase_at == late


def test_base_currency_amount_and_cost_override_the_purchase_figures():
    buy = purchase(amount=100.0, cost=40.0)
    profile, _ = apply_purchase(Profile(customer_id="c1"), buy, POLICY, amount=110.0, cost=44.0)
    assert (profile.revenue, profile.cost) == (110.0, 44.0)
    assert profile.clv == pytest.approx(66.0)


def test_zero_overrides_are_used_rather_than_the_purchase_figures():
    buy = purchase(amount=100.0, cost=40.0)
    profile, _ = apply_purchase(Profile(customer_id="c1"), buy, POLICY, amount=0.0, cost=0.0)
    assert (profile.revenue, profile.cost) == (0.0, 0.0)


def test_only_one_override_leaves_the_other_figure_from_the_purchase():
    buy = purchase(amount=100.0, cost=40.0)
    only_amount, _ = apply_purchase(Profile(customer_id="c1"), buy, POLICY, amount=200.0)
    only_cost, _ = apply_purchase(Profile(customer_id="c1"), buy, POLICY, cost=10.0)
    assert (only_amount.revenue, only_amount.cost) == (200.0, 40.0)
    assert (only_cost.revenue, only_cost.cost) == (100.0, 10.0)


def test_input_profile_is_not_modified():
    before = Profile(
        customer_id="c1",
        orders=3,
        revenue=90.0,
        cost=10.0,
        tier="bronze",
        first_purchase_at=JAN_2,
        last_purchase_at=JAN_2,
    )
    snapshot = msgspec.structs.asdict(before)
    after, change = apply_purchase(before, purchase(500.0, at=JAN_3), POLICY)
    assert change is not None  # the tier moved, so the new profile had its tier set
    assert after is not before
    assert msgspec.structs.asdict(before) == snapshot
    assert after.tier == "gold"


# --- apply_purchase: tier changes ---------------------------------------------------------


def test_no_tier_change_returns_none_and_keeps_the_tier():
    profile, change = apply_purchase(Profile(customer_id="c1"), purchase(50.0), POLICY)
    assert change is None
    assert profile.tier == "bronze"


def test_promotion_produces_a_tier_change_with_all_fields():
    start = Profile(customer_id="c1", orders=1, revenue=80.0, cost=0.0, tier="bronze")
    profile, change = apply_purchase(start, purchase(60.0, 10.0, JAN_2, "evt-7"), POLICY)
    assert profile.tier == "silver"
    assert isinstance(change, TierChange)
    assert change.customer_id == "c1"
    assert change.from_tier == "bronze"
    assert change.to_tier == "silver"
    assert change.clv == 130.0
    assert change.occurred_at == JAN_2
    assert change.event_id == "evt-7"
    assert change.reason == "clv 130.00 reached the silver threshold 100.00"
    assert change.schema_version == 1
    assert re.fullmatch(r"[0-9a-f]{32}", change.change_id)


def test_tier_decision_starts_from_the_stored_tier():
    # A gold customer inside gold's hysteresis band (375..500) stays gold.
    start = Profile(customer_id="c1", orders=5, revenue=600.0, cost=200.0, tier="gold")
    profile, change = apply_purchase(start, purchase(0.0, 10.0), POLICY)
    assert profile.clv == 390.0
    assert (profile.tier, change) == ("gold", None)


def test_demotion_when_cost_pushes_clv_below_the_floor():
    start = Profile(customer_id="c1", orders=2, revenue=150.0, cost=30.0, tier="silver")
    profile, change = apply_purchase(start, purchase(0.0, 60.0, event_id="loss"), POLICY)
    assert profile.clv == 60.0  # below silver's floor of 75
    assert profile.tier == "bronze"
    assert change is not None
    assert (change.from_tier, change.to_tier, change.clv) == ("silver", "bronze", 60.0)
    assert "fell below 75.00" in change.reason


def test_change_id_is_stable_across_calls():
    start = Profile(customer_id="c1")
    buy = purchase(150.0, event_id="evt-1")
    _, first = apply_purchase(start, buy, POLICY)
    _, second = apply_purchase(start, buy, POLICY)
    assert first is not None
    assert second == first  # a redelivered event yields an identical output


def test_change_id_depends_on_the_event_not_on_the_profile_figures():
    # The same event applied to a slightly different profile (e.g. after a retry that
    # read a newer version) must keep the same id so consumers can drop the copy.
    buy = purchase(150.0, event_id="evt-1")
    _, one = apply_purchase(Profile(customer_id="c1"), buy, POLICY)
    _, two = apply_purchase(Profile(customer_id="c1", orders=9, revenue=1.0), buy, POLICY)
    assert one is not None and two is not None
    assert one.change_id == two.change_id


def test_change_id_differs_for_different_event_ids():
    start = Profile(customer_id="c1")
    ids = {
        apply_purchase(start, purchase(150.0, event_id=event_id), POLICY)[1].change_id
        for event_id in ["evt-1", "evt-2", "evt-10", "evt-1 "]
    }
    assert len(ids) == 4


def test_change_id_differs_for_different_transitions_of_one_event():
    buy = purchase(600.0, event_id="evt-1")
    _, to_gold = apply_purchase(Profile(customer_id="c1"), buy, POLICY)
    _, silver_to_gold = apply_purchase(Profile(customer_id="c1", tier="silver"), buy, POLICY)
    big = purchase(3000.0, event_id="evt-1")
    _, to_platinum = apply_purchase(Profile(customer_id="c1"), big, POLICY)
    ids = {to_gold.change_id, silver_to_gold.change_id, to_platinum.change_id}
    assert len(ids) == 3


# --- Redis field encoding -----------------------------------------------------------------


def test_profile_is_one_json_field_of_the_hash():
    fields = profile_to_fields(Profile(customer_id="c1", orders=2, revenue=30.5, cost=10.0))
    assert list(fields) == ["profile"]
    stored = json.loads(fields["profile"])
    assert (stored["orders"], stored["revenue"], stored["tier"]) == (2, 30.5, "bronze")
    assert stored["first_purchase_at"] is None


def test_profile_from_fields_ignores_bookkeeping_fields():
    fields = {"_v": "7", "o:crm.purchases:3": "41", **profile_to_fields(Profile(customer_id="c9"))}
    assert profile_from_fields(fields) == Profile(customer_id="c9")


# Offsets in whole minutes: what RFC 3339 (and so every decoded purchase) can carry.
fixed_offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(timezones=fixed_offsets)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)

profiles = st.builds(
    Profile,
    customer_id=st.text(min_size=1, max_size=64),
    orders=st.integers(min_value=0, max_value=2**63 - 1),
    revenue=finite_floats,
    cost=finite_floats,
    tier=st.sampled_from(TIERS),
    first_purchase_at=st.none() | aware_datetimes,
    last_purchase_at=st.none() | aware_datetimes,
)


@settings(max_examples=200, deadline=None)
@given(profiles)
def test_profile_fields_round_trip(profile):
    decoded = profile_from_fields(profile_to_fields(profile))
    assert decoded == profile
    for name in ("first_purchase_at", "last_purchase_at"):
        original, restored = getattr(profile, name), getattr(decoded, name)
        if original is not None:
            assert restored.utcoffset() == original.utcoffset()


# --- currencies ---------------------------------------------------------------------------


def test_base_currency_amounts_are_unchanged():
    assert Currencies("EUR", {"USD": 0.9}).to_base(12.34, "EUR") == 12.34


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [(10.0, "EUR", 11.0), (100.0, "GBP", 125.0), (0.0, "EUR", 0.0), (2.0, "JPY", 0.0125)],
)
def test_other_currencies_are_multiplied_by_their_rate(amount, currency, expected):
    fx = Currencies("USD", {"EUR": 1.1, "GBP": 1.25, "JPY": 0.00625})
    assert fx.to_base(amount, currency) == pytest.approx(expected)


def test_unknown_currency_raises_unsupported_currency():
    fx = Currencies("USD", {"EUR": 1.1})
    with pytest.raises(UnsupportedCurrency, match=r"CHF.*USD"):
        fx.to_base(1.0, "CHF")
    # Currency codes are exact: a lower-case base is not the base.
    with pytest.raises(UnsupportedCurrency):
        fx.to_base(1.0, "usd")


def test_unsupported_currency_is_a_value_error():
    with pytest.raises(ValueError):
        Currencies().to_base(1.0, "EUR")
