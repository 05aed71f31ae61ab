"""Product recommendations learned from every purchase: co-occurrence, repeat cycles, popularity.

Two kinds of state, kept apart so each is written exactly once per purchase:

* **Per customer** (:class:`CustomerItems`, in the customer's profile): the items they
  bought, how often, first and last time, and their latest basket. It changes with the
  profile, by the same compare-and-set.
* **Shared** (:class:`ItemStats`): per item a decayed count of the baskets holding it and
  its capped list of co-bought items with decayed counts. A purchase adds a
  :class:`BasketUpdate` to it, a function of the purchase alone (its items and time), so
  applying it is the same whichever worker does it and whatever the customer's state.

Decay is *forward*: an event at time ``t`` adds ``exp((t - EPOCH) / tau)`` rather than 1,
and a reader divides by ``exp((now - EPOCH) / tau)``. Increments commute, so the shared
counts are plain sums that Redis can add atomically with no read-decay-write, and old
baskets weigh less than recent ones.

A customer's top-k (:func:`recommend`) is scored over a bounded candidate set, never all
items: the items they bought (at most ``max_items`` kept), the co-bought neighbours of
their latest basket (at most ``neighbours`` per item, ``basket_items`` items), and the
``popular`` most bought items. Scores add three parts, each in "chance of being in the
next basket" units:

* repeat: the customer's own decayed share of baskets holding the item, damped right after
  a purchase of an item they buy on a long cycle ("you buy this every ~14 days");
* co-occurrence: the mean over the latest basket's items ``x`` of ``P(item | x)`` ("bought
  with x");
* popularity: the item's decayed share of all baskets ("popular").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

#: The origin of forward decay (2000-01-01T00:00:00Z, in epoch seconds).
EPOCH = 946_684_800.0
DAY = 86_400.0


class RecommendParams(msgspec.Struct, frozen=True, kw_only=True):
    """How recommendations are learned and scored; the defaults were chosen on Complete
    Journey's first 70% (see the README, Recommendations).

    ``tau_days`` is the time constant of the shared counts' decay; ``personal_tau_days``
    of the customer's own. ``basket_items`` is how many distinct items of a basket are
    paired (the rest count for popularity only: a 100-item basket would add ~10,000
    pairs); ``cap`` how many neighbours an item keeps; ``neighbours`` how many of them
    are read per item; ``max_items`` how many items a customer's state keeps;
    ``popular`` how many popular items are candidates. ``co_weight`` and
    ``popularity_weight`` scale those parts against the repeat part.
    """

    k: int = 10
    tau_days: float = 120.0
    personal_tau_days: float = 150.0
    basket_items: int = 10
    cap: int = 200
    neighbours: int = 10
    max_items: int = 60
    popular: int = 50
    co_weight: float = 0.1
    popularity_weight: float = 0.05
    cycle_damping: float = 0.0


DEFAULT_PARAMS = RecommendParams()


def growth(at: float, tau_days: float) -> float:
    """The forward-decay weight of an event at epoch second ``at``.

    Examples
    --------
    >>> round(growth(EPOCH + 30 * DAY, 30.0), 4)   # one time constant after the origin
    2.7183
    """
    return math.exp((at - EPOCH) / (tau_days * DAY))


class ItemHistory(msgspec.Struct, array_like=True):
    """One item a customer bought: ``baskets`` holding it, ``weight`` their forward-decayed
    count (personal time constant), ``first`` and ``last`` purchase (epoch seconds)."""

    item: str
    baskets: int
    weight: float
    first: float
    last: float


class CustomerItems(msgspec.Struct, kw_only=True):
    """What recommendations keep of one customer (stored in their profile): their items,
    most recently bought first, at most ``max_items``; their latest basket; the forward-
    decayed count of their baskets."""

    items: list[ItemHistory] = msgspec.field(default_factory=list)
    last_basket: list[str] = msgspec.field(default_factory=list)
    baskets: int = 0
    weight: float = 0.0
    last: float | None = None


class Recommendation(msgspec.Struct, frozen=True):
    """One recommended item, its score and why."""

    item: str
    score: float
    reason: str


class BasketUpdate(msgspec.Struct, frozen=True):
    """What one basket adds to the shared item statistics: ``weight`` (the forward-decay
    weight of its time) to the count of each of ``items``, and to each ordered pair of
    its first ``paired`` items; a function of the basket alone."""

    items: tuple[str, ...]
    weight: float
    paired: int

    def pairs(self) -> Iterable[tuple[str, str]]:
        """The ordered pairs of paired items (``a`` was bought with ``b``)."""
        head = self.items[: self.paired]
        for a in head:
            for b in head:
                if a != b:
                    yield a, b


def distinct(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in first-seen order.

    Examples
    --------
    >>> distinct(["milk", "eggs", "milk"])
    ['milk', 'eggs']
    """
    return list(dict.fromkeys(items))


def basket_update(items: Sequence[str], at: float, params: RecommendParams) -> BasketUpdate:
    """The shared statistics' update for a basket of ``items`` bought at ``at``.

    Examples
    --------
    >>> update = basket_update(["milk", "eggs", "milk"], EPOCH, DEFAULT_PARAMS)
    >>> update.items, update.weight, sorted(update.pairs())
    (('milk', 'eggs'), 1.0, [('eggs', 'milk'), ('milk', 'eggs')])
    """
    unique = tuple(distinct(items))
    # Without co-occurrence in the scores (co_weight 0) no pairs are counted at all.
    paired = min(len(unique), params.basket_items) if params.co_weight > 0 else 0
    return BasketUpdate(unique, growth(at, params.tau_days), paired)


@dataclass
class ItemStats:
    """The shared item statistics in memory (the offline evaluation; tests). The worker
    keeps the same numbers in Redis (:mod:`crmstream.streams.items`).

    Examples
    --------
    >>> stats = ItemStats()
    >>> stats.learn(basket_update(["milk", "eggs"], EPOCH, DEFAULT_PARAMS))
    >>> stats.learn(basket_update(["milk", "bread"], EPOCH, DEFAULT_PARAMS))
    >>> stats.count["milk"], stats.top_neighbours("milk", 5)
    (2.0, [('bread', 1.0), ('eggs', 1.0)])
    """

    params: RecommendParams = DEFAULT_PARAMS
    count: dict[str, float] = field(default_factory=dict)
    total: float = 0.0
    neighbours: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The ``params.popular`` heaviest items: counts only grow, so an item enters when it
    #: passes the lightest of them (``_floor`` is a lower bound of that lightest count).
    _best: dict[str, float] = field(default_factory=dict)
    _floor: float = 0.0

    def learn(self, update: BasketUpdate) -> None:
        """Add one basket."""
        w = update.weight
        self.total += w
        count = self.count
        best = self._best
        size = self.params.popular
        for item in update.items:
            value = count[item] = count.get(item, 0.0) + w
            if item in best or len(best) < size:
                best[item] = value
            elif value > self._floor:
                lightest = min(best, key=best.__getitem__)
                if value > best[lightest]:
                    del best[lightest]
                    best[item] = value
                self._floor = min(best.values())
        head = update.items[: update.paired]
        cap = self.params.cap
        for a in head:
            row = self.neighbours.get(a)
            if row is None:
                row = self.neighbours[a] = {}
            for b in head:
                if a != b:
                    row[b] = row.get(b, 0.0) + w
            if len(row) > cap + cap // 2:  # as Redis trims: keep the ``cap`` heaviest
                kept = heapq.nlargest(cap, row.items(), key=lambda kv: kv[1])
                self.neighbours[a] = dict(kept)

    def top_neighbours(self, item: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` items most often bought with ``item``, heaviest first (ties by name)."""
        row = self.neighbours.get(item)
        if not row:
            return []
        return sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def popular(self, n: int) -> list[tuple[str, float]]:
        """The ``n`` (at most ``params.popular``) most bought items, heaviest first."""
        return sorted(self._best.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def view(self, items: Iterable[str], params: RecommendParams) -> ItemView:
        """What :func:`recommend` reads of the statistics for a basket of ``items``."""
        items = list(items)
        return ItemView(
            total=self.total,
            popular=self.popular(params.popular),
            count={x: self.count.get(x, 0.0) for x in items},
            neighbours={x: self.top_neighbours(x, params.neighbours) for x in items},
        )


class ItemView(msgspec.Struct, frozen=True):
    """The part of the shared statistics one customer's scoring reads: the total basket
    weight, the most popular items, and for each item of the latest basket its count and
    top neighbours (all forward-decayed, not yet divided by the decay at ``now``)."""

    total: float = 0.0
    popular: list[tuple[str, float]] = msgspec.field(default_factory=list)
    count: dict[str, float] = msgspec.field(default_factory=dict)
    neighbours: dict[str, list[tuple[str, float]]] = msgspec.field(default_factory=dict)


EMPTY_VIEW = ItemView()


def remember(
    state: CustomerItems, items: Sequence[str], at: float, params: RecommendParams
) -> CustomerItems:
    """The customer's item state after a basket of ``items`` at ``at`` (a new value).

    Examples
    --------
    >>> state = remember(CustomerItems(), ["milk", "eggs"], EPOCH, DEFAULT_PARAMS)
    >>> state = remember(state, ["milk"], EPOCH + 7 * DAY, DEFAULT_PARAMS)
    >>> [(x.item, x.baskets) for x in state.items], state.last_basket, state.baskets
    ([('milk', 2), ('eggs', 1)], ['milk'], 2)
    """
    unique = distinct(items)
    w = growth(at, params.personal_tau_days)
    known = {x.item: x for x in state.items}
    bought = []
    for item in unique:
        old = known.pop(item, None)
        if old is None:
            bought.append(ItemHistory(item, 1, w, at, at))
        else:
            bought.append(
                ItemHistory(item, old.baskets + 1, old.weight + w, old.first, max(old.last, at))
            )
    # Keep the heaviest: an item bought often lately outweighs one bought once long ago.
    kept = sorted([*bought, *known.values()], key=lambda x: -x.weight)[: params.max_items]
    return CustomerItems(
        items=kept,
        last_basket=unique[: params.basket_items] if unique else state.last_basket,
        baskets=state.baskets + 1,
        weight=state.weight + w,
        last=at if state.last is None else max(state.last, at),
    )


def cycle_days(history: ItemHistory) -> float | None:
    """The customer's mean days between purchases of an item, once bought twice.

    Examples
    --------
    >>> cycle_days(ItemHistory("milk", 3, 3.0, EPOCH, EPOCH + 28 * DAY))
    14.0
    >>> cycle_days(ItemHistory("tv", 1, 1.0, EPOCH, EPOCH)) is None
    True
    """
    if history.baskets < 2 or history.last <= history.first:
        return None
    return (history.last - history.first) / DAY / (history.baskets - 1)


def recommend(
    state: CustomerItems,
    view: ItemView,
    now: float,
    params: RecommendParams = DEFAULT_PARAMS,
    k: int | None = None,
) -> list[Recommendation]:
    """The customer's top-``k`` items at ``now`` (epoch seconds), best first.

    Examples
    --------
    >>> stats = ItemStats()
    >>> for basket in (["chips", "salsa"], ["chips", "salsa"], ["chips", "beer"], ["milk"]):
    ...     stats.learn(basket_update(basket, EPOCH, DEFAULT_PARAMS))
    >>> new = CustomerItems()                                      # cold start: popular
    >>> [r.item for r in recommend(new, stats.view([], DEFAULT_PARAMS), EPOCH, k=2)]
    ['chips', 'salsa']
    >>> state = remember(new, ["chips"], EPOCH, DEFAULT_PARAMS)
    >>> top = recommend(state, stats.view(["chips"], DEFAULT_PARAMS), EPOCH + DAY, k=2)
    >>> [(r.item, r.reason) for r in top]
    [('chips', 'you bought this before'), ('salsa', 'bought with chips')]
    """
    k = params.k if k is None else k
    if k <= 0:
        return []
    # Every part is a ratio of two counts decayed alike, so the decay to ``now`` cancels;
    # ``now`` matters for the repeat cycles only.
    #
    # Per candidate: its score, and its best part as ``(value, kind, detail)`` (the first
    # of equal parts wins); only the top ``k`` get their reason formatted (``_reason``).
    scores: dict[str, float] = {}
    reasons: dict[str, tuple[float, int, Any]] = {}
    score_of = scores.get
    reason_of = reasons.get
    if view.total > 0:
        weight = params.popularity_weight / view.total
        for item, count in view.popular:
            value = weight * count
            scores[item] = score_of(item, 0.0) + value
            best = reason_of(item)
            if best is None or value > best[0]:
                reasons[item] = (value, _POPULAR, None)
    if state.weight > 0:
        norm = state.weight
        damping = params.cycle_damping
        for history in state.items:
            item = history.item
            value = history.weight / norm
            if history.baskets >= 2 and history.last > history.first:  # see cycle_days
                cycle = (history.last - history.first) / DAY / (history.baskets - 1)
                since = (now - history.last) / DAY
                if since < cycle:  # bought recently on a long cycle: not due yet
                    value *= 1.0 - damping * (1.0 - since / cycle)
                part: tuple[float, int, Any] = (value, _CYCLE, cycle)
            else:
                part = (value, _BEFORE, None)
            scores[item] = score_of(item, 0.0) + value
            best = reason_of(item)
            if best is None or value > best[0]:
                reasons[item] = part
    counts = view.count
    basket = [x for x in state.last_basket if counts.get(x, 0.0) > 0]
    if basket:
        weight = params.co_weight / len(basket)
        neighbours = view.neighbours
        for source in basket:
            per = weight / counts[source]
            for item, together in neighbours.get(source, ()):
                value = per * together
                scores[item] = score_of(item, 0.0) + value
                best = reason_of(item)
                if best is None or value > best[0]:
                    reasons[item] = (value, _WITH, source)
    if not scores:
        return []
    # The best k by (-score, item): every item scoring at least the k-th highest score,
    # sorted (cheaper than a keyed heap over all candidates).
    floor = heapq.nlargest(k, scores.values())[-1]
    top = sorted([(-score, item) for item, score in scores.items() if score >= floor])[:k]
    return [
        Recommendation(item, round(-negative, 6), _reason(reasons[item])) for negative, item in top
    ]


_POPULAR, _CYCLE, _BEFORE, _WITH = range(4)


def _reason(part: tuple[float, int, Any]) -> str:
    """The text of a candidate's best part (see :func:`recommend`)."""
    _, kind, detail = part
    if kind == _CYCLE:
        return f"you buy this every ~{max(round(detail), 1)} days"
    if kind == _WITH:
        return f"bought with {detail}"
    return "popular" if kind == _POPULAR else "you bought this before"
