"""Metrics and the written report of ``crmstream evaluate propensity``.

A propensity model gives every customer a score between 0 and 1: its estimate of the
chance that the customer does the thing being predicted (buys again, churns, answers a
campaign). The report judges those scores on customers whose outcome is known, from
three angles:

* **Ranking** -- the ROC curve and its area (AUC): the chance that a randomly chosen
  positive customer is scored above a randomly chosen negative one. 0.5 is a coin toss,
  1.0 a perfect ordering.
* **Decisions at a threshold** -- accuracy, recall, precision and F1 when every customer
  scored at or above the threshold (0.5 unless stated) is treated as a predicted positive,
  plus the share of customers predicted positive.
* **Probabilities** -- log loss and the Brier score (lower is better) and the reliability
  diagram: customers grouped by score, mean score against the observed positive rate. A
  well-calibrated model lies on the diagonal; above it the model under-estimates, below it
  over-estimates.

The lift table answers the campaign question directly: sort customers from the highest
score down, cut them into ten equal groups (deciles), and compare each group's positive
rate with the overall rate. A top-decile lift of 3 means that contacting the best-scored
tenth of customers finds positives three times as often as contacting customers at random.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

__all__ = ["binary_metrics", "calibration_table", "lift_by_decile", "write_report"]

_EPSILON = 1e-6
_METRIC_COLUMNS = ("auc", "accuracy", "recall", "precision", "f1", "log_loss", "brier")
_FIGSIZE = (7.0, 5.0)
_DPI = 110


def _validated(y_true: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes as a 0/1 integer array and scores as floats, after checking both."""
    truth = np.asarray(y_true)
    values = np.asarray(scores, dtype=float)
    if truth.ndim != 1 or values.ndim != 1:
        raise ValueError("y_true and scores must be one-dimensional sequences")
    if len(truth) != len(values):
        raise ValueError(
            f"y_true and scores must have the same length, got {len(truth)} and {len(values)}"
        )
    if len(truth) == 0:
        raise ValueError("y_true and scores are empty")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError("y_true must hold booleans (or 0/1)")
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ValueError("scores must be finite numbers between 0 and 1")
    return truth.astype(int), values


def binary_metrics(
    y_true: Sequence[bool], scores: Sequence[float], threshold: float = 0.5
) -> dict[str, float]:
    """Ranking, threshold and probability metrics of one model's scores.

    Parameters
    ----------
    y_true : sequence of bool
        The observed outcome of each customer (True for a positive).
    scores : sequence of float
        The model's score of each customer, between 0 and 1.
    threshold : float, default 0.5
        A customer scored at or above ``threshold`` is a predicted positive.

    Returns
    -------
    dict of str to float
        ``auc``, ``accuracy``, ``recall``, ``precision``, ``f1`` (0 when undefined, e.g.
        no predicted positives), ``log_loss`` (scores clipped to [1e-6, 1 - 1e-6]),
        ``brier`` and ``positive_rate_predicted`` (the share of predicted positives), each
        rounded to 4 decimals.

    Raises
    ------
    ValueError
        If the lengths differ, the inputs are empty or invalid, or ``y_true`` holds a
        single class (the AUC is then undefined).

    Examples
    --------
    >>> m = binary_metrics([True, False, True, False], [0.9, 0.2, 0.4, 0.6])
    >>> m["auc"], m["accuracy"], m["recall"], m["precision"], m["positive_rate_predicted"]
    (0.75, 0.5, 0.5, 0.5, 0.5)
    >>> binary_metrics([True, False, True, False], [0.9, 0.2, 0.4, 0.6], threshold=0.3)["recall"]
    1.0
    """
    truth, values = _validated(y_true, scores)
    if len(np.unique(truth)) < 2:
        only = "positive" if truth[0] else "negative"
        raise ValueError(
            f"y_true holds a single class (every customer is {only}); "
            "AUC and the other metrics need both positives and negatives"
        )
    predicted = (values >= threshold).astype(int)
    clipped = np.clip(values, _EPSILON, 1 - _EPSILON)
    metrics = {
        "auc": roc_auc_score(truth, values),
        "accuracy": accuracy_score(truth, predicted),
        "recall": recall_score(truth, predicted, zero_division=0),
        "precision": precision_score(truth, predicted, zero_division=0),
        "f1": f1_score(truth, predicted, zero_division=0),
        "log_loss": log_loss(truth, clipped, labels=[0, 1]),
        "brier": brier_score_loss(truth, values),
        "positive_rate_predicted": predicted.mean(),
    }
    return {name: round(float(value), 4) for name, value in metrics.items()}


def lift_by_decile(y_true: Sequence[bool], scores: Sequence[float]) -> list[dict]:
    """Positive rate and lift of ten equal groups of customers, best scores first.

    Customers are sorted by score, highest first (equal scores keep their original
    order), and the sorted order is cut into ten groups whose sizes differ by at most one
    (the first groups take the extra customers, as :func:`numpy.array_split` does).

    Parameters
    ----------
    y_true : sequence of bool
        The observed outcome of each customer.
    scores : sequence of float
        The model's score of each customer, between 0 and 1.

    Returns
    -------
    list of dict
        One dict per decile, in order: ``decile`` (1 holds the highest scores),
        ``customers``, ``positive_rate``, ``lift`` (the positive rate divided by the
        overall positive rate) and ``mean_score``, rates rounded to 4 decimals. With
        fewer than ten customers the empty groups are left out.

    Raises
    ------
    ValueError
        If the lengths differ, the inputs are empty or invalid, or there is no positive
        customer (lift is then undefined).

    Examples
    --------
    >>> truth = [True] * 2 + [False] * 18
    >>> scores = [0.9, 0.8] + [0.1] * 18
    >>> table = lift_by_decile(truth, scores)
    >>> table[0]
    {'decile': 1, 'customers': 2, 'positive_rate': 1.0, 'lift': 10.0, 'mean_score': 0.85}
    >>> [row["lift"] for row in table[1:4]]
    [0.0, 0.0, 0.0]
    """
    truth, values = _validated(y_true, scores)
    overall = truth.mean()
    if overall == 0:
        raise ValueError("y_true holds no positive customer; lift is undefined")
    order = np.argsort(-values, kind="stable")
    rows = []
    for decile, group in enumerate(np.array_split(order, 10), start=1):
        if len(group) == 0:
            continue
        rate = truth[group].mean()
        rows.append(
            {
                "decile": decile,
                "customers": len(group),
                "positive_rate": round(float(rate), 4),
                "lift": round(float(rate / overall), 4),
                "mean_score": round(float(values[group].mean()), 4),
            }
        )
    return rows


def calibration_table(
    y_true: Sequence[bool], scores: Sequence[float], bins: int = 10
) -> list[dict]:
    """Mean score against observed positive rate in equal-width score bins.

    Bin ``i`` covers scores from ``i / bins`` (included) to ``(i + 1) / bins`` (excluded);
    the last bin also includes a score of exactly 1.

    Parameters
    ----------
    y_true : sequence of bool
        The observed outcome of each customer.
    scores : sequence of float
        The model's score of each customer, between 0 and 1.
    bins : int, default 10
        The number of equal-width bins on [0, 1].

    Returns
    -------
    list of dict
        One dict per non-empty bin, lowest scores first: ``bin_low``, ``bin_high``,
        ``customers``, ``mean_score`` and ``positive_rate``, rounded to 4 decimals.

    Raises
    ------
    ValueError
        If ``bins`` is below 1, the lengths differ or the inputs are empty or invalid.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    truth, values = _validated(y_true, scores)
    # Rounding first keeps scores that sit on an edge (0.3 with 10 bins) in the upper bin
    # despite binary floating point (0.57 * 100 is 56.99999999999999).
    index = np.minimum(np.floor(np.round(values * bins, 9)).astype(int), bins - 1)
    rows = []
    for position in range(bins):
        members = index == position
        count = int(members.sum())
        if count == 0:
            continue
        rows.append(
            {
                "bin_low": round(position / bins, 4),
                "bin_high": round((position + 1) / bins, 4),
                "customers": count,
                "mean_score": round(float(values[members].mean()), 4),
                "positive_rate": round(float(truth[members].mean()), 4),
            }
        )
    return rows


def _cell(value: object) -> str:
    """Text of one Markdown table cell."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines of a Markdown table."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows)
    return lines


@contextmanager
def _figure(path: Path) -> Iterator[Any]:
    """Axes of a new figure, saved to ``path`` and closed when the block ends.

    matplotlib's Agg backend is selected first, so no display is ever needed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=_FIGSIZE)
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path, dpi=_DPI)
    finally:
        plt.close(fig)


def write_report(
    out_dir: Path,
    title: str,
    summary: Mapping[str, object],
    results: Mapping[str, tuple[Sequence[bool], Sequence[float]]],
    metrics: Mapping[str, Mapping[str, float]],
    notes: Sequence[str] = (),
) -> Path:
    """Write the figures and the Markdown report of a propensity evaluation.

    ``out_dir`` (created if needed) receives ``roc.png`` (one ROC curve per model, AUC in
    the legend), ``calibration.png`` (the reliability diagram), ``lift.png`` (lift by
    decile, one bar per model) and ``report.md``, which shows the summary, the metrics
    table, the three figures, the notes and a lift-by-decile table for each model.

    Parameters
    ----------
    out_dir : Path
        The folder to write into; existing files of the same names are replaced.
    title : str
        The report's heading.
    summary : mapping of str to object
        Facts about the run (data set, sizes, threshold, ...), listed as bullets in order.
    results : mapping of str to (sequence of bool, sequence of float)
        For each model, in the order to show, the observed outcomes and its scores.
    metrics : mapping of str to mapping of str to float
        For each model, its metrics as returned by :func:`binary_metrics`; the table shows
        the rows in the order given and the columns ``auc``, ``accuracy``, ``recall``,
        ``precision``, ``f1``, ``log_loss`` and ``brier`` that are present.
    notes : sequence of str, optional
        Paragraphs for a "Notes" section, left out when empty.

    Returns
    -------
    Path
        The path of ``report.md``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lifts = {name: lift_by_decile(truth, scores) for name, (truth, scores) in results.items()}

    with _figure(out_dir / "roc.png") as ax:
        for name, (truth, scores) in results.items():
            truth_array, values = _validated(truth, scores)
            fpr, tpr, _ = roc_curve(truth_array, values)
            auc = roc_auc_score(truth_array, values)
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
        ax.set(
            xlabel="False positive rate",
            ylabel="True positive rate",
            title="ROC curves",
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
        )
        ax.legend(loc="lower right")

    with _figure(out_dir / "calibration.png") as ax:
        for name, (truth, scores) in results.items():
            table = calibration_table(truth, scores)
            ax.plot(
                [row["mean_score"] for row in table],
                [row["positive_rate"] for row in table],
                marker="o",
                label=name,
            )
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
        ax.set(
            xlabel="Mean score in bin",
            ylabel="Observed positive rate",
            title="Reliability diagram",
            xlim=(-0.02, 1.02),
            ylim=(-0.02, 1.02),
        )
        ax.legend(loc="upper left")

    with _figure(out_dir / "lift.png") as ax:
        width = 0.8 / max(len(lifts), 1)
        for position, (name, table) in enumerate(lifts.items()):
            offset = (position - (len(lifts) - 1) / 2) * width
            ax.bar(
                [row["decile"] + offset for row in table],
                [row["lift"] for row in table],
                width=width,
                label=name,
            )
        ax.axhline(1.0, linestyle="--", color="grey", label="random")
        ax.set(
            xlabel="Decile (1 = highest scores)",
            ylabel="Lift (positive rate / overall rate)",
            title="Lift by decile",
            xticks=range(1, 11),
        )
        ax.legend(loc="upper right")

    lines = [f"# {title}", ""]
    lines.extend(f"- **{key}**: {value}" for key, value in summary.items())
    if summary:
        lines.append("")
    columns = [c for c in _METRIC_COLUMNS if any(c in values for values in metrics.values())]
    if metrics:
        lines.append("## Metrics")
        lines.append("")
        lines.extend(
            _table(
                ["model", *columns],
                [[name, *(values.get(c, "") for c in columns)] for name, values in metrics.items()],
            )
        )
        lines.append("")
    lines.extend(
        [
            "## Figures",
            "",
            "![ROC curves](roc.png)",
            "",
            "![Reliability diagram](calibration.png)",
            "",
            "![Lift by decile](lift.png)",
            "",
        ]
    )
    if notes:
        lines.extend(["## Notes", ""])
        for note in notes:
            lines.extend([note, ""])
    for name, table in lifts.items():
        lines.extend([f"## Lift by decile: {name}", ""])
        lines.extend(
            _table(
                ["decile", "customers", "positive rate", "lift", "mean score"],
                [
                    [
                        row["decile"],
                        row["customers"],
                        row["positive_rate"],
                        row["lift"],
                        row["mean_score"],
                    ]
                    for row in table
                ],
            )
        )
        lines.append("")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
