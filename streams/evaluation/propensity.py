"""``crmstream evaluate propensity``: the online purchase propensity on real purchase history.

The CDNOW purchase history (or any file in its format) is cut at a *calibration end*. Every
customer who bought at least once up to and including that day is scored at the next
midnight (the *cutoff*, UTC); a customer is a positive when they buy at least once in the
*holdout*, the ``horizon_days`` days from the cutoff. Four models score the same customers:

* **online** -- :class:`~crmstream.models.propensity.PurchasePropensity`, fed every
  purchase of the calibration period once, in event-time order, exactly as the stream
  workers would see them, then asked for each customer at the cutoff;
* **recency** -- a logistic regression on the days since the last purchase;
* **logistic_regression** -- a logistic regression on the log of all RFM features;
* **gradient_boosting** -- a histogram gradient-boosted tree classifier on the same
  features.

The three batch baselines cannot learn from the holdout and cannot learn a 273-day label
from 273 days of history either, so they are trained on an earlier window: features at a
*training cut* ``h_train`` days before the cutoff, labels "bought in the ``h_train`` days
from the training cut", with ``h_train = min(horizon_days, days of history / 2)``. Their
probabilities are then converted to the asked horizon (see :func:`convert_horizon`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from crmstream.models.propensity import METRICS_WINDOW, PurchasePropensity, to_days
from crmstream.streams.evaluation import EvaluationError, fail
from crmstream.streams.evaluation.report import binary_metrics, write_report
from crmstream.streams.tools.backfill import BackfillError, event_order, load_cdnow

__all__ = [
    "BASELINES",
    "FEATURES",
    "MIN_HISTORY_DAYS",
    "MODELS",
    "EvaluationError",
    "PropensityEvaluation",
    "convert_horizon",
    "evaluate_propensity",
    "purchase_features",
    "run",
    "training_data",
    "training_days",
    "valid_calibration_ends",
]

#: The calibration period must span at least this many days after the first purchase.
MIN_HISTORY_DAYS = 60

#: Defaults of the command: the split of the published CDNOW benchmarks (39 + 39 weeks).
DEFAULT_CALIBRATION_END = date(1997, 9, 30)
DEFAULT_HORIZON_DAYS = 273

#: Features of the batch baselines, in column order.
FEATURES = (
    "recency",
    "frequency",
    "monetary_total",
    "monetary_mean",
    "age",
    "mean_gap",
)

#: The batch baselines, in report order.
BASELINES = ("recency", "logistic_regression", "gradient_boosting")

#: Every model of the report, in order.
MODELS = ("online", *BASELINES)

#: Reference AUCs measured elsewhere on the default split.
REFERENCE_AUC = {"recency": 0.759, "BG/NBD": 0.763, "logistic regression": 0.769}

THRESHOLD = 0.5

_DAY = pd.Timedelta(days=1)

#: Wraps the purchases of the replay, e.g. in a progress bar; it gets a sized sequence and
#: a description and must yield the items unchanged and in order.
Progress = Callable[[Sequence[Any], str], Iterable[Any]]


@dataclass
class PropensityEvaluation:
    """The outcome of :func:`evaluate_propensity`.

    Attributes
    ----------
    calibration_end, horizon_days
        The split that was evaluated.
    customers
        The evaluation population (customer ids, sorted), the order of every array.
    truth
        Whether each customer bought in the holdout.
    scores
        Each model's score of each customer (probability of buying within the horizon),
        in :data:`MODELS` order.
    metrics
        Each model's :func:`~crmstream.streams.evaluation.report.binary_metrics`.
    summary
        Facts about the run for the report, in order.
    online_quality
        The online model's prequential quality at the cutoff
        (:meth:`~crmstream.models.propensity.PurchasePropensity.quality`).
    replay_seconds
        Wall time of feeding the calibration purchases to the online model.
    training_days
        ``h_train``: the label window of the batch baselines, in days.
    """

    calibration_end: date
    horizon_days: int
    customers: np.ndarray
    truth: np.ndarray
    scores: dict[str, np.ndarray]
    metrics: dict[str, dict[str, float]]
    summary: dict[str, object] = field(default_factory=dict)
    online_quality: dict[str, Any] = field(default_factory=dict)
    replay_seconds: float = 0.0
    training_days: int = 0

    @property
    def positive_rate(self) -> float:
        """The share of the population that bought in the holdout."""
        return float(self.truth.mean())

    @property
    def results(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{model: (truth, scores)}``, the input of the report's figures."""
        return {name: (self.truth, scores) for name, scores in self.scores.items()}

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``--json``."""
        return {
            "customers": len(self.customers),
            "positive_rate": round(self.positive_rate, 4),
            "calibration_end": self.calibration_end.isoformat(),
            "horizon_days": self.horizon_days,
            "models": {name: dict(values) for name, values in self.metrics.items()},
        }


# -- the split ----------------------------------------------------------------------------


def _utc(frame: pd.DataFrame) -> pd.Series:
    """``occurred_at`` as UTC timestamps (naive ones are taken as UTC)."""
    occurred = pd.to_datetime(frame["occurred_at"])
    if occurred.dt.tz is None:
        return occurred.dt.tz_localize("UTC")
    return occurred.dt.tz_convert("UTC")


def _midnight(day: date) -> pd.Timestamp:
    return pd.Timestamp(day.year, day.month, day.day, tz="UTC")


def valid_calibration_ends(first: date, last: date, horizon_days: int) -> tuple[date, date]:
    """The earliest and latest calibration end for purchases dated ``first`` to ``last``.

    The calibration period needs :data:`MIN_HISTORY_DAYS` days after the first purchase;
    the holdout, the ``horizon_days`` days after the calibration end, must end on the
    last purchase date at the latest. The earliest may come after the latest when the
    horizon is too long for the data.

    Examples
    --------
    >>> valid_calibration_ends(date(1997, 1, 1), date(1998, 6, 30), 273)
    (datetime.date(1997, 3, 2), datetime.date(1997, 9, 30))
    """
    return (
        first + timedelta(days=MIN_HISTORY_DAYS),
        last - timedelta(days=horizon_days),
    )


def _check_split(first: date, last: date, calibration_end: date, horizon_days: int) -> None:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days < 1:
        raise EvaluationError(
            f"horizon_days must be a whole number of days >= 1, got {horizon_days!r}"
        )
    earliest, latest = valid_calibration_ends(first, last, horizon_days)
    data = f"the purchases run from {first} to {last}"
    if latest < earliest:
        longest = (last - first).days - MIN_HISTORY_DAYS
        raise EvaluationError(
            f"a {horizon_days}-day horizon is too long for this data: {data}, the calibration "
            f"needs {MIN_HISTORY_DAYS} days of history, so horizon_days must be between 1 "
            f"and {longest}"
        )
    if not earliest <= calibration_end <= latest:
        raise EvaluationError(
            f"calibration end must be between {earliest} and {latest} for a "
            f"{horizon_days}-day horizon, got {calibration_end}: {data}; the calibration "
            f"needs {MIN_HISTORY_DAYS} days of history and the holdout must end by {last}"
        )


def training_days(first: date, calibration_end: date, horizon_days: int) -> int:
    """``h_train``: the label window of the batch baselines, in days.

    The asked horizon, or half of the history before the cutoff when that is shorter, so
    that the features of the training examples see as much history as their labels.

    Examples
    --------
    >>> training_days(date(1997, 1, 1), date(1997, 9, 30), 273)  # 273 days of history
    136
    >>> training_days(date(1997, 1, 1), date(1998, 3, 31), 90)
    90
    """
    history = (calibration_end + timedelta(days=1) - first).days
    return min(horizon_days, history // 2)


# -- the batch baselines ------------------------------------------------------------------


def purchase_features(frame: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """RFM features of every customer who bought before ``at``, from purchases before ``at``.

    Parameters
    ----------
    frame : DataFrame
        Purchases with ``customer_id``, ``occurred_at`` (UTC) and ``amount``.
    at : Timestamp
        The moment the features describe; purchases at or after it are ignored.

    Returns
    -------
    DataFrame
        Indexed by ``customer_id`` (sorted), columns :data:`FEATURES`: ``recency`` (days
        since the last purchase), ``frequency`` (purchases), ``monetary_total`` and
        ``monetary_mean`` (amount spent), ``age`` (days since the first purchase) and
        ``mean_gap`` (mean days between purchases, 0 for a single purchase).

    Examples
    --------
    >>> frame = pd.DataFrame({
    ...     "customer_id": ["a", "a", "b", "a"],
    ...     "occurred_at": pd.to_datetime(
    ...         ["2026-01-01", "2026-01-11", "2026-01-05", "2026-01-21"], utc=True),
    ...     "amount": [10.0, 30.0, 5.0, 99.0],
    ... })
    >>> purchase_features(frame, pd.Timestamp("2026-01-21", tz="UTC"))
    ... # doctest: +NORMALIZE_WHITESPACE
                 recency  frequency  monetary_total  monetary_mean   age  mean_gap
    customer_id
    a               10.0        2.0            40.0           20.0  20.0      10.0
    b               16.0        1.0             5.0            5.0  16.0       0.0
    """
    occurred = _utc(frame)
    before = frame.loc[occurred < at, ["customer_id", "amount"]].assign(
        occurred_at=occurred[occurred < at]
    )
    grouped = before.groupby("customer_id", sort=True)
    first = grouped["occurred_at"].min()
    last = grouped["occurred_at"].max()
    count = grouped.size().astype(float)
    total = grouped["amount"].sum().astype(float)
    span = (last - first) / _DAY
    features = pd.DataFrame(
        {
            "recency": (at - last) / _DAY,
            "frequency": count,
            "monetary_total": total,
            "monetary_mean": total / count,
            "age": (at - first) / _DAY,
            "mean_gap": (span / (count - 1)).where(count > 1, 0.0),
        }
    )
    return features.astype(float)


def training_data(
    frame: pd.DataFrame, training_cut: pd.Timestamp, cutoff: pd.Timestamp
) -> tuple[pd.DataFrame, pd.Series]:
    """Training examples of the batch baselines.

    Features at ``training_cut`` (from purchases before it) of every customer who bought
    before it; the label is whether the customer bought in ``[training_cut, cutoff)``.
    Nothing at or after ``cutoff`` is read.
    """
    occurred = _utc(frame)
    features = purchase_features(frame, training_cut)
    window = (occurred >= training_cut) & (occurred < cutoff)
    buyers = pd.Index(frame.loc[window, "customer_id"].unique())
    labels = pd.Series(features.index.isin(buyers), index=features.index, name="bought")
    return features, labels


def convert_horizon(p: np.ndarray, trained_days: int, horizon_days: int) -> np.ndarray:
    """Probabilities of buying within ``trained_days`` turned into ``horizon_days``.

    ``1 - (1 - p) ** (horizon_days / trained_days)``: the chance of buying at least once
    if the customer's daily chance stays what it was over the training window. The
    conversion is increasing in ``p``, so it keeps every model's ranking (and AUC).

    Examples
    --------
    >>> convert_horizon(np.array([0.0, 0.5, 1.0]), 90, 180).tolist()
    [0.0, 0.75, 1.0]
    """
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    if trained_days == horizon_days:
        return p
    return 1.0 - np.power(1.0 - p, horizon_days / trained_days)


def _baselines() -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return {
        "recency": LogisticRegression(random_state=0),
        "logistic_regression": make_pipeline(
            FunctionTransformer(np.log1p),
            StandardScaler(),
            LogisticRegression(max_iter=1000, random_state=0),
        ),
        "gradient_boosting": HistGradientBoostingClassifier(random_state=0),
    }


def _columns(name: str) -> list[str]:
    return ["recency"] if name == "recency" else list(FEATURES)


# -- the online model ---------------------------------------------------------------------


def _replay(
    calibration: pd.DataFrame,
    horizon_days: int,
    cutoff: pd.Timestamp,
    progress: Progress | None,
) -> tuple[PurchasePropensity, float]:
    """Feed the calibration purchases to a new online model in event-time order."""
    model = PurchasePropensity(horizon_days=horizon_days)
    ordered = event_order(calibration)
    rows = list(
        zip(
            ordered["customer_id"].astype(str).tolist(),
            ordered["occurred_at"].dt.to_pydatetime().tolist(),
            ordered["amount"].astype(float).tolist(),
            strict=True,
        )
    )
    start = time.perf_counter()
    for customer_id, at, amount in progress(rows, "replaying purchases") if progress else rows:
        model.learn_purchase(customer_id, at, amount)
    model.advance(to_days(cutoff.to_pydatetime()))
    return model, time.perf_counter() - start


# -- the evaluation -----------------------------------------------------------------------


class Split(NamedTuple):
    """Purchases split at the end of a calibration day (UTC): those before the cutoff and
    those in the holdout (``cutoff`` to ``holdout_end``); ``first`` is the first day of
    the data."""

    calibration: pd.DataFrame
    holdout: pd.DataFrame
    first: date
    calibration_end: date
    cutoff: pd.Timestamp
    holdout_end: pd.Timestamp


def split_purchases(
    frame: pd.DataFrame, calibration_end: date | datetime, horizon_days: int
) -> Split:
    """The purchases up to the end of ``calibration_end`` (UTC) and those in the
    ``horizon_days`` after it; :class:`EvaluationError` when there are none or the split
    does not fit the data (the message gives the valid range)."""
    if frame.empty:
        raise EvaluationError("the data holds no purchases")
    if isinstance(calibration_end, datetime):
        calibration_end = calibration_end.date()
    frame = frame.assign(occurred_at=_utc(frame))
    first = frame["occurred_at"].min().date()
    last = frame["occurred_at"].max().date()
    _check_split(first, last, calibration_end, horizon_days)
    cutoff = _midnight(calibration_end + timedelta(days=1))
    holdout_end = cutoff + pd.Timedelta(days=horizon_days)
    calibration = frame[frame["occurred_at"] < cutoff]
    holdout = frame[(frame["occurred_at"] >= cutoff) & (frame["occurred_at"] < holdout_end)]
    return Split(calibration, holdout, first, calibration_end, cutoff, holdout_end)


def evaluate_propensity(
    frame: pd.DataFrame,
    calibration_end: date,
    horizon_days: int,
    progress: Progress | None = None,
) -> PropensityEvaluation:
    """Score every customer of the calibration period with the four models.

    Parameters
    ----------
    frame : DataFrame
        Purchases with ``customer_id``, ``occurred_at`` (UTC; naive times are taken as
        UTC) and ``amount``, in source order (the order of purchases on the same day).
    calibration_end : date
        The last day of the calibration period; the models are asked at the next
        midnight (UTC), the cutoff.
    horizon_days : int
        The length of the holdout, from the cutoff: a customer is a positive when they
        buy in ``[cutoff, cutoff + horizon_days)``.
    progress : callable, optional
        Wraps the purchases replayed through the online model (a sized sequence and a
        description), e.g. in a progress bar; it must yield them unchanged and in order.

    Returns
    -------
    PropensityEvaluation

    Raises
    ------
    EvaluationError
        If the split does not fit the data (the message gives the valid range), or the
        population or the baselines' training examples hold a single class.
    """
    split = split_purchases(frame, calibration_end, horizon_days)
    calibration, holdout, first, calibration_end, cutoff, holdout_end = split
    features = purchase_features(calibration, cutoff)
    customers = features.index.to_numpy()
    truth = features.index.isin(pd.Index(holdout["customer_id"].unique()))
    if truth.all() or not truth.any():
        which = "bought" if truth.all() else "did not buy"
        raise EvaluationError(
            f"every one of the {len(truth)} customers {which} in the holdout "
            f"{cutoff.date()} to {(holdout_end - _DAY).date()}; the metrics need both "
            "outcomes: choose another calibration end or horizon"
        )

    model, replay_seconds = _replay(calibration, horizon_days, cutoff, progress)
    now = cutoff.to_pydatetime()
    online = np.array([model.predict_customer(str(c), now) for c in customers], dtype=float)
    scores: dict[str, np.ndarray] = {"online": online}

    h_train = training_days(first, calibration_end, horizon_days)
    training_cut = cutoff - pd.Timedelta(days=h_train)
    train_x, train_y = training_data(calibration, training_cut, cutoff)
    if train_y.nunique() < 2:
        raise EvaluationError(
            f"the baselines' training window ({training_cut.date()} to "
            f"{(cutoff - _DAY).date()}) holds a single outcome for its {len(train_y)} "
            "customers; choose a later calibration end"
        )
    for name, estimator in _baselines().items():
        columns = _columns(name)
        estimator.fit(train_x[columns].to_numpy(), train_y.to_numpy())
        p = estimator.predict_proba(features[columns].to_numpy())[:, 1]
        scores[name] = convert_horizon(p, h_train, horizon_days)

    metrics = {name: binary_metrics(truth, values, THRESHOLD) for name, values in scores.items()}
    quality = model.quality()
    summary = _summary(
        first=first,
        calibration_end=calibration_end,
        cutoff=cutoff,
        holdout_end=holdout_end,
        horizon_days=horizon_days,
        purchases=len(calibration),
        truth=truth,
        training_cut=training_cut,
        h_train=h_train,
        train_y=train_y,
        quality=quality,
        replay_seconds=replay_seconds,
    )
    return PropensityEvaluation(
        calibration_end=calibration_end,
        horizon_days=horizon_days,
        customers=customers,
        truth=truth,
        scores=scores,
        metrics=metrics,
        summary=summary,
        online_quality=quality,
        replay_seconds=replay_seconds,
        training_days=h_train,
    )


def _summary(
    *,
    first: date,
    calibration_end: date,
    cutoff: pd.Timestamp,
    holdout_end: pd.Timestamp,
    horizon_days: int,
    purchases: int,
    truth: np.ndarray,
    training_cut: pd.Timestamp,
    h_train: int,
    train_y: pd.Series,
    quality: Mapping[str, Any],
    replay_seconds: float,
) -> dict[str, object]:
    rate = purchases / replay_seconds if replay_seconds > 0 else math.inf
    auc = quality.get("rolling_auc")
    log_loss = quality.get("rolling_log_loss")
    resolved = int(quality.get("resolved") or 0)
    return {
        "customers": f"{len(truth):,} (every customer with a purchase in the calibration period)",
        "positive rate": f"{truth.mean():.4f} ({int(truth.sum()):,} customers bought in the "
        "holdout)",
        "calibration period": f"{first} to {calibration_end} ({purchases:,} purchases); "
        f"customers scored at {cutoff:%Y-%m-%d %H:%M} UTC",
        "holdout": f"{cutoff.date()} to {(holdout_end - _DAY).date()} ({horizon_days} days)",
        "baselines' training window": f"features from purchases before {training_cut.date()}, "
        f"label: a purchase from {training_cut.date()} to {(cutoff - _DAY).date()} "
        f"({h_train} days); {len(train_y):,} customers, positive rate {train_y.mean():.4f}",
        "online model, prequential": (
            f"rolling AUC {'-' if auc is None else f'{auc:.4f}'}, rolling log loss "
            f"{'-' if log_loss is None else f'{log_loss:.4f}'} over the last "
            f"{min(resolved, METRICS_WINDOW):,} of {resolved:,} resolved snapshots "
            f"({quality.get('resolved_positive', 0):,} of them positive); "
            f"{quality.get('labels_positive', 0):,} positive and "
            f"{quality.get('labels_negative', 0):,} negative period labels learned, each "
            f"predicted before it was learned: period AUC {_fmt(quality.get('period_auc'))}, "
            f"period log loss {_fmt(quality.get('period_log_loss'))} over the last "
            f"{METRICS_WINDOW:,}"
        ),
        "online replay": f"{purchases:,} purchases in {replay_seconds:.1f} s "
        f"({rate:,.0f} purchases/s)",
        "threshold": f"{THRESHOLD} (accuracy, recall, precision, F1)",
    }


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.4f}"


def report_notes(evaluation: PropensityEvaluation) -> list[str]:
    """The "Notes" paragraphs of the written report."""
    horizon, h_train = evaluation.horizon_days, evaluation.training_days
    references = ", ".join(f"{name} {auc:.3f}" for name, auc in REFERENCE_AUC.items())
    conversion = (
        f"The baselines are trained for a {h_train}-day horizon and their probabilities are "
        f"converted to the asked {horizon}-day horizon with p_H = 1 - (1 - p)^({horizon} / "
        f"{h_train}), the chance of at least one purchase if the customer's daily chance "
        "stays what it was in the training window. The conversion is increasing in p, so it "
        "leaves the ranking and the AUC unchanged; it only moves the probabilities, and with "
        "them the metrics at the threshold, the log loss and the reliability diagram."
        if h_train != horizon
        else f"The training window is as long as the asked horizon ({horizon} days), so the "
        "baselines' probabilities are used as they are."
    )
    return [
        '**The horizon trap.** The label "buys within the horizon" of a purchase is known '
        "only once the horizon has passed, unless the customer buys again sooner. A model "
        "that learns from that label alone has, when the history is as long as the horizon, "
        "resolved negatives only for the purchases of the first day but positives for every "
        "customer who came back: with a 273-day horizon and 273 days of calibration data it "
        "learns that nearly everybody buys, and a batch model cannot even build a labelled "
        "training set without looking into the holdout.",
        "**How the online model avoids it.** It learns a discrete-time hazard instead: for "
        "the snapshot of a customer taken at each purchase, the probability that the next "
        "purchase falls in each following 30-day period, given none before it. Each period "
        "is a delayed label that resolves within 30 days: 1 when the customer buys in it, 0 "
        "when the event-time clock passes its end without a purchase. Both outcomes of a "
        "period are learned when it closes, so positives and negatives reach the classifier "
        "at the same pace. The score for any horizon is one minus the probability of "
        "surviving every period it covers, 1 - prod(1 - h(x, t)), so a horizon longer than "
        "the history is no obstacle. The model saw each calibration purchase once, in "
        "event-time order (purchases of the same day in file order), with no batch "
        "retraining and nothing from the holdout; every customer was then scored at the "
        "cutoff.",
        "**The batch baselines** (recency, logistic regression, gradient boosting) are "
        "trained without leakage on an earlier window: features from the purchases before a "
        f"training cut {h_train} days before the cutoff, labels from the purchases in the "
        f"{h_train} days from the cut, for every customer who had bought before the cut "
        "(h_train = min(horizon, half the history before the cutoff), so that the training "
        "features see as much history as their labels). The fitted models are then applied "
        "to the same features computed at the cutoff. " + conversion + " At the cutoff some "
        "customers have been silent longer, or have been customers longer, than anyone "
        "at the training cut, so the baselines extrapolate for them; the reliability "
        "diagram shows where.",
        "**Prequential quality** of the online model is measured on the calibration stream "
        "itself: the horizon score made at each purchase, before the purchase teaches "
        "anything, is compared with the outcome once it is known. A snapshot resolves as a "
        "positive as soon as the customer buys again, but as a negative only when the full "
        "horizon has passed. With a horizon close to the length of the calibration period "
        "the only negatives resolved by the cutoff are snapshots of the first days of the "
        "stream, scored before the model had learned anything, so the rolling figures can "
        "be far from the holdout figures, even below 0.5, and say little about the model at "
        "the cutoff. They become meaningful once the stream runs well past the horizon; the "
        "holdout metrics above are the measure of this evaluation. The period labels have no "
        "such delay: each is predicted just before it is learned, and their rolling AUC and "
        "log loss describe the hazard the scores are built from from the first closed "
        "periods on (these are what `crmstream models` shows first for a running worker).",
        f"**Reference figures.** AUCs measured elsewhere on the default split (calibration "
        f"end 1997-09-30, 273-day horizon): {references}. They apply to that split only.",
    ]


# -- the command --------------------------------------------------------------------------


def render_table(evaluation: PropensityEvaluation, title: str) -> Any:
    """The readable metrics table (a rich renderable)."""
    from rich import box
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
        title=title,
        title_justify="left",
        caption=f"{len(evaluation.customers):,} customers, positive rate "
        f"{evaluation.positive_rate:.4f}; threshold {THRESHOLD}",
        caption_justify="left",
    )
    columns = {
        "auc": "AUC",
        "accuracy": "accuracy",
        "recall": "recall",
        "precision": "precision",
        "f1": "F1",
        "log_loss": "log loss",
        "brier": "Brier",
    }
    table.add_column("model", no_wrap=True)
    for header in columns.values():
        table.add_column(header, justify="right", no_wrap=True)
    for name, values in evaluation.metrics.items():
        table.add_row(name, *(f"{values[column]:.3f}" for column in columns))
    return table


def run(
    calibration_end: date,
    horizon_days: int,
    out: Path | None,
    as_json: bool,
    path: Path | None = None,
) -> int:
    """Evaluate on CDNOW (or ``path``, a file in the CDNOW format), write and print the report.

    The report (``report.md`` and three figures) goes to ``out`` unless it is None. With
    ``as_json`` standard output receives one JSON object and nothing else; otherwise a
    table, with a progress bar on standard error during the replay. Returns the exit
    status: 0, or 2 after a one-line message on standard error.
    """
    from rich.console import Console
    from rich.progress import track

    errors = Console(stderr=True)

    def progress(items: Sequence[Any], what: str) -> Iterable[Any]:
        return track(
            items,
            description=what,
            console=errors,
            transient=True,
            disable=not errors.is_terminal,
        )

    try:
        frame, cleaning = load_cdnow(path)
        evaluation = evaluate_propensity(
            frame, calibration_end, horizon_days, progress=None if as_json else progress
        )
    except (BackfillError, EvaluationError) as exc:
        return fail(str(exc))
    title = (
        f"Purchase propensity on {'CDNOW' if path is None else Path(path).name}: calibration "
        f"end {calibration_end}, horizon {horizon_days} days"
    )
    report = None
    if out is not None:
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in cleaning.dropped.items())
        source = "CDNOW_master.txt from the lifetimes distribution" if path is None else path
        summary = {
            "data": f"{source}: {cleaning.rows_read:,} rows, {cleaning.kept:,} purchases kept"
            + (f" (dropped: {dropped})" if dropped else ""),
            **evaluation.summary,
        }
        try:
            report = write_report(
                Path(out),
                title,
                summary,
                evaluation.results,
                evaluation.metrics,
                report_notes(evaluation),
            )
        except OSError as exc:
            return fail(f"cannot write the report to {out}: {exc.strerror or exc}")
    if as_json:
        print(json.dumps(evaluation.to_json()))
        return 0
    console = Console()
    console.print(render_table(evaluation, title))
    console.print(f"online replay: {evaluation.summary['online replay']}")
    if report is not None:
        console.print(f"report: {report}")
    return 0
