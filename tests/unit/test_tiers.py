"""TierPolicy: promotions at a threshold, demotions only below the hysteresis floor."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmstream.models.tiers import TIERS, TierPolicy

# Thresholds and a hysteresis that are exact in binary, so the floors are exact too:
# silver 100 -> 75, gold 500 -> 375, platinum 2000 -> 1500.
POLICY = TierPolicy(silver=100.0, gold=500.0, platinum=2000.0, hysteresis=0.25)


@pytest.mark.parametrize(
    ("current", "clv", "expected"),
    [
        ("bronze", 0.0, "bronze"),
        ("bronze", 99.99, "bronze"),
        ("bronze", 100.0, "silver"),
        ("bronze", 100.01, "silver"),
        ("silver", 499.99, "silver"),
        ("silver", 500.0, "gold"),
        ("gold", 2000.0, "platinum"),
        ("platinum", 1e9, "platinum"),
    ],
)
def test_promotes_when_clv_reaches_a_threshold(current, clv, expected):
    assert POLICY.decide(current, clv) == expected


@pytest.mark.parametrize(
    ("current", "clv", "expected"),
    [
        ("bronze", 500.0, "gold"),
        ("bronze", 1999.99, "gold"),
        ("bronze", 2000.0, "platinum"),
        ("silver", 2500.0, "platinum"),
    ],
)
def test_promotion_may_skip_tiers(current, clv, expected):
    assert POLICY.decide(current, clv) == expected


@pytest.mark.parametrize(
    ("current", "clv"),
    [
        ("silver", 99.99),
        ("silver", 80.0),
        ("silver", 75.0),  # exactly on the floor: not yet below it
        ("gold", 499.0),
        ("gold", 375.0),
        ("platinum", 1999.0),
        ("platinum", 1500.0),
    ],
)
def test_hysteresis_band_keeps_the_tier(current, clv):
    assert POLICY.decide(current, clv) == current


@pytest.mark.parametrize(
    ("current", "clv", "expected"),
    [
        ("silver", 74.99, "bronze"),
        ("silver", 0.0, "bronze"),
        ("gold", 374.99, "silver"),
        ("platinum", 1499.99, "gold"),
    ],
)
def test_demotes_below_threshold_times_one_minus_hysteresis(current, clv, expected):
    assert POLICY.decide(current, clv) == expected


@pytest.mark.parametrize(
    ("current", "clv", "expected"),
    [
        ("platinum", 374.99, "silver"),
        ("platinum", 74.99, "bronze"),
        ("gold", 50.0, "bronze"),
        ("platinum", -10.0, "bronze"),
    ],
)
def test_demotion_may_skip_tiers(current, clv, expected):
    assert POLICY.decide(current, clv) == expected


def test_demotion_lands_in_the_band_of_a_lower_tier():
    # Platinum falling to 120 is below the gold floor (375) but inside silver's band
    # (above 75) and above the silver threshold: silver, not bronze.
    assert POLICY.decide("platinum", 120.0) == "silver"
    # Falling into silver's hysteresis band from above still counts as silver.
    assert POLICY.decide("platinum", 80.0) == "silver"


def test_zero_hysteresis_demotes_as_soon_as_clv_is_below_the_threshold():
    policy = TierPolicy(silver=100.0, gold=500.0, platinum=2000.0, hysteresis=0.0)
    assert policy.decide("silver", 100.0) == "silver"
    assert policy.decide("silver", 99.99) == "bronze"


def test_overlapping_bands_keep_an_upper_tier_below_a_lower_threshold():
    # gold's floor (110 * 0.75 = 82.5) lies below the silver threshold (100): a gold
    # customer at 90 is below silver yet still inside gold's band, so stays gold.
    policy = TierPolicy(silver=100.0, gold=110.0, platinum=1000.0, hysteresis=0.25)
    assert policy.decide("gold", 90.0) == "gold"
    # Below gold's floor, but not below silver's (75): demoted to silver only.
    assert policy.decide("gold", 82.0) == "silver"
    assert policy.decide("gold", 74.0) == "bronze"


def test_default_policy_matches_its_documented_thresholds():
    policy = TierPolicy()
    assert policy.thresholds == (0.0, 100.0, 500.0, 2000.0)
    assert policy.decide("gold", 450.0) == "gold"
    assert policy.decide("gold", 449.0) == "silver"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"silver": 0.0},
        {"silver": -1.0},
        {"silver": 500.0},  # equal to gold
        {"silver": 600.0},  # above gold
        {"gold": 2000.0},  # equal to platinum
        {"gold": 3000.0},
        {"platinum": 400.0},
        {"silver": math.nan},
        {"platinum": math.nan},
        {"hysteresis": 1.0},
        {"hysteresis": 1.5},
        {"hysteresis": -0.01},
        {"hysteresis": math.nan},
    ],
)
def test_invalid_policies_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        TierPolicy(**kwargs)


def test_reason_names_the_threshold_and_the_floor():
    assert POLICY.reason("bronze", "gold", 600.0) == "clv 600.00 reached the gold threshold 500.00"
    assert POLICY.reason("gold", "silver", 300.0) == (
        "clv 300.00 fell below 375.00 (gold threshold 500.00 less 25% hysteresis)"
    )


# --- properties ---------------------------------------------------------------------------

_threshold = st.floats(min_value=0.01, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw, min_hysteresis: float = 0.0) -> TierPolicy:
    values = sorted(draw(st.lists(_threshold, min_size=3, max_size=3, unique=True)))
    hysteresis = draw(st.floats(min_value=min_hysteresis, max_value=0.99))
    return TierPolicy(silver=values[0], gold=values[1], platinum=values[2], hysteresis=hysteresis)


tiers = st.sampled_from(TIERS)
clvs = st.floats(min_value=-1e10, max_value=1e10, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), policy=policies(min_hysteresis=0.01), level=st.integers(1, 3))
def test_clv_oscillating_in_the_hysteresis_band_never_changes_the_tier(data, policy, level):
    threshold = policy.thresholds[level]
    ceiling = policy.thresholds[level + 1] if level < 3 else threshold * 10
    floor = threshold * (1.0 - policy.hysteresis)

    reached = data.draw(st.floats(min_value=threshold, max_value=ceiling, exclude_max=True))
    tier = policy.decide("bronze", reached)
    assert tier == TIERS[level]

    below = st.floats(min_value=floor, max_value=threshold, exclude_max=True)
    above = st.floats(min_value=threshold, max_value=ceiling, exclude_max=True)
    # Alternate just below and at/above the threshold, as a flapping CLV would.
    wiggle = data.draw(st.lists(st.tuples(below, above), min_size=1, max_size=20))
    for low, high in wiggle:
        for clv in (low, high):
            tier = policy.decide(tier, clv)
            assert tier == TIERS[level], (clv, floor, threshold)


@settings(max_examples=200, deadline=None)
@given(policy=policies(), current=tiers, clv=clvs)
def test_decide_is_idempotent(policy, current, clv):
    once = policy.decide(current, clv)
    assert policy.decide(once, clv) == once


@settings(max_examples=200, deadline=None)
@given(policy=policies(), current=tiers, clv=clvs)
def test_tier_changes_respect_thresholds_and_floors(policy, current, clv):
    decided = policy.decide(current, clv)
    old, new = TIERS.index(current), TIERS.index(decided)
    floor = 1.0 - policy.hysteresis
    # Never below a tier whose threshold the CLV has reached.
    for level, threshold in enumerate(policy.thresholds):
        if clv >= threshold:
            assert new >= level
    if new > old:
        # A promotion only to a threshold the CLV actually reached.
        assert clv >= policy.thresholds[new]
    elif new < old:
        # A demotion only once the CLV fell below the floor of the tier just above.
        assert clv < policy.thresholds[new + 1] * floor
        assert clv < policy.thresholds[old] * floor
    elif old > 0 and clv < policy.thresholds[old]:
        # Staying put below the threshold means the CLV is still within the band.
        assert clv >= policy.thresholds[old] * floor
