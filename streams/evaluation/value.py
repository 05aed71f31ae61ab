"""``crmstream evaluate value``: predicted customer value on real purchase history.

The CDNOW history (or a file in its format) is cut at a calibration end, as in
:mod:`crmstream.streams.evaluation.propensity`: every customer who bought by then is
scored at the next midnight (the cutoff) and the truth is the revenue they brought in the
``horizon_days`` days from it (0 for most). Four models predict that revenue:

* **online** -- :class:`~crmstream.models.value.ValueModel` with the online propensity
  model, fed every purchase of the calibration period once, in event-time order, as a
  worker is; asked at the cutoff (the worker asks at each purchase);
* **bgnbd_gamma_gamma** -- the classic BG/NBD model of repeat purchases times the
  Gamma-Gamma model of spend (Fader, Hardie and Lee), fitted with ``lifetimes`` on the
  calibration period (repeat purchases counted per day, as ``lifetimes`` does);
* **naive** -- the customer's revenue so far per day of their life, times the horizon;
* **gradient_boosting** -- scikit-learn's histogram gradient-boosted regression on the
  RFM features, trained without leakage on an earlier window: features at a training cut
  ``h_train`` days before the cutoff, target the revenue in the ``h_train`` days from it
  scaled to the horizon, ``h_train = min(horizon_days, days of history / 2)``.

Metrics per model: mean absolute and root mean squared error, Spearman's rank
correlation, top-decile capture (the share of the holdout revenue made by the 10% of
customers the model ranks highest) and the aggregate error (total predicted minus total
actual, over total actual).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmstream.models.propensity import PurchasePropensity, to_days
from crmstream.models.value import ValueModel
from crmstream.streams.evaluation import EvaluationError, fail
from crmstream.streams.evaluation.propensity import (
    purchase_features,
    split_purchases,
    training_days,
)
from crmstream.streams.tools.backfill import BackfillError, event_order, load_cdnow

#: The models of the comparison, in report order.
MODELS = ("online", "bgnbd_gamma_gamma", "naive", "gradient_boosting")
#: The metrics of each model, in report order.
METRICS = ("mae", "rmse", "spearman", "top_decile_capture", "aggregate_error")


@dataclass
class ValueEvaluation:
    """The outcome of :func:`evaluate_value`: the population, the truth, each model's
    predictions (in :data:`MODELS` order) and metrics."""

    calibration_end: date
    horizon_days: int
    customers: np.ndarray
    actual: np.ndarray
    predictions: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``--json``."""
        return {
            "customers": len(self.customers),
            "calibration_end": self.calibration_end.isoformat(),
            "horizon_days": self.horizon_days,
            "actual_revenue": round(float(self.actual.sum()), 2),
            "models": {name: dict(values) for name, values in self.metrics.items()},
        }


def top_decile_capture(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of the actual revenue made by the tenth of customers ranked highest
    (ties in the prediction broken by the population's order).

    Examples
    --------
    >>> top_decile_capture(np.array([0.0] * 9 + [10.0]), np.arange(10.0))
    1.0
    """
    total = float(actual.sum())
    if total <= 0:
        return 0.0
    top = max(1, math.ceil(len(actual) / 10))
    order = np.argsort(-predicted, kind="stable")[:top]
    return float(actual[order].sum()) / total


def value_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The metrics of :data:`METRICS` for one model, rounded to 4 decimals.

    Examples
    --------
    >>> m = value_metrics(np.array([0.0, 10.0, 30.0]), np.array([1.0, 12.0, 20.0]))
    >>> m["mae"], m["spearman"], m["aggregate_error"]
    (4.3333, 1.0, -0.175)
    """
    from scipy.stats import spearmanr

    error = predicted - actual
    total = float(actual.sum())
    rho = spearmanr(actual, predicted).statistic if np.ptp(predicted) > 0 else 0.0
    return {
        "mae": round(float(np.abs(error).mean()), 4),
        "rmse": round(float(np.sqrt((error**2).mean())), 4),
        "spearman": round(float(rho), 4),
        "top_decile_capture": round(top_decile_capture(actual, predicted), 4),
        "aggregate_error": round(float(error.sum()) / total, 4) if total > 0 else 0.0,
    }


# -- the models ---------------------------------------------------------------------------


def _online(calibration: pd.DataFrame, customers: np.ndarray, cutoff: pd.Timestamp, horizon: int):
    """Replay the calibration purchases through the online propensity and value models."""
    propensity = PurchasePropensity(horizon_days=horizon)
    value = ValueModel(horizon_days=horizon)
    ordered = event_order(calibration)
    for customer_id, at, amount in zip(
        ordered["customer_id"].astype(str).tolist(),
        ordered["occurred_at"].dt.to_pydatetime().tolist(),
        ordered["amount"].astype(float).tolist(),
        strict=True,
    ):
        propensity.learn_purchase(customer_id, at, amount)
        latest = propensity.snapshots[customer_id][-1]
        value.learn(latest.orders, latest.revenue, latest.first, latest.day)
    now = to_days(cutoff.to_pydatetime())
    propensity.advance(now)
    out = np.empty(len(customers))
    for i, customer in enumerate(customers):
        history = propensity.snapshots[str(customer)][-1].history
        p = propensity.predict_history(history, now, horizon)
        out[i] = value.predict(history.orders, history.revenue, history.first, now, p, horizon)
    return out


def _daily(frame: pd.DataFrame) -> pd.DataFrame:
    """Purchases summed per customer and day (``lifetimes`` counts repeat purchase days)."""
    day = frame["occurred_at"].dt.floor("D")
    return (
        frame.assign(day=day)
        .groupby(["customer_id", "day"], sort=True)["amount"]
        .sum()
        .reset_index()
    )


def _fitted(fitter: Any, *data: pd.Series) -> Any:
    """A ``lifetimes`` fitter fitted as published (no penalty), or, when that does not
    converge (small or unusual data), with the small L2 penalty its docs suggest."""
    from lifetimes.utils import ConvergenceError

    # lifetimes prints the optimiser's report when it gives up: keep standard output clean
    # (it carries the JSON of --json).
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return fitter(penalizer_coef=0.0).fit(*data)
        except ConvergenceError:
            return fitter(penalizer_coef=0.001).fit(*data)


def _bgnbd_gamma_gamma(
    calibration: pd.DataFrame, customers: np.ndarray, cutoff: pd.Timestamp, horizon: int
) -> np.ndarray:
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    daily = _daily(calibration)
    grouped = daily.groupby("customer_id", sort=True)
    first, last = grouped["day"].min(), grouped["day"].max()
    frequency = (grouped.size() - 1).astype(float)
    recency = ((last - first) / pd.Timedelta(days=1)).astype(float)
    age = ((cutoff - first) / pd.Timedelta(days=1)).astype(float)
    first_amount = grouped["amount"].first()
    repeat_mean = ((grouped["amount"].sum() - first_amount) / frequency).where(frequency > 0, 0.0)
    fit = (frequency > 0) & (repeat_mean > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgnbd = _fitted(BetaGeoFitter, frequency, recency, age)
        gamma_gamma = _fitted(GammaGammaFitter, frequency[fit], repeat_mean[fit])
        purchases = bgnbd.conditional_expected_number_of_purchases_up_to_time(
            horizon, frequency, recency, age
        )
        # Customers without a priced repeat purchase get the population's mean spend.
        priced = frequency.where(fit, 0.0)
        spend = gamma_gamma.conditional_expected_average_profit(priced, repeat_mean.where(fit, 1.0))
    predicted = (purchases * spend).reindex(customers)
    return predicted.to_numpy(dtype=float)


def _naive(features: pd.DataFrame, horizon: int) -> np.ndarray:
    return (features["monetary_total"] / features["age"].clip(lower=1.0) * horizon).to_numpy()


def _gradient_boosting(
    calibration: pd.DataFrame,
    features: pd.DataFrame,
    first: date,
    calibration_end: date,
    cutoff: pd.Timestamp,
    horizon: int,
) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingRegressor

    h_train = training_days(first, calibration_end, horizon)
    cut = cutoff - pd.Timedelta(days=h_train)
    train_x = purchase_features(calibration, cut)
    window = calibration[calibration["occurred_at"] >= cut]
    spent = window.groupby("customer_id")["amount"].sum()
    train_y = spent.reindex(train_x.index, fill_value=0.0) * (horizon / h_train)
    model = HistGradientBoostingRegressor(random_state=0)
    model.fit(np.log1p(train_x.to_numpy()), train_y.to_numpy())
    return np.clip(model.predict(np.log1p(features.to_numpy())), 0.0, None)


# -- the evaluation -----------------------------------------------------------------------


def evaluate_value(
    frame: pd.DataFrame, calibration_end: date, horizon_days: int
) -> ValueEvaluation:
    """Predict every calibration customer's revenue in the holdout with the four models.

    ``frame`` holds purchases with ``customer_id``, ``occurred_at`` and ``amount``, as
    for :func:`~crmstream.streams.evaluation.propensity.evaluate_propensity`; the split
    is checked the same way (:class:`EvaluationError` with the valid range).
    """
    split = split_purchases(frame, calibration_end, horizon_days)
    calibration, holdout, first, calibration_end, cutoff, holdout_end = split
    features = purchase_features(calibration, cutoff)
    customers = features.index.to_numpy()
    actual = (
        holdout.groupby("customer_id")["amount"].sum().reindex(customers, fill_value=0.0)
    ).to_numpy(dtype=float)
    if actual.sum() <= 0:
        raise EvaluationError(
            f"no customer of the calibration period spent anything from {cutoff.date()} to "
            f"{(holdout_end - pd.Timedelta(days=1)).date()}: choose another split"
        )
    predictions = {
        "online": _online(calibration, customers, cutoff, horizon_days),
        "bgnbd_gamma_gamma": _bgnbd_gamma_gamma(calibration, customers, cutoff, horizon_days),
        "naive": _naive(features, horizon_days),
        "gradient_boosting": _gradient_boosting(
            calibration, features, first, calibration_end, cutoff, horizon_days
        ),
    }
    metrics = {name: value_metrics(actual, p) for name, p in predictions.items()}
    return ValueEvaluation(calibration_end, horizon_days, customers, actual, predictions, metrics)


def render_markdown(evaluation: ValueEvaluation, title: str) -> str:
    """The comparison as a Markdown report."""
    lines = [
        f"# {title}",
        "",
        f"{len(evaluation.customers):,} customers; actual revenue in the holdout "
        f"{evaluation.actual.sum():,.2f}.",
        "",
        "| model | MAE | RMSE | Spearman | top-decile capture | aggregate error |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in evaluation.metrics.items():
        lines.append(
            f"| {name} | {m['mae']:.2f} | {m['rmse']:.2f} | {m['spearman']:.4f} | "
            f"{m['top_decile_capture']:.4f} | {m['aggregate_error']:+.4f} |"
        )
    lines.append("")
    lines.append(__doc__.split("\n\n", 1)[1])
    return "\n".join(lines)


def run(
    calibration_end: date,
    horizon_days: int,
    out: Path | None,
    as_json: bool,
    path: Path | None = None,
) -> int:
    """``crmstream evaluate value``: print a table (or one JSON object with ``as_json``)
    and write ``report.md`` to ``out`` unless it is None. Returns the exit status: 0, or 2
    after a one-line message on standard error."""
    try:
        frame, _ = load_cdnow(path)
        evaluation = evaluate_value(frame, calibration_end, horizon_days)
    except (BackfillError, EvaluationError) as exc:
        return fail(str(exc))
    except ImportError as exc:
        return fail(
            f"{exc}: the value evaluation needs the evaluation extra "
            "(pip install 'crmstream[evaluate]')"
        )
    title = (
        f"Predicted customer value on {'CDNOW' if path is None else Path(path).name}: "
        f"calibration end {calibration_end}, horizon {horizon_days} days"
    )
    if out is not None:
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "report.md").write_text(render_markdown(evaluation, title))
        except OSError as exc:
            return fail(f"cannot write the report to {out}: {exc}")
    if as_json:
        print(json.dumps(evaluation.to_json()))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for header in ("MAE", "RMSE", "Spearman", "top-decile capture", "aggregate error"):
        table.add_column(header, justify="right")
    for name, m in evaluation.metrics.items():
        table.add_row(
            name,
            f"{m['mae']:.2f}",
            f"{m['rmse']:.2f}",
            f"{m['spearman']:.4f}",
            f"{m['top_decile_capture']:.4f}",
            f"{m['aggregate_error']:+.4f}",
        )
    console = Console()
    console.print(table)
    if out is not None:
        console.print(f"report: {Path(out) / 'report.md'}")
    return 0
