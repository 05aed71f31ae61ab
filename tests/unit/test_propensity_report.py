"""Metrics, lift and calibration tables, and the written report of ``evaluate propensity``."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmstream.streams.evaluation.report import (
    binary_metrics,
    calibration_table,
    lift_by_decile,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TRUTH = [True, True, True, False, False, False, False, False]
SCORES = [0.9, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1, 0.05]


def test_perfect_scorer_has_auc_one_and_no_errors() -> None:
    metrics = binary_metrics(TRUTH, [0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1, 0.0])

    assert metrics["auc"] == 1.0
    assert metrics["accuracy"] == 1.0
    assert metrics["recall"] == 1.0
    assert metrics["precision"] == 1.0
    assert metrics["f1"] == 1.0
    assert metrics["positive_rate_predicted"] == 0.375
    assert set(metrics) == {
        "auc",
        "accuracy",
        "recall",
        "precision",
        "f1",
        "log_loss",
        "brier",
        "positive_rate_predicted",
    }


def test_inverted_scorer_has_auc_zero_and_finds_no_positive() -> None:
    metrics = binary_metrics(TRUTH, [0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 1.0])

    assert metrics["auc"] == 0.0
    assert metrics["accuracy"] == 0.0
    assert metrics["recall"] == 0.0
    assert metrics["precision"] == 0.0
    assert metrics["f1"] == 0.0
    assert metrics["positive_rate_predicted"] == 0.625


def test_certain_wrong_scores_have_clipped_log_loss_and_brier_one() -> None:
    metrics = binary_metrics([True, False], [0.0, 1.0])

    # -ln(1e-6) for each customer, not infinity
    assert metrics["log_loss"] == pytest.approx(13.8155, abs=1e-4)
    assert metrics["brier"] == 1.0


def test_threshold_moves_recall_and_accuracy() -> None:
    # At 0.5: predicted positive 0.9, 0.7, 0.6 -> TP 2, FP 1, FN 1 (0.3), TN 4.
    default = binary_metrics(TRUTH, SCORES)
    assert default["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert default["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert default["accuracy"] == 0.75
    assert default["positive_rate_predicted"] == 0.375

    # At 0.3 (inclusive): predicted positive 0.9, 0.7, 0.3, 0.6, 0.4 -> TP 3, FP 2, TN 3.
    low = binary_metrics(TRUTH, SCORES, threshold=0.3)
    assert low["recall"] == 1.0
    assert low["precision"] == 0.6
    assert low["accuracy"] == 0.75
    assert low["f1"] == 0.75
    assert low["positive_rate_predicted"] == 0.625

    # At 0.8: only 0.9 -> TP 1, FN 2, TN 5.
    high = binary_metrics(TRUTH, SCORES, threshold=0.8)
    assert high["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert high["precision"] == 1.0
    assert high["accuracy"] == 0.75

    # The AUC does not depend on the threshold: 13 of 15 pairs ordered correctly.
    assert default["auc"] == low["auc"] == high["auc"] == pytest.approx(13 / 15, abs=1e-4)


def test_single_class_is_rejected() -> None:
    with pytest.raises(ValueError, match="single class"):
        binary_metrics([True, True, True], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="single class"):
        binary_metrics([False, False], [0.2, 0.5])


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="same length"):
        binary_metrics([True, False, True], [0.2, 0.5])
    with pytest.raises(ValueError, match="same length"):
        lift_by_decile([True, False], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="same length"):
        calibration_table([True], [0.2, 0.5])


def test_scores_outside_zero_one_are_rejected() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        binary_metrics([True, False], [1.5, 0.2])


def test_lift_deciles_cover_every_customer() -> None:
    truth = [i % 3 == 0 for i in range(103)]
    scores = [(i * 37 % 101) / 100 for i in range(103)]

    table = lift_by_decile(truth, scores)

    assert [row["decile"] for row in table] == list(range(1, 11))
    assert sum(row["customers"] for row in table) == 103
    assert [row["customers"] for row in table] == [11, 11, 11] + [10] * 7
    mean_scores = [row["mean_score"] for row in table]
    assert mean_scores == sorted(mean_scores, reverse=True)


def test_top_decile_lift_on_a_constructed_case() -> None:
    # 100 customers, 10 positives. The 10 best scores hold 5 positives:
    # top rate 0.5, overall rate 0.1 -> lift 5.
    truth = [True] * 5 + [False] * 5 + [True] * 5 + [False] * 85
    scores = [0.9] * 10 + [0.5] * 5 + [0.1] * 85

    table = lift_by_decile(truth, scores)

    assert table[0] == {
        "decile": 1,
        "customers": 10,
        "positive_rate": 0.5,
        "lift": 5.0,
        "mean_score": 0.9,
    }
    # The second decile: 5 positives scored 0.5 and 5 negatives scored 0.1.
    assert table[1]["positive_rate"] == 0.5
    assert table[1]["lift"] == 5.0
    assert table[1]["mean_score"] == 0.3
    assert all(row["lift"] == 0.0 for row in table[2:])


def test_lift_breaks_ties_in_original_order() -> None:
    # All scores equal: the first ten customers (all positive) form the top decile.
    truth = [True] * 10 + [False] * 90
    table = lift_by_decile(truth, [0.5] * 100)

    assert table[0]["positive_rate"] == 1.0
    assert table[0]["lift"] == 10.0
    assert table[1]["positive_rate"] == 0.0


def test_lift_without_positives_is_rejected() -> None:
    with pytest.raises(ValueError, match="no positive"):
        lift_by_decile([False] * 20, [0.5] * 20)


def test_calibration_bins_on_a_hand_computed_case() -> None:
    truth = [False, True, False, True, True, False]
    scores = [0.05, 0.15, 0.3, 0.35, 0.9, 1.0]

    table = calibration_table(truth, scores, bins=4)

    assert table == [
        {
            "bin_low": 0.0,
            "bin_high": 0.25,
            "customers": 2,
            "mean_score": 0.1,
            "positive_rate": 0.5,
        },
        {
            "bin_low": 0.25,
            "bin_high": 0.5,
            "customers": 2,
            "mean_score": 0.325,
            "positive_rate": 0.5,
        },
        # 0.5 to 0.75 is empty and left out; a score of exactly 1 joins the last bin.
        {
            "bin_low": 0.75,
            "bin_high": 1.0,
            "customers": 2,
            "mean_score": 0.95,
            "positive_rate": 0.5,
        },
    ]


def test_calibration_edge_scores_fall_in_the_upper_bin() -> None:
    # 0.29 * 100 and 0.57 * 100 are just below 29 and 57 in binary floating point.
    table = calibration_table([True, False, True], [0.29, 0.57, 0.7], bins=100)

    assert [(row["bin_low"], row["bin_high"], row["customers"]) for row in table] == [
        (0.29, 0.3, 1),
        (0.57, 0.58, 1),
        (0.7, 0.71, 1),
    ]


def test_write_report_creates_figures_and_markdown(tmp_path: Path) -> None:
    truth = [i % 4 == 0 for i in range(200)]
    good = [0.8 if positive else 0.2 + (i % 7) / 20 for i, positive in enumerate(truth)]
    weak = [(i * 13 % 100) / 100 for i in range(200)]
    results = {"gradient boosting": (truth, good), "baseline": (truth, weak)}
    metrics = {name: binary_metrics(t, s) for name, (t, s) in results.items()}
    out_dir = tmp_path / "reports" / "propensity"

    path = write_report(
        out_dir,
        "Repeat purchase propensity",
        {"customers": 200, "positive rate": 0.25},
        results,
        metrics,
        notes=["Scores come from a held-out month.", "Baseline is unrelated to the outcome."],
    )

    assert path == out_dir / "report.md"
    for name in ("roc.png", "calibration.png", "lift.png"):
        assert (out_dir / name).read_bytes().startswith(PNG_SIGNATURE), name
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Repeat purchase propensity\n")
    assert "- **customers**: 200" in text
    assert "- **positive rate**: 0.25" in text
    for name, values in metrics.items():
        row = (
            f"| {name} | {values['auc']:.4f} | {values['accuracy']:.4f} | "
            f"{values['recall']:.4f} | {values['precision']:.4f} | {values['f1']:.4f} | "
            f"{values['log_loss']:.4f} | {values['brier']:.4f} |"
        )
        assert row in text
        assert f"## Lift by decile: {name}" in text
    assert text.index("| gradient boosting |") < text.index("| baseline |")
    assert "| model | auc | accuracy | recall | precision | f1 | log_loss | brier |" in text
    for link in ("(roc.png)", "(calibration.png)", "(lift.png)"):
        assert f"]{link}" in text
    assert "![ROC curves](roc.png)" in text
    assert "## Notes\n\nScores come from a held-out month.\n\nBaseline is unrelated" in text


def test_write_report_leaves_out_empty_notes(tmp_path: Path) -> None:
    truth = [True, False] * 10
    scores = [0.7, 0.4] * 10
    path = write_report(
        tmp_path,
        "Small",
        {},
        {"model": (truth, scores)},
        {"model": binary_metrics(truth, scores)},
    )

    text = path.read_text(encoding="utf-8")
    assert "## Notes" not in text
    assert "| model | 1.0000 | 1.0000 |" in text
