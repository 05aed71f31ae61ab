"""``crmstream rules backtest`` on a CDNOW slice and on a CSV export, and ``rules check``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crmstream.models.rules import load_rules
from crmstream.streams import cli
from crmstream.streams.evaluation.backtest import backtest, uplift
from crmstream.streams.settings import Settings
from crmstream.streams.tools.backfill import event_order, load_cdnow, to_purchases

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
SLICE = 4000


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_backtest_of_the_examples_on_a_cdnow_slice(capsys):
    code, out, err = run(
        capsys, "rules", "backtest", str(EXAMPLES), "--history", "cdnow", "--limit", str(SLICE),
        "--days", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["events"] == SLICE
    assert set(result["rules"]) == {
        "first-purchase-over-100",
        "tier-upgraded-gold-platinum",
        "vip-negative-chat",
        "gold-propensity-fell",
        "three-low-ratings-30d",
        "spend-halved-30d",
    }
    for rule in result["rules"].values():
        assert {"fires", "customers", "per_week"} <= set(rule)
        assert sum(rule["per_week"].values()) == rule["fires"]
        assert rule["customers"] <= rule["fires"]
    # purchases only: the chat and feedback rules never fire
    assert result["rules"]["vip-negative-chat"]["fires"] == 0
    assert result["rules"]["three-low-ratings-30d"]["fires"] == 0
    # first purchases over 100, counted independently of the fold
    frame = event_order(load_cdnow().frame).head(SLICE)
    firsts = frame.groupby("customer_id", sort=False).head(1)
    expected = int((firsts["amount"] > 100.0).sum())
    welcome = result["rules"]["first-purchase-over-100"]
    assert welcome["fires"] == welcome["customers"] == expected > 10
    assert welcome["uplift"]["days"] == 2
    assert welcome["uplift"]["treated"]["customers"] > welcome["uplift"]["holdout"]["customers"] > 0
    upgrades = result["rules"]["tier-upgraded-gold-platinum"]
    assert upgrades["fires"] > 0
    assert all(e["attributes"]["tier"] in ("gold", "platinum") for e in upgrades["examples"])


def test_backtest_text_report_names_every_rule(capsys):
    code, out, _ = run(
        capsys, "rules", "backtest", str(EXAMPLES), "--history", "cdnow", "--limit", "1500"
    )
    assert code == 0
    assert "1,500 purchases" in out
    for rule in load_rules(EXAMPLES.read_text()).rules:
        assert rule.id in out
    assert "treated vs holdout" in out


def test_backtest_of_a_csv_export_with_a_map(capsys, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "order,who,when,total\n"
        "o1,alice,2026-01-02,150\n"
        "o2,bob,2026-01-03,20\n"
        "o3,alice,2026-01-09,400\n"
        "o4,bob,2026-01-10,300\n"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - id: big\n    on: purchase\n    when: event.amount > 100.0\n"
        "    emit: {spent: '{{ event.amount }}'}\n"
    )
    code, out, err = run(
        capsys, "rules", "backtest", str(rules), "--history", str(path),
        "--map", "event_id=order,customer_id=who,occurred_at=when,amount=total", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    big = result["rules"]["big"]
    assert (result["events"], big["fires"], big["customers"]) == (4, 3, 2)
    assert big["per_week"] == {"2026-W01": 1, "2026-W02": 2}
    assert [e["event_id"] for e in big["examples"]] == ["o1", "o3", "o4"]


def test_backtest_refuses_an_invalid_rule_file_and_a_csv_without_map(capsys, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: r\n    on: purchase\n    when: event.amout > 1.0\n")
    code, _, err = run(capsys, "rules", "backtest", str(rules), "--history", "cdnow")
    assert code == 2 and "event has no field 'amout'" in err
    code, _, err = run(capsys, "rules", "backtest", str(EXAMPLES), "--history", "x.csv")
    assert code == 2 and "--map is required" in err


def test_rules_check(capsys, tmp_path):
    code, out, _ = run(capsys, "rules", "check", str(EXAMPLES), "--json")
    assert code == 0 and json.loads(out)["valid"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: r\n    on: purchase\n    when: event.amount >\n")
    code, out, _ = run(capsys, "rules", "check", str(bad), "--json")
    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    (problem,) = report["problems"]
    assert (problem["code"], problem["rule"], problem["field"], problem["line"]) == (
        "syntax",
        "r",
        "when",
        4,
    )


def test_uplift_interval_covers_the_difference_and_skips_unfinished_windows():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    first = {f"c{i}": (t, i % 2 == 1) for i in range(40)}
    first["late"] = (t + timedelta(days=50), False)  # its window ends after the data
    history = {f"c{i}": [(t + timedelta(days=2), 10.0 * (i % 4))] for i in range(40) if i % 3}
    result = uplift(first, history, timedelta(days=30), t + timedelta(days=60))
    assert result["treated"]["customers"] == result["holdout"]["customers"] == 20
    for metric in ("purchase_rate", "revenue_per_customer"):
        d = result[metric]
        assert d["ci_low"] < d["difference"] < d["ci_high"]


def test_backtest_function_returns_the_triggers_in_event_order():
    rules = load_rules("rules:\n  - {id: each, on: purchase, when: 'event.amount > 50.0'}\n")
    frame = event_order(load_cdnow().frame).head(500)
    settings = Settings()
    result = backtest(rules, to_purchases(frame, "cdnow"), settings.policies(),
                      settings.purchase_models())  # fmt: skip
    assert len(result.triggers) == int((frame["amount"] > 50.0).sum())
    times = [t.occurred_at for t in result.triggers]
    assert times == sorted(times)


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level("WARNING")
