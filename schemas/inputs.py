"""Input events that applications publish.

Field names here are a public contract: publishers in any language depend on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

#: Customer ids become part of Redis keys, so they are restricted to a safe alphabet.
CUSTOMER_ID_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"

#: Money above this is treated as a data error rather than a purchase.
MAX_MONEY = 1e9

CustomerId = Annotated[str, msgspec.Meta(pattern=CUSTOMER_ID_PATTERN, min_length=1, max_length=64)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Money = Annotated[float, msgspec.Meta(ge=0, le=MAX_MONEY)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an order."""

    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    unit_price: Money = 0.0
    category: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class Purchase(msgspec.Struct, frozen=True, kw_only=True):
    """A completed purchase, published on ``crm.purchases`` keyed by ``customer_id``.

    ``amount`` is what the customer paid and ``cost`` what the order cost the shop, both in
    ``currency``; the customer's value (CLV) is the sum of ``amount - cost``.
    """

    event_id: EventId
    customer_id: CustomerId
    occurred_at: Timestamp
    amount: Money
    currency: Currency = "USD"
    cost: Money | None = None
    order_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    items: Annotated[list[Item], msgspec.Meta(max_length=1000)] | None = None
    schema_version: Literal[1] = 1
