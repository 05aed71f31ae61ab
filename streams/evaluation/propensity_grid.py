"""``crmstream evaluate propensity --grid``: the online propensity on many splits at once.

One split says little about a model that learns from the stream: early in a history it has
seen few long silences, late it has seen many. The grid cuts the CDNOW history at every
month end from a first calibration end on (default 1997-04-30, four months of history) and
asks four horizons (90, 180, 273 and 365 days) at each, wherever the holdout still fits in
the data. Each cell compares the online model's AUC with the batch logistic regression of
:mod:`crmstream.streams.evaluation.propensity`, trained without leakage on an earlier
window exactly as in the single-split evaluation.

The online model is replayed once: the hazard it learns does not depend on the horizon,
and its state at a cutoff is the same whether the stream stops there or goes on (labels
are settled by event time, see :mod:`crmstream.models.propensity`), so it is paused at
each cutoff, asked for every horizon, and resumed. Its AUC in a cell equals that of
``crmstream evaluate propensity`` on the same split.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from crmstream.models.propensity import PurchasePropensity, to_days
from crmstream.streams.evaluation import EvaluationError, fail
from crmstream.streams.evaluation.propensity import (
    _baselines,
    _midnight,
    _utc,
    purchase_features,
    training_data,
    training_days,
    valid_calibration_ends,
)
from crmstream.streams.tools.backfill import event_order

#: The grid of the issue: month ends from this calibration end on, and these horizons.
GRID_START = date(1997, 4, 30)
GRID_HORIZONS = (90, 180, 273, 365)


@dataclass(frozen=True)
class GridCell:
    """One split of the grid: its population and each model's AUC."""

    calibration_end: date
    horizon_days: int
    customers: int
    positive_rate: float
    online_auc: float
    logistic_regression_auc: float

    @property
    def margin(self) -> float:
        """Online AUC minus the logistic regression's."""
        return self.online_auc - self.logistic_regression_auc

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration_end": self.calibration_end.isoformat(),
            "horizon_days": self.horizon_days,
            "customers": self.customers,
            "positive_rate": round(self.positive_rate, 4),
            "online_auc": round(self.online_auc, 4),
            "logistic_regression_auc": round(self.logistic_regression_auc, 4),
        }


def month_ends(start: date, stop: date) -> list[date]:
    """The last days of the months from ``start``'s to ``stop``, those not after ``stop``.

    Examples
    --------
    >>> month_ends(date(1997, 4, 30), date(1997, 7, 15))
    [datetime.date(1997, 4, 30), datetime.date(1997, 5, 31), datetime.date(1997, 6, 30)]
    """
    out = []
    year, month = start.year, start.month
    while True:
        end = date(year, month, calendar.monthrange(year, month)[1])
        if end > stop:
            return out
        out.append(end)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def grid_splits(
    first: date, last: date, start: date = GRID_START, horizons: Sequence[int] = GRID_HORIZONS
) -> list[tuple[date, int]]:
    """Every ``(calibration end, horizon)`` of the grid that fits purchases dated ``first``
    to ``last``, by calibration end then horizon.

    Examples
    --------
    >>> splits = grid_splits(date(1997, 1, 1), date(1998, 6, 30))
    >>> len(splits), splits[0], splits[-1]
    (30, (datetime.date(1997, 4, 30), 90), (datetime.date(1998, 3, 31), 90))
    """
    splits = []
    for horizon in horizons:
        earliest, latest = valid_calibration_ends(first, last, horizon)
        splits.extend((end, horizon) for end in month_ends(start, latest) if end >= earliest)
    return sorted(splits)


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, scores))


def evaluate_grid(
    frame: pd.DataFrame,
    start: date = GRID_START,
    horizons: Sequence[int] = GRID_HORIZONS,
    model: Callable[[], PurchasePropensity] = PurchasePropensity,
) -> list[GridCell]:
    """The online model and the batch logistic regression on every split of the grid.

    ``frame`` holds purchases as for
    :func:`~crmstream.streams.evaluation.propensity.evaluate_propensity`; ``model`` makes
    the online model to replay (its horizon is set per cell when scoring).
    """
    if frame.empty:
        raise EvaluationError("the data holds no purchases")
    frame = frame.assign(occurred_at=_utc(frame))
    first = frame["occurred_at"].min().date()
    last = frame["occurred_at"].max().date()
    splits = grid_splits(first, last, start, horizons)
    if not splits:
        raise EvaluationError(f"no split of the grid fits purchases from {first} to {last}")
    ordered = event_order(frame)
    times = ordered["occurred_at"]
    rows = list(
        zip(
            ordered["customer_id"].astype(str).tolist(),
            times.dt.to_pydatetime().tolist(),
            ordered["amount"].astype(float).tolist(),
            strict=True,
        )
    )
    online = model()
    fed = 0
    cells = []
    for calibration_end in sorted({end for end, _ in splits}):
        cutoff = _midnight(calibration_end + timedelta(days=1))
        stop = int(times.searchsorted(cutoff, side="left"))
        for customer_id, at, amount in rows[fed:stop]:
            online.learn_purchase(customer_id, at, amount)
        fed = stop
        online.advance(to_days(cutoff.to_pydatetime()))
        calibration = frame[frame["occurred_at"] < cutoff]
        features = purchase_features(calibration, cutoff)
        now = to_days(cutoff.to_pydatetime())
        histories = [online.snapshots[str(c)][-1].history for c in features.index]
        for horizon in (h for end, h in splits if end == calibration_end):
            holdout_end = cutoff + pd.Timedelta(days=horizon)
            window = (frame["occurred_at"] >= cutoff) & (frame["occurred_at"] < holdout_end)
            truth = features.index.isin(pd.Index(frame.loc[window, "customer_id"].unique()))
            scores = np.array([online.predict_history(h, now, horizon) for h in histories])
            h_train = training_days(first, calibration_end, horizon)
            train_x, train_y = training_data(
                calibration, cutoff - pd.Timedelta(days=h_train), cutoff
            )
            regression = _baselines()["logistic_regression"]
            regression.fit(train_x.to_numpy(), train_y.to_numpy())
            batch = regression.predict_proba(features.to_numpy())[:, 1]
            cells.append(
                GridCell(
                    calibration_end,
                    horizon,
                    len(truth),
                    float(truth.mean()),
                    _auc(truth, scores),
                    _auc(truth, batch),
                )
            )
    return cells


def render_grid(cells: Sequence[GridCell]) -> Any:
    """The grid as a table (a rich renderable): online and logistic regression AUC."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in ("calibration end", "horizon", "customers", "positive rate"):
        table.add_column(header, justify="right")
    for header in ("online AUC", "logistic regression AUC", "online − LR"):
        table.add_column(header, justify="right")
    for cell in cells:
        table.add_row(
            cell.calibration_end.isoformat(),
            str(cell.horizon_days),
            f"{cell.customers:,}",
            f"{cell.positive_rate:.3f}",
            f"{cell.online_auc:.4f}",
            f"{cell.logistic_regression_auc:.4f}",
            f"{cell.margin:+.4f}",
        )
    return table


def summary(cells: Sequence[GridCell]) -> dict[str, Any]:
    """How the online model fared over the grid."""
    margins = [c.margin for c in cells]
    worst = min(cells, key=lambda c: c.margin)
    return {
        "splits": len(cells),
        "online_at_least_lr": sum(m >= 0 for m in margins),
        "mean_margin": round(float(np.mean(margins)), 4),
        "worst_margin": round(worst.margin, 4),
        "worst_split": f"{worst.calibration_end.isoformat()}/{worst.horizon_days}",
    }


def timed_grid(frame: pd.DataFrame, **options: Any) -> tuple[list[GridCell], float]:
    """:func:`evaluate_grid` and its wall time in seconds."""
    began = time.perf_counter()
    cells = evaluate_grid(frame, **options)
    return cells, time.perf_counter() - began


def run_grid(as_json: bool, path: Any = None, start: date = GRID_START) -> int:
    """``crmstream evaluate propensity --grid``: print the grid as a table, or one JSON
    object ``{"splits": [...], "summary": {...}}`` with ``as_json``. Returns the exit
    status: 0, or 2 after a one-line message on standard error."""
    import json

    from rich.console import Console

    from crmstream.streams.tools.backfill import BackfillError, load_cdnow

    try:
        frame, _ = load_cdnow(path)
        cells, seconds = timed_grid(frame, start=start)
    except (BackfillError, EvaluationError) as exc:
        return fail(str(exc))
    if as_json:
        print(json.dumps({"splits": [c.to_json() for c in cells], "summary": summary(cells)}))
        return 0
    console = Console()
    console.print(render_grid(cells))
    facts = summary(cells)
    console.print(
        f"online >= logistic regression on {facts['online_at_least_lr']} of {facts['splits']} "
        f"splits; mean margin {facts['mean_margin']:+.4f}, worst {facts['worst_margin']:+.4f} "
        f"({facts['worst_split']}); {seconds:.0f} s"
    )
    return 0
