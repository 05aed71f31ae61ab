"""``crmstream evaluate propensity`` on a synthetic purchase history with a known pattern."""

from __future__ import annotations

import json
import zlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmstream.streams.cli import main
from crmstream.streams.evaluation.propensity import (
    FEATURES,
    MODELS,
    EvaluationError,
    PropensityEvaluation,
    evaluate_propensity,
    purchase_features,
    run,
    training_data,
    training_days,
)

START = date(2024, 1, 1)
LAST_DAY = 359  # the synthetic history covers days 0 to 359 after START
CALIBRATION_END_DAY = 239  # the models are asked at the midnight starting day 240
HORIZON = 90  # holdout: days 240 to 329
CALIBRATION_END = START + timedelta(days=CALIBRATION_END_DAY)
CUTOFF_DAY = CALIBRATION_END_DAY + 1


def synthetic_history(seed: int = 7) -> dict[str, list[int]]:
    """Purchase days of each customer (offsets from START), with a known pattern.

    * 160 regular buyers start in the first 60 days and buy every 5 to 25 days; one in
      four stops for good on a random day between day 100 and day 300;
    * 160 one-time buyers buy once, on a random day before day 300;
    * one customer buys on the first and the last day, so the history spans days 0..359.
    """
    rng = np.random.default_rng(seed)
    history: dict[str, list[int]] = {}
    for n in range(160):
        day = int(rng.integers(0, 60))
        stop = int(rng.integers(100, 300)) if n % 4 == 0 else LAST_DAY
        days = []
        while day <= stop:
            days.append(day)
            day += int(rng.integers(5, 26))
        history[f"{n:05d}"] = days
    for n in range(160, 320):
        history[f"{n:05d}"] = [int(rng.integers(0, 300))]
    history["00999"] = [0, LAST_DAY]
    return history


def to_frame(history: dict[str, list[int]]) -> pd.DataFrame:
    """The history as a cleaned purchase frame (the columns of ``load_cdnow``).

    Each purchase's amount and quantity depend on its customer and day only, so adding a
    purchase changes no other row.
    """
    rows = [(customer, day) for customer, days in history.items() for day in days]
    keys = [zlib.crc32(f"{customer}:{day}".encode()) for customer, day in rows]
    frame = pd.DataFrame(
        {
            "customer_id": ["cdnow-" + customer for customer, _ in rows],
            "occurred_at": pd.to_datetime(
                [START + timedelta(days=day) for _, day in rows]
            ).tz_localize("UTC"),
            "amount": [5 + key % 7500 / 100 for key in keys],
            "quantity": [1 + key % 3 for key in keys],
        }
    )
    frame.insert(0, "event_id", "cdnow-" + frame.index.astype(str))
    return frame


def write_cdnow(history: dict[str, list[int]], path: Path) -> Path:
    """The history in the CDNOW file format: customer id, YYYYMMDD, quantity, amount."""
    frame = to_frame(history)
    lines = [" customer_id  date number_of_cds  dollar_value"]
    for row in frame.itertuples(index=False):
        lines.append(
            f" {row.customer_id.removeprefix('cdnow-')} {row.occurred_at:%Y%m%d} "
            f"{row.quantity} {row.amount:.2f}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def day(offset: int) -> pd.Timestamp:
    return pd.Timestamp(START + timedelta(days=offset), tz="UTC")


@pytest.fixture(scope="module")
def history() -> dict[str, list[int]]:
    return synthetic_history()


@pytest.fixture(scope="module")
def evaluation(history: dict[str, list[int]]) -> PropensityEvaluation:
    return evaluate_propensity(to_frame(history), CALIBRATION_END, HORIZON)


def test_population_and_truth_are_those_of_the_purchase_days(
    history: dict[str, list[int]], evaluation: PropensityEvaluation
) -> None:
    population = {c for c, days in history.items() if min(days) < CUTOFF_DAY}
    buyers = {
        c for c in population if any(CUTOFF_DAY <= d < CUTOFF_DAY + HORIZON for d in history[c])
    }

    assert {c.removeprefix("cdnow-") for c in evaluation.customers} == population
    truth = dict(zip(evaluation.customers, evaluation.truth, strict=True))
    assert {c.removeprefix("cdnow-") for c, bought in truth.items() if bought} == buyers
    assert evaluation.positive_rate == pytest.approx(len(buyers) / len(population))
    # the one-time buyers after the cutoff are out, the regular buyers who stopped are in
    assert 0 < len(population) < len(history)
    assert 0 < len(buyers) < len(population)


def test_every_model_scores_every_customer_and_online_and_logistic_regression_rank_well(
    evaluation: PropensityEvaluation,
) -> None:
    assert list(evaluation.scores) == list(MODELS)
    assert list(evaluation.metrics) == list(MODELS)
    for name, scores in evaluation.scores.items():
        assert scores.shape == evaluation.truth.shape, name
        assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all(), name
        assert {"auc", "accuracy", "recall", "f1"} <= set(evaluation.metrics[name])
    assert evaluation.metrics["online"]["auc"] > 0.75
    assert evaluation.metrics["logistic_regression"]["auc"] > 0.75
    # the online model learned from the stream: its prequential counters moved
    assert evaluation.online_quality["labels_positive"] > 0
    assert evaluation.online_quality["labels_negative"] > 0


def test_the_evaluation_is_deterministic(
    history: dict[str, list[int]], evaluation: PropensityEvaluation
) -> None:
    again = evaluate_propensity(to_frame(history), CALIBRATION_END, HORIZON)

    for name in MODELS:
        np.testing.assert_array_equal(again.scores[name], evaluation.scores[name])
    assert again.metrics == evaluation.metrics


def test_purchases_in_the_holdout_change_the_truth_but_no_score(
    history: dict[str, list[int]], evaluation: PropensityEvaluation
) -> None:
    changed = {customer: list(days) for customer, days in history.items()}
    once = [c for c, days in history.items() if len(days) == 1 and days[0] < CUTOFF_DAY]
    for customer in once[:20]:
        changed[customer].append(CUTOFF_DAY)  # at the cutoff itself: already the holdout
    for customer in once[20:40]:
        changed[customer].append(CUTOFF_DAY + 30)

    other = evaluate_propensity(to_frame(changed), CALIBRATION_END, HORIZON)

    np.testing.assert_array_equal(other.customers, evaluation.customers)
    assert other.truth.sum() == evaluation.truth.sum() + 40
    for name in MODELS:
        np.testing.assert_array_equal(other.scores[name], evaluation.scores[name], err_msg=name)


def test_training_examples_use_no_purchase_on_or_after_the_training_cut() -> None:
    cut, cutoff = day(50), day(80)
    frame = to_frame(
        {
            "a": [0, 10],  # bought only before the cut: label False
            "b": [0, 50, 60],  # on the cut and after it: features from day 0 alone
            "c": [50, 55],  # first purchase on the cut: not a training example
            "d": [20, 79, 80],  # day 80 is the cutoff: the label comes from day 79
            "e": [30, 80],  # bought again only at the cutoff: label False
        }
    )

    features, labels = training_data(frame, cut, cutoff)

    assert list(features.index) == ["cdnow-a", "cdnow-b", "cdnow-d", "cdnow-e"]
    assert labels.to_dict() == {
        "cdnow-a": False,
        "cdnow-b": True,
        "cdnow-d": True,
        "cdnow-e": False,
    }
    assert list(features.columns) == list(FEATURES)
    b = features.loc["cdnow-b"]
    assert (b["frequency"], b["recency"], b["age"], b["mean_gap"]) == (1.0, 50.0, 50.0, 0.0)
    amounts = frame.set_index("customer_id")["amount"]
    assert b["monetary_total"] == pytest.approx(amounts.loc["cdnow-b"].iloc[0])
    before = frame[frame["occurred_at"] < cut]
    pd.testing.assert_frame_equal(features, purchase_features(before, cut))


def test_the_baselines_train_on_the_horizon_or_half_the_history() -> None:
    assert training_days(START, CALIBRATION_END, HORIZON) == HORIZON  # 240 days of history
    assert training_days(START, CALIBRATION_END, 200) == 120
    assert training_days(date(1997, 1, 1), date(1997, 9, 30), 273) == 136


@pytest.mark.parametrize(
    ("end_day", "horizon", "expected"),
    [
        (59, HORIZON, "between 2024-03-01 and 2024-09-26"),  # 59 days of history
        (270, HORIZON, "between 2024-03-01 and 2024-09-26"),  # holdout past the last day
        (CALIBRATION_END_DAY, 121, "between 2024-03-01 and 2024-08-26"),
        (CALIBRATION_END_DAY, 300, "horizon_days must be between 1 and 299"),
        (CALIBRATION_END_DAY, 0, "horizon_days must be a whole number of days >= 1"),
    ],
)
def test_a_split_outside_the_data_is_refused_with_the_valid_range(
    history: dict[str, list[int]], end_day: int, horizon: int, expected: str
) -> None:
    with pytest.raises(EvaluationError, match=expected):
        evaluate_propensity(to_frame(history), START + timedelta(days=end_day), horizon)


@pytest.mark.parametrize(("end_day", "horizon"), [(60, HORIZON), (269, HORIZON), (358, 1)])
def test_splits_at_the_edges_of_the_valid_range_work(
    history: dict[str, list[int]], end_day: int, horizon: int
) -> None:
    result = evaluate_propensity(to_frame(history), START + timedelta(days=end_day), horizon)

    cutoff = end_day + 1
    buyers = [
        c
        for c, days in history.items()
        if min(days) < cutoff and any(cutoff <= d < cutoff + horizon for d in days)
    ]
    assert int(result.truth.sum()) == len(buyers)
    assert set(result.metrics) == set(MODELS)


def test_progress_wraps_the_replay_of_the_calibration_purchases(
    history: dict[str, list[int]],
) -> None:
    seen: list[tuple[int, str]] = []

    def progress(items, description):
        seen.append((len(items), description))
        return items

    evaluate_propensity(to_frame(history), CALIBRATION_END, HORIZON, progress=progress)

    purchases = sum(d < CUTOFF_DAY for days in history.values() for d in days)
    assert seen == [(purchases, "replaying purchases")]


def test_json_output_is_one_object_with_the_four_models(
    history: dict[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cdnow(history, tmp_path / "purchases.txt")
    out = tmp_path / "report"

    status = run(CALIBRATION_END, HORIZON, out, as_json=True, path=data)

    captured = capsys.readouterr()
    assert status == 0
    report = json.loads(captured.out)  # fails on anything but a single JSON value
    assert set(report) == {
        "customers",
        "positive_rate",
        "calibration_end",
        "horizon_days",
        "models",
    }
    population = sum(min(days) < CUTOFF_DAY for days in history.values())
    assert report["customers"] == population
    assert 0 < report["positive_rate"] < 1
    assert report["calibration_end"] == CALIBRATION_END.isoformat()
    assert report["horizon_days"] == HORIZON
    assert list(report["models"]) == list(MODELS)
    for metrics in report["models"].values():
        assert {"auc", "accuracy", "recall", "f1"} <= set(metrics)
        assert all(isinstance(value, float) for value in metrics.values())
    for name in ("report.md", "roc.png", "calibration.png", "lift.png"):
        assert (out / name).is_file(), name
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "horizon trap" in text and "1 - (1 - p)^(90 / 90)" not in text


def test_table_output_names_every_model_and_the_report(
    history: dict[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cdnow(history, tmp_path / "purchases.txt")

    end = START + timedelta(days=200)
    status = run(end, 150, tmp_path / "report", as_json=False, path=data)

    out = capsys.readouterr().out
    assert status == 0
    for name in MODELS:
        assert name in out
    assert str(tmp_path / "report" / "report.md") in out.replace("\n", "")
    report = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "p_H = 1 - (1 - p)^(150 / 100)" in report  # trained for 100 days, asked 150


def test_errors_are_one_line_on_stderr_and_exit_status_two(
    history: dict[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = run(CALIBRATION_END, HORIZON, None, as_json=True, path=tmp_path / "absent.txt")
    captured = capsys.readouterr()
    assert missing == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "absent.txt" in captured.err

    data = write_cdnow(history, tmp_path / "purchases.txt")
    too_late = run(START + timedelta(days=300), HORIZON, None, as_json=True, path=data)
    captured = capsys.readouterr()
    assert too_late == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "between 2024-03-01 and 2024-09-26" in captured.err


def test_cli_runs_a_split_from_a_data_file(
    history: dict[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cdnow(history, tmp_path / "purchases.txt")

    status = main(
        [
            "evaluate",
            "propensity",
            "--calibration-end",
            "2024-06-30",
            "--horizon-days",
            "60",
            "--json",
            "--out",
            str(tmp_path / "report"),
            "--data",
            str(data),
        ]
    )

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["calibration_end"], report["horizon_days"]) == ("2024-06-30", 60)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--calibration-end", "1997-13-01", "expected a date as YYYY-MM-DD"),
        ("--calibration-end", "30/09/1997", "expected a date as YYYY-MM-DD"),
        ("--horizon-days", "0", "expected a whole number of days >= 1"),
        ("--horizon-days", "ten", "expected a whole number of days >= 1"),
    ],
)
def test_cli_rejects_a_malformed_option(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "propensity", option, value])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_grid_prints_every_split_that_fits_with_both_aucs(
    history: dict[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_cdnow(history, tmp_path / "purchases.txt")

    status = main(
        [
            "evaluate",
            "propensity",
            "--grid",
            "--grid-start",
            "2024-05-31",
            "--json",
            "--data",
            str(data),
        ]
    )

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    # The history ends on 2024-12-25: 90-day holdouts fit calibration ends up to 09-26,
    # 180-day ones up to 06-28; 273 and 365 days leave no 60 days of history before them.
    assert [(s["calibration_end"], s["horizon_days"]) for s in report["splits"]] == [
        ("2024-05-31", 90),
        ("2024-05-31", 180),
        ("2024-06-30", 90),
        ("2024-07-31", 90),
        ("2024-08-31", 90),
    ]
    for split in report["splits"]:
        assert set(split) == {
            "calibration_end",
            "horizon_days",
            "customers",
            "positive_rate",
            "online_auc",
            "logistic_regression_auc",
        }
        assert 0.5 < split["online_auc"] <= 1 and 0.5 < split["logistic_regression_auc"] <= 1
    assert report["summary"]["splits"] == 5
    # The grid's online cell is the single-split evaluation's online AUC.
    single = evaluate_propensity(to_frame(history), date(2024, 6, 30), 90)
    [cell] = [s for s in report["splits"] if s["calibration_end"] == "2024-06-30"][:1]
    assert cell["online_auc"] == round(single.metrics["online"]["auc"], 4)
