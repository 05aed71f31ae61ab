"""Every event contract: round trips, rejection codes and paths, and accepted edge cases.

``test_codec.py`` covers purchases in depth; this module covers chat messages, feedback
and the output records, and checks the rules shared by all input types once per type.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmstream.schemas.codec import MAX_DEPTH, MAX_PAYLOAD_BYTES, InvalidEvent, decode, encode
from crmstream.schemas.inputs import (
    MAX_TEXT,
    ChatMessage,
    Feedback,
    Intent,
    Purchase,
    Sender,
)
from crmstream.schemas.outputs import (
    Alert,
    AlertKind,
    AudienceChange,
    DeadLetterReason,
    DeadLetterRecord,
    DeadLetterSource,
    Severity,
    Tier,
    TierChange,
    Trigger,
)
from tests.strategies import json_values

COMMON: dict[str, Any] = {
    "event_id": "e1",
    "customer_id": "c1",
    "occurred_at": "2026-01-02T03:04:05Z",
}
VALID: dict[type, dict[str, Any]] = {
    Purchase: {**COMMON, "amount": 12.5},
    ChatMessage: {**COMMON, "conversation_id": "conv-1", "sender": "customer", "text": "hi"},
    Feedback: {**COMMON, "rating": 4},
}
INPUT_TYPES = list(VALID)
TEXT_TYPES = [ChatMessage, Feedback]

#: Every code ``decode`` itself can give (the processing stage adds others).
DECODE_CODES = {
    "too_large",
    "too_deep",
    "invalid_utf8",
    "invalid_json",
    "schema_violation",
    "unknown_schema_version",
    "bad_customer_id",
}

# Byte sequences that are never valid UTF-8.
INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong encoding of "/"
    b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
    b"\xe2\x82",  # truncated sequence
]


def payload(type_: type, *, ensure_ascii: bool = True, **changes: Any) -> bytes:
    """A valid record of ``type_`` as JSON bytes; a change to ``...`` removes that field."""
    record = {**VALID[type_], **changes}
    kept = {k: v for k, v in record.items() if v is not ...}
    return json.dumps(kept, ensure_ascii=ensure_ascii).encode()


def with_literal(type_: type, field: str, literal: bytes) -> bytes:
    """A valid record of ``type_`` whose ``field`` is the raw JSON ``literal``."""
    raw = payload(type_, **{field: "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', literal)
    assert literal in raw
    return raw


def with_extra_field(raw: bytes, name: bytes, value: bytes) -> bytes:
    """``raw`` with one more member, written first, from raw JSON bytes."""
    return b'{"' + name + b'": ' + value + b", " + raw[1:]


def rejection(raw: bytes, type_: type) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode(raw, type_)
    return caught.value


def type_id(value: Any) -> str | None:
    return value.__name__ if isinstance(value, type) else None


# --- valid records ------------------------------------------------------------------------


def test_decode_minimal_chat_message_fills_defaults():
    got = decode(payload(ChatMessage), ChatMessage)
    assert got == ChatMessage(
        event_id="e1",
        customer_id="c1",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        conversation_id="conv-1",
        sender="customer",
        text="hi",
    )
    assert (got.channel, got.intent, got.schema_version) == ("chat", None, 1)


def test_decode_full_chat_message():
    raw = payload(ChatMessage, sender="agent", channel="email", intent="refund", schema_version=1)
    got = decode(raw, ChatMessage)
    assert (got.sender, got.channel, got.intent) == ("agent", "email", "refund")


@pytest.mark.parametrize("sender", get_args(Sender))
def test_every_sender_is_accepted(sender):
    assert decode(payload(ChatMessage, sender=sender), ChatMessage).sender == sender


@pytest.mark.parametrize("intent", [*get_args(Intent), None])
def test_every_intent_is_accepted(intent):
    assert decode(payload(ChatMessage, intent=intent), ChatMessage).intent == intent


def test_decode_full_feedback():
    raw = payload(Feedback, rating=5, nps=10, text="great", order_id="o-9")
    got = decode(raw, Feedback)
    assert got == Feedback(
        event_id="e1",
        customer_id="c1",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        rating=5,
        nps=10,
        text="great",
        order_id="o-9",
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"rating": ..., "nps": 0}, (None, 0)),  # 0 is a score, not a missing one
        ({"rating": None, "nps": 0}, (None, 0)),
        ({"rating": ..., "nps": 10}, (None, 10)),
        ({"rating": 1}, (1, None)),
        ({"rating": 5, "nps": None}, (5, None)),
    ],
)
def test_feedback_with_a_rating_or_an_nps_score_alone_is_accepted(changes, expected):
    got = decode(payload(Feedback, **changes), Feedback)
    assert (got.rating, got.nps) == expected


@pytest.mark.parametrize("type_", TEXT_TYPES, ids=type_id)
@pytest.mark.parametrize("char", ["a", "é", "€", "😀", "\n"])
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
def test_text_of_exactly_the_limit_in_characters_is_accepted(type_, char, ensure_ascii):
    text = char * MAX_TEXT
    raw = payload(type_, ensure_ascii=ensure_ascii, text=text)
    if not ensure_ascii and char.isprintable():
        # The limit is in characters: 4000 "é" are 8000 bytes of UTF-8 and still valid.
        assert text.encode() in raw
    assert decode(raw, type_).text == text


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize(
    "extra",
    [
        {"coupon": "X1"},
        {"meta": {"source": "app", "tags": ["a", "b"], "n": 1.5}},
        {"nothing": None, "flag": True, "list": []},
        {"sentiment": "negative", "score": -3},
    ],
)
def test_unknown_fields_are_ignored(type_, extra):
    assert decode(payload(type_, **extra), type_) == decode(payload(type_), type_)


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize(
    ("occurred_at", "offset"),
    [
        ("2026-01-02T03:04:05+05:30", timedelta(hours=5, minutes=30)),
        ("2026-01-02T03:04:05.123-09:45", timedelta(hours=-9, minutes=-45)),
        ("2026-01-02T03:04:05+00:00", timedelta(0)),
    ],
)
def test_occurred_at_keeps_its_utc_offset(type_, occurred_at, offset):
    got = decode(payload(type_, occurred_at=occurred_at), type_).occurred_at
    assert got.utcoffset() == offset
    assert got.replace(microsecond=0) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(offset))


# --- schema_violation: chat messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"text": "a" * (MAX_TEXT + 1)}, "$.text"),
        ({"text": "é" * (MAX_TEXT + 1)}, "$.text"),
        ({"text": "😀" * (MAX_TEXT + 1)}, "$.text"),
        ({"text": ""}, "$.text"),
        ({"text": None}, "$.text"),
        ({"text": 5}, "$.text"),
        ({"text": ["hi"]}, "$.text"),
        ({"sender": "robot"}, "$.sender"),
        ({"sender": "Customer"}, "$.sender"),
        ({"sender": None}, "$.sender"),
        ({"intent": "unknown"}, "$.intent"),
        ({"intent": "Refund"}, "$.intent"),
        ({"intent": 1}, "$.intent"),
        ({"channel": ""}, "$.channel"),
        ({"channel": "c" * 33}, "$.channel"),
        ({"conversation_id": ""}, "$.conversation_id"),
        ({"conversation_id": "k" * 129}, "$.conversation_id"),
        ({"conversation_id": 7}, "$.conversation_id"),
        ({"event_id": ""}, "$.event_id"),
    ],
)
def test_chat_schema_violation_reports_the_json_path(changes, path):
    error = rejection(payload(ChatMessage, **changes), ChatMessage)
    assert (error.code, error.path) == ("schema_violation", path)
    assert "at `" not in error.message


@pytest.mark.parametrize(
    "missing", ["conversation_id", "sender", "text", "event_id", "occurred_at"]
)
def test_chat_missing_required_field_is_a_schema_violation_naming_it(missing):
    error = rejection(payload(ChatMessage, **{missing: ...}), ChatMessage)
    assert (error.code, error.path) == ("schema_violation", "$")
    assert missing in error.message


# --- schema_violation: feedback -----------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"rating": ...},
        {"rating": None},
        {"rating": None, "nps": None},
        {"rating": ..., "text": "no score at all"},
    ],
)
def test_feedback_without_rating_or_nps_is_a_schema_violation(changes):
    error = rejection(payload(Feedback, **changes), Feedback)
    assert (error.code, error.path) == ("schema_violation", "$")
    assert "rating" in error.message
    assert "nps" in error.message


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"rating": 0}, "$.rating"),
        ({"rating": 6}, "$.rating"),
        ({"rating": -1}, "$.rating"),
        ({"rating": "5"}, "$.rating"),
        ({"rating": 4.5}, "$.rating"),
        ({"rating": 6.0}, "$.rating"),
        ({"rating": 4.0, "nps": 10.5}, "$.nps"),
        ({"rating": True}, "$.rating"),
        ({"nps": -1}, "$.nps"),
        ({"nps": 11}, "$.nps"),
        ({"nps": "7"}, "$.nps"),
        ({"rating": ..., "nps": -1}, "$.nps"),
        ({"rating": ..., "nps": 11}, "$.nps"),
        ({"text": "a" * (MAX_TEXT + 1)}, "$.text"),
        ({"text": "é" * (MAX_TEXT + 1)}, "$.text"),
        ({"text": 3}, "$.text"),
        ({"order_id": ""}, "$.order_id"),
        ({"order_id": "o" * 129}, "$.order_id"),
    ],
)
def test_feedback_schema_violation_reports_the_json_path(changes, path):
    error = rejection(payload(Feedback, **changes), Feedback)
    assert (error.code, error.path) == ("schema_violation", path)
    assert "at `" not in error.message


# --- schema_violation: timestamps and numbers, every input type ---------------------------


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-01-02T03:04:05",  # no timezone
        "2026-01-02T03:04:05.5",
        "2026-01-02",
        "03:04:05Z",
        "yesterday",
        "",
        "2026-13-02T03:04:05Z",
        "2026-02-30T03:04:05Z",
        "2026-01-02T03:04:05+24:00",
        "2026-01-02 03:04:05Z",  # RFC 3339 wants a `T`
        "2026-01-02T03:04:05+0100",
        "2026-01-02T03:04:60Z",
        "2026-02-30T03:04:05Z",
        "2026-01-02T03:04:05Z\n",
        1767323045,
        1767323045.5,
        None,
        {"iso": "2026-01-02T03:04:05Z"},
    ],
)
def test_timestamp_without_timezone_or_unparseable_is_rejected(type_, occurred_at):
    error = rejection(payload(type_, occurred_at=occurred_at), type_)
    assert (error.code, error.path) == ("schema_violation", "$.occurred_at")


@pytest.mark.parametrize(
    ("type_", "field", "literal"),
    [
        (Purchase, "amount", b"1e999"),
        (Purchase, "amount", b"-1e999"),
        (Purchase, "amount", b"1e12"),
        (Purchase, "cost", b"1e999"),
        (Feedback, "rating", b"1e999"),
        (Feedback, "rating", b"-1e999"),
        (Feedback, "rating", b"1e12"),
        (Feedback, "rating", b"1" + b"0" * 400),
        (Feedback, "nps", b"1e999"),
        (Feedback, "nps", b"1e12"),
        (Feedback, "nps", b"100000000000"),
        (ChatMessage, "text", b"1e999"),
        (ChatMessage, "intent", b"-1e999"),
        (ChatMessage, "conversation_id", b"1e12"),
    ],
)
def test_non_finite_and_absurd_numbers_are_schema_violations(type_, field, literal):
    error = rejection(with_literal(type_, field, literal), type_)
    assert (error.code, error.path) == ("schema_violation", f"$.{field}")


# --- unknown_schema_version / bad_customer_id, every input type ---------------------------


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize("version", [2, 0, -1, "1", 1.5, 2.0, True, None])
def test_unknown_schema_version(type_, version):
    error = rejection(payload(type_, schema_version=version), type_)
    assert (error.code, error.path) == ("unknown_schema_version", "$.schema_version")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize(
    "customer_id",
    ["abc\n", "a b", "a:b", "{c1}", "x" * 65, "", "ü", 5, None],
)
def test_bad_customer_id(type_, customer_id):
    error = rejection(payload(type_, customer_id=customer_id), type_)
    assert (error.code, error.path) == ("bad_customer_id", "$.customer_id")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
def test_missing_customer_id_names_the_field(type_):
    error = rejection(payload(type_, customer_id=...), type_)
    assert error.code in {"schema_violation", "bad_customer_id"}
    assert "customer_id" in error.message


# --- too_large / too_deep, every input type -----------------------------------------------


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
def test_payload_of_exactly_the_limit_is_accepted(type_):
    raw = payload(type_)
    raw += b" " * (MAX_PAYLOAD_BYTES - len(raw))
    assert len(raw) == 64 * 1024
    assert decode(raw, type_).event_id == "e1"


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize("how", ["whitespace", "extra_field"])
def test_payload_over_64_kib_is_too_large(type_, how):
    if how == "whitespace":
        raw = payload(type_)
        raw += b" " * (MAX_PAYLOAD_BYTES + 1 - len(raw))
    else:
        raw = payload(type_, attachment="x" * MAX_PAYLOAD_BYTES)
    assert len(raw) > 64 * 1024
    error = rejection(raw, type_)
    assert (error.code, error.path) == ("too_large", "$")


def nested(kind: str, levels: int) -> bytes:
    """A JSON array or object ``levels`` deep."""
    if kind == "arrays":
        return b"[" * levels + b"]" * levels
    return b'{"a": ' * (levels - 1) + b"{}" + b"}" * (levels - 1)


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize("kind", ["arrays", "objects"])
def test_nesting_deeper_than_the_limit_is_too_deep(type_, kind):
    # The record is one level; the ignored field adds the rest.
    def record(levels: int) -> bytes:
        return with_extra_field(payload(type_), b"x", nested(kind, levels))

    assert decode(record(MAX_DEPTH - 1), type_).event_id == "e1"
    for levels in (MAX_DEPTH, 5000):
        error = rejection(record(levels), type_)
        assert (error.code, error.path) == ("too_deep", "$")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
def test_nesting_inside_a_known_field_is_too_deep(type_):
    error = rejection(with_literal(type_, "event_id", nested("arrays", 40)), type_)
    assert (error.code, error.path) == ("too_deep", "$")


# --- invalid_utf8 / invalid_json, every input type ----------------------------------------


def _utf8_cases() -> list[tuple[type, str]]:
    cases = [(type_, "event_id") for type_ in INPUT_TYPES]
    cases += [(type_, "text") for type_ in TEXT_TYPES]
    cases += [(ChatMessage, "conversation_id"), (Feedback, "order_id")]
    return cases


@pytest.mark.parametrize(("type_", "field"), _utf8_cases(), ids=lambda v: type_id(v) or v)
@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_inside_a_string_field(type_, field, bad):
    raw = payload(type_, **{field: "okPLACEHOLDERok"}).replace(b"PLACEHOLDER", bad)
    error = rejection(raw, type_)
    assert (error.code, error.path) == ("invalid_utf8", "$")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize("where", ["value", "key"])
def test_invalid_utf8_inside_an_ignored_field_is_rejected(type_, where):
    # A payload that is not UTF-8 is not JSON (RFC 8259 section 8.1), wherever the bad
    # bytes are; an escaped lone surrogate in the same place is rejected as invalid_json.
    bad = b"\xff"
    name, value = (b"note", b'"ok' + bad + b'"') if where == "value" else (b"n" + bad, b"1")
    raw = with_extra_field(payload(type_), name, value)
    error = rejection(raw, type_)
    assert (error.code, error.path) == ("invalid_utf8", "$")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
def test_escaped_lone_surrogate_in_an_ignored_field_is_invalid_json(type_):
    raw = with_extra_field(payload(type_), b"note", b'"\\ud800"')
    assert rejection(raw, type_).code == "invalid_json"


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
def test_every_truncation_is_rejected_as_broken_json_or_utf8(type_, ensure_ascii):
    text = {"text": 'héllo € 😀 "q" \\'} if type_ in TEXT_TYPES else {}
    raw = payload(type_, ensure_ascii=ensure_ascii, **text)
    assert decode(raw, type_).event_id == "e1"
    codes = {}
    for end in range(len(raw)):
        try:
            decode(raw[:end], type_)
        except InvalidEvent as error:
            codes[end] = error.code
        else:
            codes[end] = "accepted"

    def cut_inside_a_character(end: int) -> bool:
        try:
            raw[:end].decode()
        except UnicodeDecodeError:
            return True
        return False

    # A cut inside a multi-byte character leaves invalid UTF-8; anywhere else, broken JSON.
    wrong = {
        end: code
        for end, code in codes.items()
        if code != ("invalid_utf8" if cut_inside_a_character(end) else "invalid_json")
    }
    assert wrong == {}
    assert ("invalid_utf8" in codes.values()) == (not ensure_ascii and type_ in TEXT_TYPES)


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"{'event_id': 'e1'}", b'{"event_id": "e1",}', b'{"a": tru}'],
)
def test_malformed_json_is_invalid_json(type_, raw):
    error = rejection(raw, type_)
    assert (error.code, error.path) == ("invalid_json", "$")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
@pytest.mark.parametrize("trailer", [b"x", b" {}", b"[", b" 1"])
def test_trailing_garbage_after_a_valid_record_is_invalid_json(type_, trailer):
    error = rejection(payload(type_) + trailer, type_)
    assert (error.code, error.path) == ("invalid_json", "$")


@pytest.mark.parametrize("type_", INPUT_TYPES, ids=type_id)
def test_two_records_in_one_payload_is_invalid_json(type_):
    error = rejection(payload(type_) + b"\n" + payload(type_), type_)
    assert (error.code, error.path) == ("invalid_json", "$")


# --- round trips --------------------------------------------------------------------------

# RFC 3339 offsets are whole minutes; decoded records never carry anything finer.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)
customer_ids = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z")
event_ids = st.text(min_size=1, max_size=128)
references = st.text(min_size=1, max_size=128)
finite = st.floats(allow_nan=False, allow_infinity=False)


def texts(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """Short varied texts, and long runs of one character up to exactly ``max_size``."""
    runs = st.builds(
        lambda char, n: char * n,
        st.characters(codec="utf-8"),  # text, as st.text() makes it: no lone surrogates
        st.integers(max(min_size, max_size - 50), max_size),
    )
    return st.text(min_size=min_size, max_size=min(max_size, 200)) | runs


chat_messages = st.builds(
    ChatMessage,
    event_id=event_ids,
    customer_id=customer_ids,
    occurred_at=timestamps,
    conversation_id=references,
    sender=st.sampled_from(get_args(Sender)),
    text=texts(1, MAX_TEXT),
    channel=st.text(min_size=1, max_size=32),
    intent=st.none() | st.sampled_from(get_args(Intent)),
)


@st.composite
def feedbacks(draw: st.DrawFn) -> Feedback:
    ratings = st.integers(min_value=1, max_value=5)
    nps_scores = st.integers(min_value=0, max_value=10)
    rating, nps = draw(
        st.tuples(ratings, st.none())
        | st.tuples(st.none(), nps_scores)
        | st.tuples(ratings, nps_scores)
    )
    return Feedback(
        event_id=draw(event_ids),
        customer_id=draw(customer_ids),
        occurred_at=draw(timestamps),
        rating=rating,
        nps=nps,
        text=draw(st.none() | texts(0, MAX_TEXT)),
        order_id=draw(st.none() | references),
    )


tier_changes = st.builds(
    TierChange,
    change_id=st.text(),
    customer_id=customer_ids,
    from_tier=st.sampled_from(get_args(Tier)),
    to_tier=st.sampled_from(get_args(Tier)),
    clv=finite,
    occurred_at=timestamps,
    reason=st.text(),
    event_id=st.text(),
)

alerts = st.builds(
    Alert,
    alert_id=st.text(),
    customer_id=customer_ids,
    kind=st.sampled_from(get_args(AlertKind)),
    severity=st.sampled_from(get_args(Severity)),
    score=finite,
    reason=st.text(),
    occurred_at=timestamps,
    source_event_ids=st.lists(st.text(), min_size=1, max_size=5),
    excerpt=st.none() | texts(0, 280),
)

scalars = st.none() | st.booleans() | st.integers() | finite | st.text()

triggers = st.builds(
    Trigger,
    trigger_id=st.text(),
    rule=st.text(),
    customer_id=customer_ids,
    occurred_at=timestamps,
    event_id=st.text(),
    attributes=st.dictionaries(st.text(), scalars, max_size=6),
    holdout=st.booleans(),
)

audience_changes = st.builds(
    AudienceChange,
    change_id=st.text(),
    audience=st.text(),
    customer_id=customer_ids,
    change=st.sampled_from(["enter", "exit"]),
    occurred_at=timestamps,
    event_id=st.text(),
)

dead_letters = st.builds(
    DeadLetterRecord,
    deadletter_partition=st.integers(min_value=0, max_value=2**31 - 1),
    deadletter_offset=st.integers(min_value=0, max_value=2**63 - 1),
    source=st.builds(
        DeadLetterSource,
        topic=st.text(),
        partition=st.integers(min_value=0, max_value=2**31 - 1),
        offset=st.integers(min_value=0, max_value=2**63 - 1),
        timestamp=st.none() | finite,
    ),
    reason=st.builds(
        DeadLetterReason,
        code=st.sampled_from(sorted(DECODE_CODES)),
        path=st.text(),
        message=st.text(),
    ),
    key=st.none() | st.text(),
    value=st.none() | st.text(),
    value_base64=st.none() | st.text(alphabet="ABCDEFabcdef0123456789+/="),
)

ROUND_TRIPS = [
    (ChatMessage, chat_messages),
    (Feedback, feedbacks()),
    (TierChange, tier_changes),
    (Alert, alerts),
    (Trigger, triggers),
    (AudienceChange, audience_changes),
    (DeadLetterRecord, dead_letters),
]


@pytest.mark.parametrize(
    ("type_", "records"), ROUND_TRIPS, ids=[t.__name__ for t, _ in ROUND_TRIPS]
)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decode_encode_round_trip(type_, records, data):
    record = data.draw(records, label="record")
    raw = encode(record)
    decoded = decode(raw, type_)
    assert type(decoded) is type_
    assert decoded == record
    assert msgspec.json.decode(raw, type=type_) == record
    if hasattr(record, "occurred_at"):
        # datetime equality compares instants; the offset must survive too.
        assert decoded.occurred_at.utcoffset() == record.occurred_at.utcoffset()


@pytest.mark.parametrize("type_", [TierChange, Alert, Trigger], ids=type_id)
def test_outputs_decode_with_the_codec_check_their_customer_id(type_):
    fields = {
        "customer_id": "a b",
        "occurred_at": "2026-01-02T03:04:05Z",
        "event_id": "e1",
        "reason": "r",
    }
    extra: dict[type, dict[str, Any]] = {
        TierChange: {"change_id": "x", "from_tier": "bronze", "to_tier": "silver", "clv": 1.0},
        Alert: {
            "alert_id": "x",
            "kind": "anomaly",
            "severity": "warning",
            "score": 0.5,
            "source_event_ids": ["e1"],
        },
        Trigger: {"trigger_id": "x", "rule": "r"},
    }
    raw = json.dumps({**fields, **extra[type_]}).encode()
    assert msgspec.json.decode(raw, type=type_).customer_id == "a b"
    error = rejection(raw, type_)
    assert (error.code, error.path) == ("bad_customer_id", "$.customer_id")


# --- arbitrary input never raises anything but InvalidEvent -------------------------------


def mutations(type_: type) -> st.SearchStrategy[bytes]:
    """Valid payloads of ``type_`` with one slice replaced by arbitrary bytes."""
    raw = payload(type_, ensure_ascii=False, **({"text": "héllo"} if type_ in TEXT_TYPES else {}))
    return st.tuples(st.integers(0, len(raw)), st.integers(0, 8), st.binary(max_size=8)).map(
        lambda cut: raw[: cut[0]] + cut[2] + raw[cut[0] + cut[1] :]
    )


@pytest.mark.parametrize("type_", TEXT_TYPES, ids=type_id)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_arbitrary_bytes_only_raise_invalid_event(type_, data):
    raw = data.draw(st.binary(max_size=2048) | mutations(type_), label="raw")
    try:
        record = decode(raw, type_)
    except InvalidEvent as error:
        assert error.code in DECODE_CODES - {"too_large"}
        assert error.path.startswith("$")
        assert error.message
    else:
        assert type(record) is type_


@st.composite
def almost(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A record built from ``fields``, with a few of them removed or replaced by any JSON."""
    record = {name: draw(strategy) for name, strategy in fields.items()}
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del record[name]
        else:
            record[name] = draw(json_values)
    return {**draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)), **record}


common_fields = {
    "event_id": st.text(min_size=1, max_size=10),
    "customer_id": customer_ids,
    "occurred_at": timestamps.map(datetime.isoformat),
    "schema_version": st.just(1),
}
chat_like = almost(
    {
        **common_fields,
        "conversation_id": st.text(min_size=1, max_size=10),
        "sender": st.sampled_from(get_args(Sender)),
        "text": st.text(min_size=1, max_size=20),
        "channel": st.text(min_size=1, max_size=5),
        "intent": st.none() | st.sampled_from(get_args(Intent)),
    }
)
feedback_like = almost(
    {
        **common_fields,
        "rating": st.none() | st.integers(-1, 7),
        "nps": st.none() | st.integers(-1, 12),
        "text": st.none() | st.text(max_size=20),
        "order_id": st.none() | st.text(max_size=5),
    }
)
SHAPES = {ChatMessage: chat_like, Feedback: feedback_like}


@pytest.mark.parametrize("type_", TEXT_TYPES, ids=type_id)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_arbitrary_json_only_raises_invalid_event(type_, data):
    value = data.draw(json_values | SHAPES[type_], label="value")
    raw = json.dumps(value, ensure_ascii=data.draw(st.booleans(), label="ascii")).encode()
    try:
        record = decode(raw, type_)
    except InvalidEvent as error:
        # Valid JSON text is never invalid_json or invalid_utf8.
        assert error.code in {
            "schema_violation",
            "unknown_schema_version",
            "bad_customer_id",
            "too_deep",
            "too_large",
        }
        assert error.path.startswith("$")
    else:
        assert type(record) is type_
        assert decode(encode(record), type_) == record
