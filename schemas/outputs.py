"""Output events that crmstream publishes for downstream consumers.

Every output carries a deterministic id derived from its source event, so a consumer
that sees the same output twice (Kafka is at-least-once) can drop the copy.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec

Tier = Literal["bronze", "silver", "gold", "platinum"]


def deterministic_id(*parts: str) -> str:
    """Return a stable 32-hex-digit id for the given parts.

    Examples
    --------
    >>> change_id = deterministic_id("evt-1", "tier", "silver")
    >>> len(change_id), change_id == deterministic_id("evt-1", "tier", "silver")
    (32, True)
    >>> change_id == deterministic_id("evt-1", "tier", "gold")
    False
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:32]


class TierChange(msgspec.Struct, frozen=True, kw_only=True):
    """A customer moved between value tiers; published on ``crm.tier-changes``."""

    change_id: str
    customer_id: str
    from_tier: Tier
    to_tier: Tier
    clv: float
    occurred_at: datetime
    reason: str
    event_id: str
    schema_version: Literal[1] = 1
