"""Backfill of basket lines: CSV item columns and The Complete Journey as purchases with items."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crmstream.streams.datasets.completejourney import load_lines
from crmstream.streams.tools.backfill import BackfillError, load_history, to_basket_purchases

LINES = """order,cust,when,sku,cat,qty,price
o1,ana,2024-01-02T10:00:00Z,milk,dairy,2,1.25
o1,ana,2024-01-02T10:00:00Z,eggs,,1,3.00
o2,bo,2024-01-01T09:00:00Z,milk,dairy,1,1.25
o3,ana,2024-01-05T10:00:00Z,tea,drinks,0,2.00
o4,bad id!,2024-01-05T10:00:00Z,tea,drinks,1,2.00
"""


def test_csv_lines_of_one_basket_become_one_purchase_with_items(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text(LINES)
    mapping = (
        "customer_id=cust,occurred_at=when,item=sku,basket=order,category=cat,quantity=qty,"
        "price=price"
    )
    frame, report = load_history(str(path), mapping)
    assert report.rows_read == 5
    assert report.dropped == {"negative": 1, "bad customer id": 1}
    first, second = to_basket_purchases(frame, "csv")
    assert (first.customer_id, first.order_id, first.amount) == ("bo", "o2", 1.25)
    assert (second.customer_id, second.amount) == ("ana", 5.5)
    assert [(x.sku, x.quantity, x.unit_price, x.category) for x in second.items] == [
        ("milk", 2, 1.25, "dairy"),
        ("eggs", 1, 3.0, None),
    ]
    again = list(to_basket_purchases(frame, "csv"))
    assert [p.event_id for p in again] == [first.event_id, second.event_id]  # stable ids


def test_without_a_basket_column_a_customer_and_time_is_one_basket(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text(LINES)
    frame, _ = load_history(str(path), "customer_id=cust,occurred_at=when,item=sku")
    purchases = list(to_basket_purchases(frame, "csv"))
    assert [len(p.items or ()) for p in purchases] == [1, 2, 1]


def test_item_fields_need_item(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_text(LINES)
    with pytest.raises(BackfillError, match="need item=COLUMN"):
        load_history(str(path), "customer_id=cust,occurred_at=when,amount=price,basket=order")


def test_complete_journey_baskets_carry_their_lines_and_discounts_as_cost() -> None:
    lines = load_lines(households=2)
    assert set(lines["customer_id"]) == {"cj-1", "cj-2"}
    purchases = list(to_basket_purchases(lines, "completejourney"))
    assert len(purchases) == lines["basket"].nunique()
    assert sum(len(p.items or ()) for p in purchases) == len(lines)
    assert round(sum(p.amount for p in purchases), 2) == round(lines["amount"].sum(), 2)
    assert round(sum(p.cost or 0.0 for p in purchases), 2) == round(lines["discount"].sum(), 2)
    times = [p.occurred_at for p in purchases]
    assert times == sorted(times)
    assert all(x.sku.startswith("cj-") and x.quantity >= 1 for p in purchases for x in p.items)


def test_instacart_orders_keep_each_customers_order_and_end_on_one_day() -> None:
    from crmstream.streams.datasets import instacart

    lines = instacart.load_lines(customers=3)
    assert lines["customer_id"].nunique() == 3
    raw = pd.read_csv(instacart.data_file())
    first = raw[raw["user_id"].isin(sorted(raw["user_id"].unique())[:3])]
    assert len(lines) == len(first) and lines["basket"].nunique() == first["order_id"].nunique()
    # a customer's orders come in order_number order, one time per order
    number = dict(zip("ic-" + first["order_id"].astype(str), first["order_number"], strict=True))
    for _, mine in lines.groupby("customer_id"):
        orders = mine.drop_duplicates("basket")
        assert orders["basket"].map(number).is_monotonic_increasing
        assert orders["occurred_at"].is_monotonic_increasing and orders["occurred_at"].is_unique
        assert orders["occurred_at"].iloc[-1].normalize() == instacart.LAST_DAY
    purchases = list(to_basket_purchases(lines, "instacart"))
    assert len(purchases) == lines["basket"].nunique()
    assert sum(len(p.items or ()) for p in purchases) == len(lines)


def test_instacart_backfill_reads_every_line_and_takes_no_map() -> None:
    loaded = load_history("instacart")
    assert loaded.report.rows_read == len(loaded.frame) == 150_000
    assert loaded.frame["customer_id"].nunique() == 593
    with pytest.raises(BackfillError, match="--map is for CSV files"):
        load_history("instacart", "customer_id=a")
