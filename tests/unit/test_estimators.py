"""The custom River estimators follow River's estimator contract (river.checks.check_estimator)."""

from __future__ import annotations

import pytest
from river.checks import check_estimator

from crmstream.models.anomaly import FlatHalfSpaceTrees, PurchaseAnomaly
from crmstream.models.hashed_regression import HashedLogisticRegression
from crmstream.models.propensity import AveragedLogisticRegression, PeriodHazard
from crmstream.models.segments import CustomerSegments


@pytest.mark.parametrize(
    "estimator",
    [
        PeriodHazard(),
        AveragedLogisticRegression(),
        PurchaseAnomaly(),
        CustomerSegments(),
        HashedLogisticRegression(n_features=2**10),
    ],
    ids=lambda e: type(e).__name__,
)
def test_river_estimator_contract(estimator):
    check_estimator(estimator)


def test_learn_one_returns_nothing():
    assert PeriodHazard().learn_one({"orders": 2.0, "t": 3.0}, True) is None
    assert PurchaseAnomaly().learn_one({"amount": 0.3, "units": 0.1}) is None
    # River's checks of an anomaly detector download a data set: they cannot run here.
    assert FlatHalfSpaceTrees().learn_one({"amount": 0.3, "units": 0.1}) is None
    assert CustomerSegments().learn_one({"recency": 1.0, "frequency": 0.7}) is None
