"""``crmstream evaluate recommendations`` on a small CSV: the documented JSON object."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from crmstream.streams.cli import main
from crmstream.streams.evaluation.recommendations import MODELS, basket_metrics


def _write_baskets(path: Path) -> None:
    """30 customers, each with 12 weekly baskets: a staple of their own every time, and
    a random pair of a small catalogue."""
    rng = random.Random(7)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["order", "cust", "when", "sku"])
        for week in range(12):
            for c in range(30):
                order = f"o{week}-{c}"
                when = f"2024-01-{1 + week * 2:02d}T{8 + c % 10}:00:00Z"
                staple = f"staple{c % 5}"
                for sku in (staple, f"p{rng.randrange(20)}", f"p{rng.randrange(20)}"):
                    out.writerow([order, f"c{c}", when, sku])


def test_json_is_the_documented_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "baskets.csv"
    _write_baskets(data)
    code = main(
        [
            "evaluate",
            "recommendations",
            "--data",
            str(data),
            "--map",
            "customer_id=cust,item=sku,occurred_at=when,basket=order",
            "--k",
            "5",
            "--json",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"customers", "baskets", "k", "models"}
    assert result["k"] == 5 and result["customers"] == 30
    assert result["baskets"] == 30 * 4  # weeks 8..11 lie in the last 30% of the span
    assert list(result["models"]) == list(MODELS)
    for values in result["models"].values():
        assert set(values) == {"hit_rate", "recall", "ndcg"}
        assert all(0.0 <= v <= 1.0 for v in values.values())
    # every customer buys their staple every week: repeating it hits every basket
    assert result["models"]["online"]["hit_rate"] == 1.0
    assert result["models"]["repeat"]["hit_rate"] == 1.0
    assert (tmp_path / "report" / "report.md").read_text().count("| online |") == 2
    assert (tmp_path / "report" / "history.png").stat().st_size > 0


def test_a_wrong_map_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "baskets.csv"
    _write_baskets(data)
    args = ["evaluate", "recommendations", "--data", str(data), "--json", "--map"]
    assert main([*args, "customer_id=cust,item=sku"]) == 2
    assert capsys.readouterr().err == "crmstream: --map: occurred_at required\n"
    assert main([*args, "customer_id=cust,item=nope,occurred_at=when"]) == 2
    assert "no column(s) nope" in capsys.readouterr().err


def test_basket_metrics() -> None:
    assert basket_metrics(["a", "b"], ["x"], 2) == (0.0, 0.0, 0.0)
    assert basket_metrics(["x", "b"], ["x"], 2) == (1.0, 1.0, 1.0)
