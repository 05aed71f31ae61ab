"""``crmstream evaluate recommendations`` on a small CSV: the documented JSON object."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from crmstream.streams.cli import main
from crmstream.streams.evaluation.recommendations import CANDIDATES, MODELS, basket_metrics


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


def _write_categorised_baskets(path: Path) -> None:
    """As ``_write_baskets``, with a category per item: staples ``daily``, the rest
    ``aisle<n>``; each customer also buys, every week, one item of 'their' aisle."""
    rng = random.Random(11)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["order", "cust", "when", "sku", "cat"])
        for week in range(12):
            for c in range(30):
                order = f"o{week}-{c}"
                when = f"2024-01-{1 + week * 2:02d}T{8 + c % 10}:00:00Z"
                aisle = c % 3
                lines = [
                    (f"staple{c % 5}", "daily"),
                    (f"a{aisle}-{rng.randrange(4)}", f"aisle{aisle}"),
                    (f"p{rng.randrange(20)}", "misc"),
                ]
                for sku, category in lines:
                    out.writerow([order, f"c{c}", when, sku, category])


def test_candidates_follow_the_five_models_and_co_weight_zero_is_online_no_co(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "baskets.csv"
    _write_categorised_baskets(data)
    args = [
        "evaluate",
        "recommendations",
        "--data",
        str(data),
        "--map",
        "customer_id=cust,item=sku,occurred_at=when,basket=order,category=cat",
        "--k",
        "3",
        "--json",
        "--with",
        ",".join(CANDIDATES),
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["models"]) == [*MODELS, *CANDIDATES]
    models = result["models"]
    for values in models.values():
        assert set(values) == {"hit_rate", "recall", "ndcg"}
        assert all(0.0 <= v <= 1.0 for v in values.values())
    # the customer's aisle is their second most bought category after "daily": popularity
    # within it finds an item of the aisle in most baskets
    assert models["category_popularity"]["hit_rate"] > models["popularity"]["hit_rate"]
    assert main([*args, "--co-weight", "0"]) == 0
    off = json.loads(capsys.readouterr().out)["models"]
    assert off["online"] == off["online_no_co"] == models["online_no_co"]
    assert off["popularity"] == models["popularity"]


def test_unknown_candidates_and_missing_categories_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "baskets.csv"
    _write_baskets(data)
    args = ["evaluate", "recommendations", "--data", str(data), "--json"]
    args += ["--map", "customer_id=cust,item=sku,occurred_at=when,basket=order"]
    assert main([*args, "--with", "online_no_co,nope"]) == 2
    assert capsys.readouterr().err.startswith("crmstream: --with: unknown candidate(s) nope;")
    assert main([*args, "--with", "category_popularity"]) == 2
    assert "needs items with a category" in capsys.readouterr().err
    assert main([*args, "--co-weight", "-1"]) == 2
    assert "--co-weight must be 0 or more" in capsys.readouterr().err
