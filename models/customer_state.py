"""What the models keep of one customer: stored with the customer, not in the models.

Kept in the customer's profile (field ``model_state``) and written by the same
compare-and-set as the rest of the profile, so it is applied exactly once and follows the
customer to whichever worker owns their partition. See
:mod:`crmstream.models.purchase_models`.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from crmstream.models.propensity import Snapshot


class PurchaseLesson(msgspec.Struct, array_like=True, frozen=True):
    """What one purchase teaches the shared models, as it was when the purchase arrived.

    ``offset`` is the purchase's position in its partition; ``anomaly`` and ``rfm`` the
    features of the anomaly and segment models; ``previous_segment`` (``-1``: none) and
    ``segment`` the customer's move between segments; ``anomaly_score`` how the purchase
    scored before the models learned from it.
    """

    offset: int
    anomaly: tuple[float, float, float, float]
    rfm: tuple[float, float, float]
    previous_segment: int
    segment: int
    anomaly_score: float = 0.0


class CustomerModelState(msgspec.Struct, kw_only=True):
    """What the purchase models keep of one customer, stored with the customer's profile.

    Examples
    --------
    >>> CustomerModelState().latest() is None
    True
    """

    snapshots: list[Snapshot] = msgspec.field(default_factory=list)
    lessons: list[PurchaseLesson] = msgspec.field(default_factory=list)
    #: Chats and feedback applied since the models' last checkpoint, as ``(kind, offset)``:
    #: a replay teaches the models only events that were applied (not re-sent copies).
    marks: list[tuple[str, int]] = msgspec.field(default_factory=list)
    #: Per kind of event, the last offset the models' latest checkpoint includes when this
    #: state was written: lessons and marks at or below it may be forgotten.
    floors: dict[str, int] = msgspec.field(default_factory=dict)

    def latest(self) -> Snapshot | None:
        """The customer's latest snapshot, or ``None`` before their first purchase."""
        return self.snapshots[-1] if self.snapshots else None

    def lesson(self, offset: int) -> PurchaseLesson | None:
        """The lesson of the purchase at ``offset``, if it is still kept (lessons are in
        offset order)."""
        return _at(self.lessons, offset)

    def snapshot(self, offset: int) -> Snapshot | None:
        """The snapshot of the purchase at ``offset``, if it is still kept (snapshots are
        in offset order).

        Examples
        --------
        >>> state = CustomerModelState(
        ...     snapshots=[Snapshot(n, 1.0 * n, n + 1, 5.0, 0.0, 0.0, 0.5) for n in (2, 5, 9)])
        >>> state.snapshot(5).orders, state.snapshot(4), state.snapshot(10)
        (6, None, None)
        """
        return _at(self.snapshots, offset)

    def applied(self, kind: str, offset: int) -> bool:
        """Whether the event of ``kind`` at ``offset`` was applied to this customer and
        not yet included in a checkpoint of the models (``purchase``, ``chat``,
        ``feedback``)."""
        if kind == PURCHASE:
            return self.lesson(offset) is not None
        return (kind, offset) in self.marks


def _at(items: list, offset: int):  # type: ignore[type-arg]
    """The item of ``items`` (sorted by ``offset``) at ``offset``, or ``None``."""
    i = bisect.bisect_left(items, offset, key=_offset)
    return items[i] if i < len(items) and items[i].offset == offset else None


def _offset(item: Snapshot | PurchaseLesson) -> int:
    return item.offset


#: The kinds of events, as a customer's model state names them.
PURCHASE, CHAT, FEEDBACK = "purchase", "chat", "feedback"


@dataclass(frozen=True)
class Retention:
    """What a customer's state may forget: lessons and marks the last checkpoint of the
    models includes (offsets at or below ``learned[kind]``), snapshots whose labels were
    all learned before its ``clock`` (days), and snapshots whose next purchase the models
    have learned (at or below ``paired``: the pair of the two is then in the due index)."""

    learned: dict[str, int] = field(default_factory=dict)
    clock: float = float("-inf")
    paired: int = -1


#: The most snapshots kept per customer (the oldest go first). A snapshot is kept until its
#: last label fell due (without a next purchase, ``max(max_periods * period_days,
#: horizon_days)`` days) or, with the default settings (a horizon no longer than the
#: periods learned), until the models have learned the customer's next purchase: the
#: worker has then written the pair of the two to the due index, which settles the
#: snapshot's labels (see :mod:`crmstream.streams.due`). A customer then keeps their
#: latest snapshot and those of the batch being applied; one who buys more than this many
#: times in one batch loses the labels of the oldest.
MAX_SNAPSHOTS = 32


def trim(
    state: CustomerModelState,
    retention: Retention,
    last_due: Callable[[Snapshot, Snapshot | None], float],
    in_order: bool = False,
) -> CustomerModelState:
    """Forget what ``retention`` allows, and the oldest snapshots beyond
    :data:`MAX_SNAPSHOTS`; the latest snapshot is always kept (it scores the customer).

    A snapshot is forgotten once the last label it teaches (``last_due(snapshot, next)``,
    given the customer's next purchase) fell due before the checkpoint's clock: a replay
    from that checkpoint never needs it again. With ``in_order`` the caller promises that
    ``last_due`` grows with the snapshots' order (see
    :attr:`~crmstream.models.propensity.PropensityModel.forgets_in_order`): the forgotten
    snapshots are then a prefix, found without looking at the rest; and a snapshot is
    also forgotten once the models have learned the customer's next purchase
    (``retention.paired``: the worker wrote the pair of the two to the due index as they
    learned it, see :mod:`crmstream.streams.due`).

    Examples
    --------
    >>> s = [Snapshot(n, 10.0 * n, n + 1, 5.0, 0.0, 0.0, 0.5) for n in range(3)]
    >>> lessons = [PurchaseLesson(n, (0, 0, 0, 0), (0, 0, 0), -1, 0) for n in range(3)]
    >>> state = CustomerModelState(snapshots=s, lessons=lessons, marks=[("chat", 4)])
    >>> ten_days = lambda s, following: s.day + 10.0
    >>> kept = trim(state, Retention({PURCHASE: 1, CHAT: 4}, 15.0), ten_days)
    >>> [x.offset for x in kept.snapshots], [x.offset for x in kept.lessons], kept.marks
    ([1, 2], [2], [])
    >>> trim(state, Retention({PURCHASE: 1, CHAT: 4}, 15.0), ten_days, in_order=True) == kept
    True
    >>> [x.offset for x in trim(state, Retention(paired=2), ten_days, True).snapshots]
    [2]
    """
    ordered = state.snapshots
    learned, paired = retention.learned, retention.paired
    if in_order:
        first = 0
        while first < len(ordered) - 1 and (
            ordered[first + 1].offset <= paired
            or last_due(ordered[first], ordered[first + 1]) < retention.clock
        ):
            first += 1
        snapshots = ordered[first:][-MAX_SNAPSHOTS:]
    else:
        snapshots = [
            s
            for s, following in itertools.pairwise(ordered)
            if last_due(s, following) >= retention.clock
        ]
        snapshots = [*snapshots, *ordered[-1:]][-MAX_SNAPSHOTS:]
    lessons = [x for x in state.lessons if x.offset > learned.get(PURCHASE, -1)]
    marks = [(k, o) for k, o in state.marks if o > learned.get(k, -1)]
    return CustomerModelState(
        snapshots=snapshots, lessons=lessons, marks=marks, floors=dict(learned)
    )


def marked(
    state: CustomerModelState, kind: str, offset: int, retention: Retention
) -> CustomerModelState:
    """``state`` with the chat or feedback at ``offset`` marked as applied (and what
    ``retention`` allows forgotten)."""
    learned = retention.learned
    marks = [(k, o) for k, o in state.marks if o > learned.get(k, -1)]
    return msgspec.structs.replace(state, marks=[*marks, (kind, offset)], floors=dict(learned))
