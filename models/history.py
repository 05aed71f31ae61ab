"""A customer's recent history, bounded: what the support page shows of them.

The profile keeps the customer's last messages (with their sentiment and intent), their
last alerts and their tier changes, trimmed by count and by age (in event time), so it
stays small however busy the customer is. The worker writes it in the same compare-and-set
as the profile, exactly once per event, but into lists of its own that it never reads
(:mod:`crmstream.streams.profiles`): a fold sees only the entries its batch adds, and
readers see the stored lists, trimmed by count on write and by age on read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from crmstream.schemas.outputs import Alert, TierChange


class MessageEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A customer message as scored: sentiment in [-1, 1], intent, a short excerpt."""

    at: datetime
    event_id: str
    sentiment: float
    intent: str
    excerpt: str = ""


class AlertEntry(msgspec.Struct, kw_only=True):
    """An alert raised for the customer."""

    at: datetime
    alert_id: str
    kind: str
    severity: str
    score: float


class TierEntry(msgspec.Struct, kw_only=True):
    """A change of the customer's value tier."""

    at: datetime
    from_tier: str
    to_tier: str
    clv: float


class History(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The customer's recent messages, alerts and tier changes, oldest first."""

    messages: list[MessageEntry] = msgspec.field(default_factory=list)
    alerts: list[AlertEntry] = msgspec.field(default_factory=list)
    tiers: list[TierEntry] = msgspec.field(default_factory=list)


@dataclass(frozen=True)
class HistoryLimits:
    """How much history a profile keeps: the newest entries of each kind, none older than
    ``max_age`` before the newest event; message excerpts of at most ``excerpt`` characters.
    A count of 0 keeps nothing of that kind."""

    messages: int = 20
    alerts: int = 20
    tiers: int = 10
    max_age: timedelta = timedelta(days=90)
    excerpt: int = 120


def remember(
    history: History,
    limits: HistoryLimits,
    at: datetime,
    message: MessageEntry | None = None,
    outputs: Sequence[Alert | TierChange] = (),
) -> History:
    """Add an event's message, alerts and tier change to ``history``; trim it.

    ``history`` is not modified. Entries older than ``limits.max_age`` before ``at`` (the
    event's time) are dropped.

    Examples
    --------
    >>> from datetime import timezone
    >>> day = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> limits = HistoryLimits(messages=2, max_age=timedelta(days=30))
    >>> history = History()
    >>> for n in range(3):
    ...     said = MessageEntry(at=day + timedelta(days=n), event_id=f"m{n}", sentiment=-0.5,
    ...                         intent="refund")
    ...     history = remember(history, limits, said.at, said)
    >>> [m.event_id for m in history.messages]          # the newest two
    ['m1', 'm2']
    >>> later = day + timedelta(days=32)                  # m1 is now too old
    >>> [m.event_id for m in remember(history, limits, later).messages]
    ['m2']
    """
    oldest = at - limits.max_age
    messages = history.messages
    if message is not None and limits.messages:
        messages = [*messages, message]
    alerts = history.alerts
    tiers = history.tiers
    for output in outputs:
        if isinstance(output, Alert):
            if limits.alerts:
                entry = AlertEntry(
                    at=output.occurred_at,
                    alert_id=output.alert_id,
                    kind=output.kind,
                    severity=output.severity,
                    score=output.score,
                )
                alerts = [*alerts, entry]
        elif limits.tiers:
            change = TierEntry(
                at=output.occurred_at,
                from_tier=output.from_tier,
                to_tier=output.to_tier,
                clv=round(output.clv, 2),
            )
            tiers = [*tiers, change]
    return History(
        messages=_trim(messages, limits.messages, oldest),
        alerts=_trim(alerts, limits.alerts, oldest),
        tiers=_trim(tiers, limits.tiers, oldest),
    )


def _trim(entries: list, count: int, oldest: datetime) -> list:
    if len(entries) > count:
        entries = entries[len(entries) - count :] if count else []
    if entries and entries[0].at < oldest:
        entries = [e for e in entries if e.at >= oldest]
    return entries
