"""Decoding purchases: valid records, each rejection code, and Hypothesis round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmstream.schemas.codec import MAX_PAYLOAD_BYTES, InvalidEvent, decode, encode
from crmstream.schemas.inputs import MAX_MONEY, Item, Purchase
from tests.strategies import json_values

VALID: dict[str, Any] = {
    "event_id": "e1",
    "customer_id": "c1",
    "occurred_at": "2026-01-02T03:04:05Z",
    "amount": 12.5,
}


def payload(**changes: Any) -> bytes:
    """A purchase as JSON bytes; a change to ``...`` removes that field."""
    record = {**VALID, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def rejection(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode(raw, Purchase)
    return caught.value


# --- valid purchases ----------------------------------------------------------------------


def test_decode_minimal_purchase_fills_defaults():
    got = decode(payload(), Purchase)
    assert got == Purchase(
        event_id="e1",
        customer_id="c1",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        amount=12.5,
    )
    assert (got.currency, got.cost, got.order_id, got.items, got.schema_version) == (
        "USD",
        None,
        None,
        None,
        1,
    )


def test_decode_full_purchase_with_items_cost_and_order_id():
    raw = payload(
        occurred_at="2026-01-02T03:04:05.250+05:30",
        amount=99.0,
        currency="EUR",
        cost=40.25,
        order_id="o-17",
        items=[
            {"sku": "shoe", "quantity": 2, "unit_price": 45.0, "category": "footwear"},
            {"sku": "lace"},
        ],
        schema_version=1,
    )
    got = decode(raw, Purchase)
    assert got.occurred_at == datetime(
        2026, 1, 2, 3, 4, 5, 250_000, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    assert got.occurred_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert (got.amount, got.currency, got.cost, got.order_id) == (99.0, "EUR", 40.25, "o-17")
    assert got.items == [
        Item(sku="shoe", quantity=2, unit_price=45.0, category="footwear"),
        Item(sku="lace", quantity=1, unit_price=0.0, category=None),
    ]


def test_unknown_fields_are_ignored():
    assert decode(payload(coupon="X1"), Purchase) == decode(payload(), Purchase)


@pytest.mark.parametrize(
    "customer_id", ["a", "A-z_0.9", "x" * 64, "123", "customer.with-dots_and_underscores"]
)
def test_accepts_customer_ids_from_the_safe_alphabet(customer_id):
    assert decode(payload(customer_id=customer_id), Purchase).customer_id == customer_id


def test_money_at_the_limit_is_accepted():
    got = decode(payload(amount=MAX_MONEY, cost=MAX_MONEY), Purchase)
    assert (got.amount, got.cost) == (1e9, 1e9)


# --- too_large ----------------------------------------------------------------------------


def test_payload_of_exactly_the_limit_is_accepted():
    raw = payload()
    raw += b" " * (MAX_PAYLOAD_BYTES - len(raw))  # trailing whitespace is valid JSON
    assert len(raw) == 64 * 1024
    assert decode(raw, Purchase).event_id == "e1"


def test_payload_over_64_kib_is_too_large():
    raw = payload()
    raw += b" " * (64 * 1024 + 1 - len(raw))
    error = rejection(raw)
    assert (error.code, error.path) == ("too_large", "$")


def test_size_is_checked_before_parsing():
    assert rejection(b"\xff" * (100 * 1024)).code == "too_large"


# --- invalid_utf8 / invalid_json ----------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"\xff",  # never valid in UTF-8
        b"\xc0\xaf",  # overlong encoding of "/"
        b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
        b"\xe2\x82",  # truncated sequence
    ],
)
def test_invalid_utf8_inside_a_string(bad):
    raw = payload(event_id="PLACEHOLDER").replace(b"PLACEHOLDER", bad)
    error = rejection(raw)
    assert (error.code, error.path) == ("invalid_utf8", "$")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"{'event_id': 'e1'}",
        payload() + b"x",  # trailing garbage
        payload().replace(b"12.5", b"NaN"),
        payload(event_id="\\ud800").replace(b"\\\\ud800", b"\\ud800"),  # lone surrogate
    ],
)
def test_malformed_json_is_invalid_json(raw):
    error = rejection(raw)
    assert (error.code, error.path) == ("invalid_json", "$")


def test_deeply_nested_json_under_the_size_limit_is_rejected_not_crashing():
    # 30 KB of nesting inside an ignored field: under the size limit, so it is parsed.
    depth = 5000
    raw = b'{"extra":' + b'{"a":' * depth + b"1" + b"}" * depth + b"," + payload()[1:]
    assert len(raw) < MAX_PAYLOAD_BYTES
    assert rejection(raw).code == "too_deep"


@pytest.mark.parametrize(("levels", "accepted"), [(31, True), (33, False)])
def test_nesting_limit_counts_the_record_itself(levels, accepted):
    # The record is one level; an ignored field nested `levels` deep adds the rest.
    raw = b'{"extra":' + b"[" * levels + b"]" * levels + b"," + payload()[1:]
    if accepted:
        assert decode(raw, Purchase).event_id
    else:
        assert rejection(raw).code == "too_deep"


def test_brackets_inside_strings_do_not_count_as_nesting():
    raw = b'{"note":"' + b"[{" * 40 + b'",' + payload()[1:]
    assert decode(raw, Purchase).event_id


# --- schema_violation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"amount": -1}, "$.amount"),
        ({"amount": -0.01}, "$.amount"),
        ({"amount": 1e12}, "$.amount"),
        ({"amount": "12.5"}, "$.amount"),
        ({"amount": True}, "$.amount"),
        ({"amount": None}, "$.amount"),
        ({"cost": -5}, "$.cost"),
        ({"event_id": ""}, "$.event_id"),
        ({"event_id": "e" * 129}, "$.event_id"),
        ({"event_id": 7}, "$.event_id"),
        ({"occurred_at": "2026-01-02T03:04:05"}, "$.occurred_at"),
        ({"occurred_at": "yesterday"}, "$.occurred_at"),
        ({"occurred_at": "2026-13-02T03:04:05Z"}, "$.occurred_at"),
        ({"occurred_at": 1767323045}, "$.occurred_at"),
        ({"currency": "usd"}, "$.currency"),
        ({"currency": "EURO"}, "$.currency"),
        ({"currency": "€"}, "$.currency"),
        ({"order_id": "o" * 129}, "$.order_id"),
        ({"order_id": ""}, "$.order_id"),
        ({"items": {"sku": "a"}}, "$.items"),
        ({"items": [{"sku": "a", "quantity": 0}]}, "$.items[0].quantity"),
        ({"items": [{"sku": "a"}, {"sku": "b", "quantity": 1.5}]}, "$.items[1].quantity"),
        ({"items": [{"sku": "a", "quantity": 1_000_001}]}, "$.items[0].quantity"),
        ({"items": [{"sku": "a", "unit_price": -1}]}, "$.items[0].unit_price"),
        ({"items": [{"sku": ""}]}, "$.items[0].sku"),
        ({"items": [{"quantity": 2}]}, "$.items[0]"),
    ],
)
def test_schema_violation_reports_the_json_path(changes, path):
    error = rejection(payload(**changes))
    assert (error.code, error.path) == ("schema_violation", path)
    assert "at `" not in error.message  # the path is split out of the message


@pytest.mark.parametrize("missing", ["event_id", "occurred_at", "amount"])
def test_missing_required_field_is_a_schema_violation_naming_it(missing):
    error = rejection(payload(**{missing: ...}))
    assert (error.code, error.path) == ("schema_violation", "$")
    assert missing in error.message


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"purchase"', b"null"])
def test_non_object_records_are_schema_violations(raw):
    error = rejection(raw)
    assert (error.code, error.path) == ("schema_violation", "$")


# --- non-finite and absurd numbers --------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "path"),
    [
        (b'"amount": 1e999', "$.amount"),
        (b'"amount": -1e999', "$.amount"),
        (b'"amount": 1' + b"0" * 400, "$.amount"),
        (b'"amount": 1e12', "$.amount"),
        (b'"amount": 1, "cost": 1e999', "$.cost"),
        (b'"amount": 1, "items": [{"sku": "a", "unit_price": 1e999}]', "$.items[0].unit_price"),
    ],
)
def test_non_finite_and_absurd_numbers_are_rejected(literal, path):
    raw = payload().replace(b'"amount": 12.5', literal)
    assert literal in raw
    error = rejection(raw)
    assert (error.code, error.path) == ("schema_violation", path)


# --- unknown_schema_version ---------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 99, "1", None])
def test_unknown_schema_version(version):
    error = rejection(payload(schema_version=version))
    assert (error.code, error.path) == ("unknown_schema_version", "$.schema_version")


# --- bad_customer_id ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "customer_id",
    [
        "abc\n",  # `$` in a regex also matches before a trailing newline
        "\nabc",
        "x" * 65,
        "",
        "a b",
        "a/b",
        "a:b",  # would change the shape of the Redis key
        "{c1}",  # would change the Redis cluster hash tag
        "ü",
        5,
        None,
    ],
)
def test_bad_customer_id(customer_id):
    error = rejection(payload(customer_id=customer_id))
    assert (error.code, error.path) == ("bad_customer_id", "$.customer_id")


# --- the error object ---------------------------------------------------------------------


def test_invalid_event_is_a_value_error_with_a_json_ready_reason():
    error = rejection(payload(amount=-1))
    assert isinstance(error, ValueError)
    reason = error.as_dict()
    assert reason["code"] == "schema_violation"
    assert reason["path"] == "$.amount"
    assert reason["message"]
    assert json.loads(json.dumps(reason)) == reason


# --- properties ---------------------------------------------------------------------------

# RFC 3339 offsets are whole minutes; decoded purchases never carry anything finer.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
money = st.floats(min_value=0, max_value=MAX_MONEY, allow_nan=False, allow_infinity=False)
short_text = st.text(min_size=1, max_size=40)

items = st.builds(
    Item,
    sku=short_text,
    quantity=st.integers(min_value=1, max_value=1_000_000),
    unit_price=money,
    category=st.none() | st.text(max_size=40),
)

purchases = st.builds(
    Purchase,
    event_id=st.text(min_size=1, max_size=128),
    customer_id=st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z"),
    occurred_at=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
    ),
    amount=money,
    currency=st.from_regex(r"\A[A-Z]{3}\Z"),
    cost=st.none() | money,
    order_id=st.none() | st.text(min_size=1, max_size=128),
    items=st.none() | st.lists(items, max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(purchases)
def test_decode_encode_round_trip(record):
    decoded = decode(encode(record), Purchase)
    assert decoded == record
    assert decoded.occurred_at.utcoffset() == record.occurred_at.utcoffset()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_invalid_event(raw):
    try:
        decode(raw, Purchase)
    except InvalidEvent as error:
        assert error.code in {"invalid_utf8", "invalid_json", "schema_violation"}


# Objects that look like purchases, with any field possibly replaced by any JSON value.
purchase_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": json_values,
        "customer_id": json_values,
        "occurred_at": json_values | st.just("2026-01-02T03:04:05Z"),
        "amount": json_values,
        "currency": json_values | st.just("EUR"),
        "cost": json_values,
        "items": json_values | st.lists(st.dictionaries(st.text(), json_values), max_size=3),
        "schema_version": json_values | st.just(1),
    },
)


@settings(max_examples=200, deadline=None)
@given(json_values | purchase_like)
def test_arbitrary_json_only_raises_invalid_event(value):
    raw = json.dumps(value).encode()
    try:
        record = decode(raw, Purchase)
    except InvalidEvent as error:
        assert error.code in {
            "schema_violation",
            "unknown_schema_version",
            "bad_customer_id",
            "too_large",
        }
        assert error.path.startswith("$")
    else:
        assert isinstance(record, Purchase)


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"[]", 1),
        (b'{"a": [[1], {"b": {}}]}', 4),
        (b'["[[[", "]]]"]', 1),
        (b'["\\"[[[["]', 1),  # an escaped quote does not end the string
        (b'["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote after it
        (b'["unterminated \\" [[[', 1),
    ],
)
def test_nesting_depth_ignores_brackets_in_strings(raw, depth):
    from crmstream.schemas.codec import nesting_depth

    assert nesting_depth(raw) == depth
