"""A label the worker leaves out because it would teach nothing
(``PropensityModel.teaches``) is exactly one that settling would not learn from."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crmstream.models.propensity import HORIZON, PropensityModel, Snapshot


def learned(model: PropensityModel) -> tuple[int, int, int, int]:
    return (model.labels[True], model.labels[False], model.outcomes[True], model.outcomes[False])


@settings(max_examples=300, deadline=None)
@given(
    day=st.floats(0, 2000, allow_nan=False),
    gap=st.one_of(st.floats(0, 800, allow_nan=False), st.just(math.inf)),
    period=st.sampled_from([HORIZON, *range(12)]),
    horizon=st.sampled_from([30.0, 90.0, 365.0]),
    period_days=st.sampled_from([7.0, 30.0]),
)
@example(day=100.0, gap=90.0, period=HORIZON, horizon=90.0, period_days=30.0)  # boundaries
@example(day=100.0, gap=60.0, period=2, horizon=90.0, period_days=30.0)
@example(day=100.0, gap=59.0, period=2, horizon=90.0, period_days=30.0)
def test_teaches_is_whether_settling_learns(
    day: float, gap: float, period: int, horizon: float, period_days: float
) -> None:
    model = PropensityModel(horizon_days=horizon, period_days=period_days, max_periods=12)
    snapshot = Snapshot(4, day, 2, 40.0, day - 10.0, 0.0, 0.5)
    snapshots = [snapshot]
    if gap != math.inf:
        snapshots.append(Snapshot(9, day + gap, 3, 60.0, day - 10.0, 0.0, 0.6))
    if gap != math.inf:
        model.arrived(snapshot, day + gap)  # the next purchase: resolves a horizon it is in
    before = learned(model)
    model.settle(model.due_at(period, "c1", 4, day), snapshots, before=10)
    taught = learned(model) != before
    assert taught == model.teaches(period, gap)
    if period == HORIZON:  # resolved once: on the next purchase's arrival, or now
        assert model.outcomes[True] + model.outcomes[False] == 1
    else:  # a period teaches unless the customer had bought before it began
        assert taught == (gap >= period * period_days)


def test_a_weekly_buyer_teaches_only_its_first_period() -> None:
    model = PropensityModel(horizon_days=90, period_days=30, max_periods=12)
    assert [k for k in [*range(12), HORIZON] if model.teaches(k, 7.0)] == [0]
    assert [k for k in [*range(12), HORIZON] if model.teaches(k, math.inf)] == [*range(12), HORIZON]
