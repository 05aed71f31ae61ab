"""A customer's windowed traits: counts, sums and averages over the last 7, 30 and 90 days.

The profile keeps one small bucket per UTC day on which the customer did something
(:class:`DayActivity`), at most :data:`HORIZON_DAYS` days back from their latest event:
updating it is O(1) per event, and the windows are sums over at most 90 buckets, computed
only when a rule asks for them. Days are event time, so a replay or a backtest of the same
events gives the same traits as the live stream.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

#: The windows rules see, in days: ``traits.d7``, ``traits.d30``, ``traits.d90``.
WINDOWS = (7, 30, 90)
#: Buckets older than this many days before the customer's latest event are dropped.
HORIZON_DAYS = max(WINDOWS)
#: The traits of each window, with their types (for rule validation).
WINDOW_FIELDS: dict[str, type] = {
    "orders": int,
    "revenue": float,
    "avg_order": float,
    "messages": int,
    "negative_messages": int,
    "feedback": int,
    "low_ratings": int,
}


class DayActivity(msgspec.Struct, array_like=True):
    """What a customer did on one UTC day (``day`` counts days since 1970-01-01).

    Stored as a JSON array to keep the profile small.
    """

    day: int
    orders: int = 0
    revenue: float = 0.0
    messages: int = 0
    negative_messages: int = 0
    feedback: int = 0
    low_ratings: int = 0


def day_number(at: datetime) -> int:
    """The UTC day of an instant, as days since 1970-01-01.

    >>> from datetime import timezone
    >>> day_number(datetime(1970, 1, 2, 23, 59, tzinfo=timezone.utc))
    1
    """
    return int(at.timestamp() // 86400)


def record(
    activity: list[DayActivity],
    at: datetime,
    *,
    orders: int = 0,
    revenue: float = 0.0,
    messages: int = 0,
    negative_messages: int = 0,
    feedback: int = 0,
    low_ratings: int = 0,
) -> list[DayActivity]:
    """Add what happened at ``at`` to a customer's day buckets; return the new list.

    The input list is not modified. Buckets stay sorted by day; those more than
    :data:`HORIZON_DAYS` days before the newest are dropped, and so is an event older
    than that (it is outside every window).

    >>> from datetime import timezone
    >>> at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> days = record([], at, orders=1, revenue=20.0)
    >>> days = record(days, at, orders=1, revenue=5.0)
    >>> [(d.orders, d.revenue) for d in days]
    [(2, 25.0)]
    """
    day = day_number(at)
    newest = max(day, activity[-1].day) if activity else day
    if day <= newest - HORIZON_DAYS:
        return activity
    kept = [bucket for bucket in activity if bucket.day > newest - HORIZON_DAYS]
    index = len(kept)
    while index and kept[index - 1].day > day:
        index -= 1
    if index and kept[index - 1].day == day:
        old = kept[index - 1]
        kept[index - 1] = DayActivity(
            day,
            old.orders + orders,
            old.revenue + revenue,
            old.messages + messages,
            old.negative_messages + negative_messages,
            old.feedback + feedback,
            old.low_ratings + low_ratings,
        )
    else:
        kept.insert(
            index,
            DayActivity(day, orders, revenue, messages, negative_messages, feedback, low_ratings),
        )
    return kept


def window_traits(
    activity: list[DayActivity],
    at: datetime,
    revenue: float,
    first_purchase_at: datetime | None,
    windows: tuple[int, ...] = WINDOWS,
) -> dict[str, object]:
    """The traits rules see as ``traits``: one mapping per window ending on ``at``'s day
    (``d7``, ``d30``, ``d90``, each with :data:`WINDOW_FIELDS`), and
    ``avg_30d_revenue``, the customer's lifetime ``revenue`` per 30 days since their first
    purchase (over at least 30 days): their usual 30-day spend. Only ``windows`` are
    computed (all by default).

    >>> from datetime import timezone, timedelta
    >>> at = datetime(2026, 3, 31, tzinfo=timezone.utc)
    >>> days = record([], at - timedelta(days=40), orders=1, revenue=90.0)
    >>> days = record(days, at, orders=1, revenue=10.0)
    >>> traits = window_traits(days, at, 100.0, at - timedelta(days=40))
    >>> traits["d30"]["orders"], traits["d90"]["revenue"], traits["d90"]["avg_order"]
    (1, 100.0, 50.0)
    >>> traits["avg_30d_revenue"]
    75.0
    """
    today = day_number(at)
    traits: dict[str, object] = {}
    for window in windows:
        orders = messages = negative = feedback = low = 0
        spent = 0.0
        for bucket in reversed(activity):  # newest first: stop at the window's start
            if bucket.day <= today - window:
                break
            if bucket.day <= today:
                orders += bucket.orders
                spent += bucket.revenue
                messages += bucket.messages
                negative += bucket.negative_messages
                feedback += bucket.feedback
                low += bucket.low_ratings
        traits[f"d{window}"] = {
            "orders": orders,
            "revenue": spent,
            "avg_order": spent / orders if orders else 0.0,
            "messages": messages,
            "negative_messages": negative,
            "feedback": feedback,
            "low_ratings": low,
        }
    tenure = (at - first_purchase_at).total_seconds() / 86400 if first_purchase_at else 0.0
    traits["avg_30d_revenue"] = revenue * 30.0 / max(30.0, tenure)
    return traits
