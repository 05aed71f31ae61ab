"""Predicted customer value: the online model, the profile fields, rules, the evaluation."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from crmstream.models.alerts import AlertPolicy
from crmstream.models.events import Policies
from crmstream.models.money import Currencies
from crmstream.models.offline import OfflinePartition
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.rules import load_rules
from crmstream.models.tiers import TierPolicy
from crmstream.models.value import ValueModel, horizon_probability, predicted_clv
from crmstream.schemas import Purchase, Trigger
from crmstream.streams.cli import main
from crmstream.streams.evaluation.value import (
    METRICS,
    MODELS,
    top_decile_capture,
    value_metrics,
)
from tests.unit.test_propensity_eval import synthetic_history, write_cdnow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_model_learns_the_partitions_order_value_and_rhythm():
    model = ValueModel()
    for orders, revenue, day in [(1, 10.0, 0.0), (2, 30.0, 20.0), (3, 60.0, 40.0)]:
        model.learn(orders, revenue, first=0.0, day=day)
    assert model.purchases == 3 and model.repeats == 2
    assert model.mean_order == pytest.approx((10 + 15 + 20) / 3)
    assert model.mean_gap == pytest.approx(20.0)


def test_predictions_grow_with_propensity_rate_and_spend_and_vanish_without_a_purchase():
    model = ValueModel(horizon_days=365)
    for n in range(1, 50):
        model.learn(n, 20.0 * n, first=0.0, day=10.0 * n)
    base = model.predict(5, 100.0, first=0.0, now=100.0, p_buy=0.5)
    assert model.predict(5, 100.0, first=0.0, now=100.0, p_buy=0.0) == 0.0
    assert model.predict(5, 100.0, first=0.0, now=100.0, p_buy=0.9) > base
    assert model.predict(10, 200.0, first=0.0, now=100.0, p_buy=0.5) > base  # buys more often
    assert model.predict(5, 500.0, first=0.0, now=100.0, p_buy=0.5) > base  # spends more
    assert model.predict(0, 0.0, first=0.0, now=100.0, p_buy=0.5) == 0.0
    # A longer horizon never expects less.
    assert model.predict(5, 100.0, 0.0, 100.0, 0.5, horizon=730) > base


def test_one_big_order_is_shrunk_towards_the_partitions_mean():
    model = ValueModel()
    for _ in range(100):
        model.learn(1, 20.0, first=0.0, day=0.0)
    assert 20.0 < model.spend(1, 1000.0) < 1000.0
    assert model.spend(50, 50_000.0) > 0.9 * 1000.0  # fifty orders speak for themselves


def test_clv_takes_the_customers_cost_ratio_and_horizons_convert():
    assert predicted_clv(200.0, revenue=100.0, cost=25.0) == 150.0
    assert horizon_probability(0.0, 90, 365) == 0.0
    assert horizon_probability(0.3, 90, 365) > 0.3


def partition() -> OfflinePartition:
    models = PurchaseModels.create(value_horizon_days=180)
    return OfflinePartition(models, Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {})))


def test_every_purchase_sets_the_profile_fields_and_teaches_the_model():
    shop = partition()
    for n in range(30):
        shop.apply(
            Purchase(
                event_id=f"e{n}",
                customer_id=f"c{n % 3}",
                occurred_at=T0 + timedelta(days=7 * n),
                amount=40.0,
                cost=10.0,
            )
        )
    profile = shop.profiles["c0"]
    assert profile.predicted_revenue is not None and profile.predicted_revenue > 0
    assert profile.predicted_clv == pytest.approx(0.75 * profile.predicted_revenue, abs=0.02)
    value = shop.models.value_model()
    assert value.purchases == 30 and value.horizon_days == 180
    assert value.mean_gap == pytest.approx(21.0)


def test_models_checkpointed_before_the_value_model_get_one():
    models = PurchaseModels.create()
    old = pickle.loads(pickle.dumps(models))
    old.value = None
    assert old.value_model().horizon_days == 365


def test_rules_can_read_the_predicted_value():
    rules = load_rules(
        "rules:\n"
        "  - id: high-value-ahead\n"
        "    on: purchase\n"
        "    when: after.predicted_clv != null && after.predicted_clv > 50.0\n"
        "    emit:\n"
        '      clv: "{{ after.predicted_clv }}"\n'
    )
    shop = partition()
    shop.policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}), rules)
    triggers = []
    for n in range(12):
        outputs = shop.apply(
            Purchase(
                event_id=f"e{n}",
                customer_id="c1",
                occurred_at=T0 + timedelta(days=10 * n),
                amount=60.0,
            )
        )
        triggers.extend(o for o in outputs if isinstance(o, Trigger))
    assert triggers, "the rule never saw a predicted CLV above 50"
    assert triggers[-1].attributes["clv"] == shop.profiles["c1"].predicted_clv


def test_metrics_on_a_hand_made_set():
    actual = np.array([0.0, 0.0, 10.0, 0.0, 90.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    perfect = actual.copy()
    assert top_decile_capture(actual, perfect) == 0.9
    m = value_metrics(actual, perfect)
    assert (m["mae"], m["rmse"], m["aggregate_error"]) == (0.0, 0.0, 0.0)
    flat = value_metrics(actual, np.full(10, 10.0))
    assert flat["spearman"] == 0.0 and flat["aggregate_error"] == 0.0


def test_the_cli_prints_the_documented_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data = write_cdnow(synthetic_history(), tmp_path / "purchases.txt")
    status = main(
        [
            "evaluate",
            "value",
            "--calibration-end",
            "2024-08-27",
            "--horizon-days",
            "90",
            "--json",
            "--out",
            str(tmp_path / "report"),
            "--data",
            str(data),
        ]
    )
    assert status == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["customers"] == 290
    assert (report["calibration_end"], report["horizon_days"]) == ("2024-08-27", 90)
    assert list(report["models"]) == list(MODELS)
    for metrics in report["models"].values():
        assert list(metrics) == list(METRICS)
        assert all(isinstance(v, float) for v in metrics.values())
    online = report["models"]["online"]
    assert online["spearman"] > 0.5 and online["top_decile_capture"] > 0.1
    assert "bgnbd_gamma_gamma" in (tmp_path / "report" / "report.md").read_text()


def test_a_split_outside_the_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data = write_cdnow(synthetic_history(), tmp_path / "purchases.txt")
    assert main(["evaluate", "value", "--calibration-end", "2030-01-31", "--data", str(data)]) == 2
    assert "calibration end must be between" in capsys.readouterr().err


def next_order_error(model: ValueModel, orders: list[list[float]]) -> float:
    """Root mean squared error of each repeat order predicted from the customer's earlier
    ones, the partition's mean learned as the orders arrive (round robin)."""
    errors, seen = [], [0.0] * len(orders)
    for n in range(len(orders[0])):
        for c, amounts in enumerate(orders):
            if n:
                errors.append(model.spend(n, seen[c]) - amounts[n])
            seen[c] += amounts[n]
            model.learn(n + 1, seen[c], first=0.0, day=10.0 * n)
    return float(np.sqrt(np.mean(np.square(errors))))


def test_the_default_spend_shrinkage_predicts_the_next_order_better_than_heavier_or_none():
    # Customers differ in what they spend, and each order varies around their own mean
    # about as much as the means vary between customers, as on CDNOW.
    rng = np.random.default_rng(0)
    means = rng.gamma(2.0, 15.0, size=400)
    orders = [list(rng.gamma(2.0, mean / 2.0, size=6)) for mean in means]
    default = next_order_error(ValueModel(), orders)
    assert default < next_order_error(ValueModel(prior_orders=4.0), orders)
    assert default < next_order_error(ValueModel(prior_orders=0.0), orders)
