"""Output events that crmstream publishes for downstream consumers.

Every output carries a deterministic id derived from its source event(s), so a consumer
that sees the same output twice (Kafka is at-least-once) can drop the copy.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

import msgspec

Tier = Literal["bronze", "silver", "gold", "platinum"]
AlertKind = Literal[
    "strongly_negative",
    "negative_streak",
    "sentiment_drop",
    "churn_intent",
    "low_rating",
    "anomaly",
]
Severity = Literal["warning", "critical"]
Scalar = str | int | float | bool | None


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


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """Something a human should look at; published on ``crm.alerts``.

    ``alert_id`` is derived from the source event ids and the kind.
    """

    alert_id: str
    customer_id: str
    kind: AlertKind
    severity: Severity
    score: float
    reason: str
    occurred_at: datetime
    source_event_ids: Annotated[list[str], msgspec.Meta(min_length=1)]
    excerpt: Annotated[str, msgspec.Meta(max_length=280)] | None = None
    schema_version: Literal[1] = 1


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """A marketing rule fired for a customer; published on ``crm.triggers``.

    ``trigger_id`` is derived from the rule and its firing key, so a rule fires once per key.
    ``attributes`` is the rule's rendered ``emit`` payload. ``holdout`` is true when the
    customer is in the rule's control group: the trigger is recorded, so the rule's
    uplift can be measured, and consumers must not act on it. ``channel`` is the rule's
    marketing channel, if it names one: the customer consented to it. Text attributes
    carry no e-mail address, phone or card number (they are redacted).
    """

    trigger_id: str
    rule: str
    customer_id: str
    occurred_at: datetime
    event_id: str
    attributes: dict[str, Scalar] = {}
    holdout: bool = False
    channel: str | None = None
    schema_version: Literal[1] = 1


class AudienceChange(msgspec.Struct, frozen=True, kw_only=True):
    """A customer entered or left an audience; published on ``crm.audiences``.

    ``change_id`` is derived from the audience, the customer, the source event and the
    change, so a redelivered event gives the same id.
    """

    change_id: str
    audience: str
    customer_id: str
    change: Literal["enter", "exit"]
    occurred_at: datetime
    event_id: str
    schema_version: Literal[1] = 1


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    """A customer was erased (``crmstream erase``, ``DELETE /api/customers/{id}``);
    published on ``crm.erasures``, keyed by ``customer_id``.

    crmstream has removed everything it keeps of the customer; a consumer must delete what
    it holds of them too (outputs it copied from ``crm.alerts``, ``crm.triggers``, ...).
    ``erasure_id`` is derived from the customer and the time of the erasure.
    """

    erasure_id: str
    customer_id: str
    erased_at: datetime
    schema_version: Literal[1] = 1


AuditAction = Literal[
    "profile.read",
    "customer.erase",
    "alert.acknowledge",
    "rules.change",
    "deadletter.replay",
]


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Who did what, and when; published on ``crm.audit``, keyed by ``target`` (or by
    ``action`` when there is none).

    ``actor`` names who acted: ``dashboard:<user>`` for a logged-in user, ``api`` for a
    bearer-token client, ``cli:<user>`` for a command, ``worker:<id>`` for a worker.
    ``action`` is one of ``profile.read`` (a profile or history read through the API;
    ``target`` the customer id), ``customer.erase`` (``target`` the customer id),
    ``alert.acknowledge`` (``target`` the alert id), ``rules.change`` (a worker loaded a
    changed rule file or refused it; ``target`` the file), ``deadletter.replay``
    (``target`` the dead-letter topic). ``details`` says more (counts, versions, ...).
    """

    audit_id: str
    at: datetime
    actor: str
    action: AuditAction
    target: str | None = None
    details: dict[str, Scalar] = {}
    schema_version: Literal[1] = 1


class DeadLetterReason(msgspec.Struct, frozen=True, kw_only=True):
    """Why a record was rejected."""

    code: str
    path: str
    message: str


class DeadLetterSource(msgspec.Struct, frozen=True, kw_only=True):
    """Where a rejected record was read."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None = None


class DeadLetterRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record on ``crm.deadletter``, as ``crmstream deadletter list --json`` shows it.

    On the topic itself the value is the original bytes, unchanged, and everything else is
    in headers (Kafka Connect's ``__connect.errors.*`` plus ``crm.error.*``). Here ``value``
    is the original value as text when it is valid UTF-8, else ``value_base64`` is set.
    ``deadletter_partition`` and ``deadletter_offset`` locate the record on the topic.
    """

    deadletter_partition: int
    deadletter_offset: int
    source: DeadLetterSource
    reason: DeadLetterReason
    key: str | None = None
    value: str | None = None
    value_base64: str | None = None
    schema_version: Literal[1] = 1
