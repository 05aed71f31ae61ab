"""The committed JSON Schemas and the worker's decoder accept exactly the same inputs.

For every input contract, Hypothesis draws instances from the schema itself
(``hypothesis-jsonschema``), then mutates one field (or an item's field) with values that
validators and parsers are known to read differently: integral floats, leap seconds,
timestamps with a space or without an offset, ids with a trailing newline, booleans,
nulls, numbers as text, or removes it. A standard JSON Schema 2020-12 validator with
format checking on is the oracle: valid per the schema ⇔ decoded by the worker.

The one rule a JSON Schema cannot state is the payload's size in bytes (64 KiB) and its
nesting (32): instances beyond either are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from crmstream.schemas import ChatMessage, CustomerDetails, Feedback, InvalidEvent, Purchase, decode
from crmstream.schemas.codec import MAX_DEPTH, MAX_PAYLOAD_BYTES, nesting_depth
from crmstream.streams.tools.contracts import file_name


def _more(self: conjecture_utils.many) -> bool:
    """``many.more()``, which hypothesis-jsonschema 0.23 draws objects' keys with and
    Hypothesis 6.170 replaced by iteration: one step of ``many``'s own loop."""
    if self._depth is None:
        self.__enter__()
    if self._in_element:
        self._finish_element()
    if not self._decide():
        return False
    self.count += 1
    self._in_element = True
    self._rejected = False
    return True


if not hasattr(conjecture_utils.many, "more"):
    conjecture_utils.many.more = _more  # type: ignore[attr-defined]

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
INPUTS = [Purchase, ChatMessage, Feedback, CustomerDetails]
CHECKER = Draft202012Validator.FORMAT_CHECKER

STAMP = "2026-05-01T10:00:00Z"
TRICKY_TEXT = [
    STAMP,
    "2026-05-01t10:00:00z",
    "2026-05-01 10:00:00Z",
    "2026-05-01T10:00:00",
    "2026-05-01T10:00:60Z",
    "2026-05-01T10:60:00Z",
    "2026-05-01T24:00:00Z",
    "2026-02-30T10:00:00Z",
    "2024-02-29T10:00:00Z",
    "2026-02-29T10:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-05-01T10:00:00.123456789+05:30",
    "2026-05-01T10:00:00.Z",
    "2026-05-01T10:00:00+0100",
    "2026-05-01T10:00:00+24:00",
    "2026-05-01T10:00:00-00:00",
    "2026-05-01T10:00:00Z\n",
    "2026-05-01",
    "alice",
    "alice\n",
    "alice\r",
    "al ice",
    "a" * 64,
    "a" * 65,
    "",
    "USD",
    "USD\n",
    "usd",
    "customer",
    "robot",
    "refund",
    "5",
    "1",
]
TRICKY_NUMBERS = [
    0,
    1,
    5,
    6,
    -1,
    10,
    11,
    1_000_000,
    1_000_001,
    0.0,
    -0.0,
    1.0,
    5.0,
    2.0,
    4.5,
    1e2,
    1e9,
    1e9 + 1,
    1e20,
    2.5,
    -0.5,
]
VALUES = st.one_of(
    st.sampled_from(TRICKY_TEXT),
    st.sampled_from(TRICKY_NUMBERS),
    st.booleans(),
    st.none(),
    st.integers(-10, 2_000_000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["sku", "quantity"]), st.integers(), max_size=2),
)
REMOVE = object()


def schema(record_type: type) -> dict[str, Any]:
    return json.loads((SCHEMAS / file_name(record_type)).read_text())


CONTRACTS = {record_type: schema(record_type) for record_type in INPUTS}
INSTANCES = {record_type: from_schema(CONTRACTS[record_type]) for record_type in INPUTS}
VALIDATORS = {
    record_type: Draft202012Validator(CONTRACTS[record_type], format_checker=CHECKER)
    for record_type in INPUTS
}


def accepted(raw: bytes, record_type: type) -> bool:
    try:
        decode(raw, record_type)
    except InvalidEvent:
        return False
    return True


def encoded(instance: Any) -> bytes:
    text = json.dumps(instance, ensure_ascii=False)
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 publisher can send it
        assume(False)
    assume(len(raw) <= MAX_PAYLOAD_BYTES and nesting_depth(raw) <= MAX_DEPTH)
    return raw


def test_format_checking_is_on():
    # Without rfc3339-validator, jsonschema skips date-time silently and the oracle is lax.
    assert "date-time" in CHECKER.checkers
    assert not CHECKER.conforms("2026-02-30T10:00:00Z", "date-time")


@pytest.mark.parametrize("record_type", INPUTS, ids=lambda t: t.__name__)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_valid_per_schema_is_accepted_by_the_decoder(record_type, data):
    instance = data.draw(INSTANCES[record_type], label="instance")
    raw = encoded(instance)
    assert VALIDATORS[record_type].is_valid(instance)
    assert accepted(raw, record_type), raw


@pytest.mark.parametrize("record_type", INPUTS, ids=lambda t: t.__name__)
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_schema_and_decoder_agree_on_mutated_instances(record_type, data):
    contract = CONTRACTS[record_type]
    instance = data.draw(INSTANCES[record_type], label="instance")
    target = instance
    fields = sorted(contract["properties"])
    if record_type is Purchase and instance.get("items") and data.draw(st.booleans()):
        target = instance["items"][0]
        fields = sorted(contract["$defs"]["Item"]["properties"])
    field = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(st.one_of(VALUES, st.just(REMOVE)), label="value")
    if value is REMOVE:
        target.pop(field, None)
    else:
        target[field] = value
    raw = encoded(instance)
    valid = VALIDATORS[record_type].is_valid(instance)
    assert accepted(raw, record_type) == valid, (raw, valid)
