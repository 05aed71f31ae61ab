"""`crmstream evaluate propensity` on the real CDNOW history with the default split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crmstream.streams.cli import main

pytestmark = pytest.mark.integration

MODELS = ("online", "recency", "logistic_regression", "gradient_boosting")


def test_default_split_on_cdnow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    status = main(["evaluate", "propensity", "--json", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - started

    captured = capsys.readouterr()
    assert status == 0, captured.err
    report = json.loads(captured.out)
    assert report["customers"] == 23570
    assert 0.29 <= report["positive_rate"] <= 0.31
    assert (report["calibration_end"], report["horizon_days"]) == ("1997-09-30", 273)
    assert list(report["models"]) == list(MODELS)
    for name, metrics in report["models"].items():
        assert metrics["auc"] > 0.7, (name, metrics)
    assert report["models"]["online"]["auc"] >= report["models"]["recency"]["auc"]
    for name in ("report.md", "roc.png", "calibration.png", "lift.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert elapsed < 40, f"took {elapsed:.1f} s"


def test_four_months_of_history_and_a_year_ahead_rank_at_least_as_well_as_batch() -> None:
    # The hardest split of the grid: only the first periods after a purchase have closed,
    # and the year ahead is scored from the hazard's curve beyond them.
    from datetime import date

    from crmstream.streams.evaluation.propensity import evaluate_propensity
    from crmstream.streams.tools.backfill import load_cdnow

    frame, _ = load_cdnow(None)
    evaluation = evaluate_propensity(frame, date(1997, 4, 30), 365)
    auc = {name: metrics["auc"] for name, metrics in evaluation.to_json()["models"].items()}
    assert auc["online"] >= auc["logistic_regression"], auc
