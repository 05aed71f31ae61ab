"""Pure parts of privacy: redaction, keyed hashes and sealed copies, the customers
contract, rules' channel field, and the encryption key setting."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crmstream.models.contact import ContactKeys, protect
from crmstream.models.redaction import CARD, EMAIL, PHONE, luhn, redact
from crmstream.models.rules import RuleFileError, load_rules
from crmstream.schemas import CustomerDetails, InvalidEvent, decode
from crmstream.streams.settings import Settings

AT = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann.lee+crm@mail.example.co.uk please", f"write to {EMAIL} please"),
        ("card 4111 1111 1111 1111!", f"card {CARD}!"),
        ("card 5555-5555-5555-4444", f"card {CARD}"),
        ("card 378282246310005 (amex)", f"card {CARD} (amex)"),
        ("call +44 20 7946 0958", f"call {PHONE}"),
        ("call (415) 555-0199 now", f"call {PHONE} now"),
        ("call 0033 6 12 34 56 78", f"call {PHONE}"),
        ("order 1234 5678 9012 3456 failed", "order 1234 5678 9012 3456 failed"),
        ("order 42, paid 19.99 on 2026-05-01", "order 42, paid 19.99 on 2026-05-01"),
        ("at 2026-05-01T10:00:00 exactly", "at 2026-05-01T10:00:00 exactly"),
        ("version 1.2.3, room 12", "version 1.2.3, room 12"),
        ("", ""),
    ],
)
def test_redaction(text, expected):
    assert redact(text) == expected


@given(st.text(max_size=300))
def test_redaction_never_fails_and_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


@given(st.lists(st.integers(0, 9), min_size=12, max_size=18))
def test_every_card_number_is_redacted(digits):
    number = "".join(map(str, digits))
    check = next(d for d in "0123456789" if luhn(number + d))
    card = number + check
    spaced = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    for form in (card, spaced):
        out = redact(f"my card is {form}.")
        assert card not in out.replace(" ", "") and out.startswith("my card is ")


def test_sealed_copies_open_only_with_their_key_customer_and_field():
    keys = ContactKeys(b"pepper", bytes(32))
    sealed = keys.seal("c1", "email", "ann@example.com")
    assert keys.open("c1", "email", sealed) == "ann@example.com"
    assert keys.seal("c1", "email", "ann@example.com") != sealed  # a fresh nonce each time
    for opener, customer, kind in (
        (ContactKeys(b"pepper", bytes(range(32))), "c1", "email"),
        (keys, "c2", "email"),
        (keys, "c1", "phone"),
    ):
        with pytest.raises(ValueError):
            opener.open(customer, kind, sealed)
    assert ContactKeys(b"other").digest("email", "a@b.co") != keys.digest("email", "a@b.co")


def test_protected_details_keep_no_raw_contact():
    record = CustomerDetails(
        event_id="u1",
        customer_id="c1",
        occurred_at=AT,
        name="Ann Lee",
        email="Ann.Lee@example.com",
        phone="+44 20 7946 0958",
    )
    protected = protect(record, ContactKeys(b"pepper", bytes(32)))
    encoded = msgspec.json.encode(protected)
    for raw in (b"Ann", b"Lee", b"example", b"7946"):
        assert raw not in encoded
    assert sorted(protected.sealed) == ["email", "name", "phone"]


def customer(**fields) -> bytes:
    base = {"event_id": "u1", "customer_id": "c1", "occurred_at": "2026-05-01T00:00:00Z"}
    return msgspec.json.encode({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"email": "not-an-address"}, "$.email"),
        ({"email": "ann@example.com\n"}, "$"),
        ({"phone": "call me"}, "$.phone"),
        ({"name": "Ann\u0000Lee"}, "$"),
        ({"country": "gb"}, "$.country"),
        ({"consent": {"fax": {"granted": True, "at": "2026-05-01T00:00:00Z", "source": "x"}}}, "$"),
        ({"consent": {"email": {"granted": True, "at": "2026-05-01 00:00:00Z", "source": "x"}}},
         "$.consent.email.at"),
    ],
)  # fmt: skip
def test_bad_customer_details_are_refused_with_a_path(fields, path):
    with pytest.raises(InvalidEvent) as refused:
        decode(customer(**fields), CustomerDetails)
    assert (refused.value.code, refused.value.path) == ("schema_violation", path)


def test_a_rule_channel_must_be_a_known_channel():
    rules = load_rules('rules:\n  - id: a\n    on: purchase\n    when: "true"\n    channel: sms\n')
    assert rules.rules[0].channel == "sms"
    with pytest.raises(RuleFileError) as refused:
        load_rules('rules:\n  - id: a\n    on: purchase\n    when: "true"\n    channel: fax\n')
    assert [p.code for p in refused.value.problems] == ["bad_channel"]


def test_the_encryption_key_setting_is_checked():
    key = base64.b64encode(bytes(24)).decode()
    assert Settings(pii_encryption_key=key).contact_keys().can_seal
    assert not Settings().contact_keys().can_seal
    for bad in ("not base64!", base64.b64encode(bytes(10)).decode()):
        with pytest.raises(ValidationError):
            Settings(pii_encryption_key=bad)
