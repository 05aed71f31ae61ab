"""Input events that applications publish.

Field names here are a public contract: publishers in any language depend on them. Every
input event carries ``event_id``, ``customer_id``, ``occurred_at`` and an optional
``schema_version`` (1, the only version so far; any other is rejected). Unknown fields are
ignored, so publishers may add their own.

The generated JSON Schemas say exactly what the decoder accepts (a property test holds
them to it, with format checking on): integer fields are ``"type": "integer"`` and, as in
JSON Schema, ``5.0`` is the integer 5; timestamps are RFC 3339 ``date-time`` with a
``T``, seconds, and an offset written ``Z`` or ``±hh:mm`` (no leap second ``:60``); and
patterns hold in every regex engine, including those whose ``$`` also matches before a
final newline (a ``not`` clause rules out any other character).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

#: Customer ids become part of Redis keys, so they are restricted to a safe alphabet.
CUSTOMER_ID_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"
#: Timestamps: RFC 3339 ``date-time`` as JSON Schema's ``format`` reads it, narrowed to
#: what a Python ``datetime`` holds (no year 0000, no ``:60``). Day-of-month is checked by
#: the format.
TIMESTAMP_PATTERN = (
    "^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]"
    ":[0-5][0-9]([.][0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _only(characters: str) -> dict[str, object]:
    """A JSON Schema clause that rules out any character but ``characters`` (a regex
    class body): it closes the trailing-newline loophole of ``$`` in Python and Java."""
    return {"not": {"pattern": f"[^{characters}]"}}


#: Money above this is treated as a data error rather than a purchase.
MAX_MONEY = 1e9

#: Longest chat message or feedback text, in characters.
MAX_TEXT = 4000

CustomerId = Annotated[
    str,
    msgspec.Meta(
        pattern=CUSTOMER_ID_PATTERN,
        min_length=1,
        max_length=64,
        extra_json_schema=_only("A-Za-z0-9_.-"),
    ),
]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, extra_json_schema={"pattern": TIMESTAMP_PATTERN, **_only("0-9Tt:.Zz+-")}),
]
Money = Annotated[float, msgspec.Meta(ge=0, le=MAX_MONEY)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$", min_length=3, max_length=3)]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]

Sender = Literal["customer", "agent", "bot"]
Intent = Literal["cancel", "refund", "complaint", "delivery", "purchase_question", "other"]


class InputEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Fields every input event has."""

    event_id: EventId
    customer_id: CustomerId
    occurred_at: Timestamp
    schema_version: Literal[1] = 1


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order."""

    sku: Reference
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    unit_price: Money = 0.0
    category: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Purchase(InputEvent, frozen=True, kw_only=True):
    """A completed purchase, published on ``crm.purchases`` keyed by ``customer_id``.

    ``amount`` is what the customer paid and ``cost`` what the order cost the shop, both in
    ``currency``; the customer's value (CLV) is the sum of ``amount - cost``.
    """

    amount: Money
    currency: Currency = "USD"
    cost: Money | None = None
    order_id: Reference | None = None
    items: Annotated[list[Item], msgspec.Meta(max_length=1000)] | None = None


class ChatMessage(InputEvent, frozen=True, kw_only=True):
    """One message of a support conversation, published on ``crm.chats``.

    Only messages with ``sender`` ``customer`` count toward the customer's sentiment.
    ``intent``, when present, is a label confirmed by a human (it trains the intent model).
    """

    conversation_id: Reference
    sender: Sender
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] = "chat"
    intent: Intent | None = None


class Feedback(InputEvent, frozen=True, kw_only=True):
    """A rating, an NPS answer, or both, published on ``crm.feedback``.

    At least one of ``rating`` (1–5 stars) and ``nps`` (0–10) is required.
    """

    rating: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    nps: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    text: Text | None = None
    order_id: Reference | None = None

    def __post_init__(self) -> None:
        if self.rating is None and self.nps is None:
            raise ValueError("feedback needs a rating, an nps score, or both")


#: The marketing channels a customer consents to (or not) one by one.
Channel = Literal["email", "sms", "phone", "push", "post"]
CHANNELS: tuple[str, ...] = ("email", "sms", "phone", "push", "post")

EMAIL_PATTERN = "^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9-]{1,63}([.][A-Za-z0-9-]{1,63})+$"
PHONE_PATTERN = "^[+]?[0-9][0-9 ().-]{5,30}$"
_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
#: Control characters, as a pattern every validator reads (ECMA-262, RE2, Python): \xHH.
_CONTROL = "[\\x00-\\x1f\\x7f]"
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")

Email = Annotated[
    str,
    msgspec.Meta(
        pattern=EMAIL_PATTERN,
        max_length=254,
        extra_json_schema=_only("A-Za-z0-9._%+'@-"),
    ),
]
Phone = Annotated[str, msgspec.Meta(pattern=PHONE_PATTERN, extra_json_schema=_only("0-9 ().+-"))]
Name = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=200, extra_json_schema={"not": {"pattern": _CONTROL}}),
]
Country = Annotated[
    str,
    msgspec.Meta(pattern="^[A-Z]{2}$", min_length=2, max_length=2, extra_json_schema=_only("A-Z")),
]


class Consent(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's answer for one marketing channel: ``granted`` or withdrawn, when
    (``at``), and where it was given (``source``: a form, a call, an import)."""

    granted: bool
    at: Timestamp
    source: Reference


class CustomerDetails(InputEvent, frozen=True, kw_only=True):
    """Who a customer is and how they may be contacted, published on ``crm.customers``.

    Every field is optional: a record changes only what it carries. ``name``, ``email``
    and ``phone`` are never stored as given: the worker keeps a keyed hash of each (so they
    can be matched) and, when an encryption key is configured, an encrypted copy.
    ``consent`` maps a channel (``email``, ``sms``, ``phone``, ``push``, ``post``) to the
    customer's answer; the latest answer of a channel wins, and triggers of a rule with a
    ``channel`` are emitted only while the customer's consent to it is granted.
    ``external_ids`` are the customer's ids in other systems (e.g. ``{"shop": "u-42"}``).
    """

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    country: Country | None = None
    consent: Annotated[dict[Channel, Consent], msgspec.Meta(max_length=5)] | None = None
    external_ids: (
        Annotated[
            dict[Annotated[str, msgspec.Meta(min_length=1, max_length=32)], Reference],
            msgspec.Meta(max_length=16),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        # ``$`` of a pattern also matches before a final newline: check the whole text.
        if self.email is not None and not _EMAIL.fullmatch(self.email):
            raise ValueError(f"email must match {EMAIL_PATTERN}")
        if self.phone is not None and not _PHONE.fullmatch(self.phone):
            raise ValueError(f"phone must match {PHONE_PATTERN}")
        if self.name is not None and _CONTROL_CHARACTER.search(self.name):
            raise ValueError("name must not contain control characters")
