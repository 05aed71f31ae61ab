"""The checks behind the README's model figures that the evaluation commands do not print.

* ``preq``: the propensity hazard's prequential log loss over the CDNOW replay (every
  period label predicted just before it is learned), on all labels and on those learned
  up to 1997-06-30, for the model as it is and the variants the README reports: without
  the lapsed statistic, the statistic with other day offsets ``α``, per-weight (AdaGrad)
  learning rates, and the learning schedule that criterion prefers. ``--halves`` gives
  the same on each half of the customers.
* ``grid``: the grid of ``crmstream evaluate propensity --grid`` on the whole history and
  each half for the two learners of ``preq`` that the README reports as left out.
* ``bootstrap``: paired bootstrap standard errors (300 resamples of the split's
  customers) of the online model's margin: AUC against the logistic regression on the
  early grid splits, top-decile capture against BG/NBD x Gamma-Gamma on the six value
  splits; on the whole history and on each half.
* ``value``: the value model's variants on the six value splits, whole history and halves:
  top-decile capture and Spearman against BG/NBD x Gamma-Gamma, and the aggregate error.
* ``disagreement``: on 1998-03-31, 90 days, the customers in the online model's top decile
  and not in BG/NBD x Gamma-Gamma's (and the other way round), and what they did.
* ``rate``: the stream's own criteria for a recency-weighted purchase rate: after each
  purchase whose next ``H`` days have passed and hold at least one more purchase, the
  expected count given at least one against the count (squared error per purchase and
  per customer, zero-truncated Poisson log-likelihood), for ``τ`` from 60 days to none.
* ``spend``: the spend prior on the stream: each repeat order predicted before it is seen,
  by pseudo-orders, its calibration, and the empirical-Bayes shrinkage.

    python bench/model_checks.py --what preq,grid,bootstrap,value,disagreement,rate,spend

About a minute for ``preq`` (three minutes with ``--halves``), seven for ``grid``, four for
``bootstrap``, three for ``value`` and ten seconds each for ``rate`` and ``spend`` on this
2-core machine.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from crmstream.models.propensity import (
    AveragedLogisticRegression,
    PeriodHazard,
    PurchasePropensity,
    to_days,
)
from crmstream.models.value import ValueModel
from crmstream.streams.evaluation import value as value_evaluation
from crmstream.streams.evaluation.propensity import (
    _baselines,
    _midnight,
    purchase_features,
    split_purchases,
    training_data,
    training_days,
)
from crmstream.streams.evaluation.value import top_decile_capture, value_metrics
from crmstream.streams.tools.backfill import event_order, load_cdnow

VALUE_SPLITS = (
    (date(1997, 6, 30), 365),
    (date(1997, 9, 30), 273),
    (date(1997, 9, 30), 90),
    (date(1997, 12, 31), 180),
    (date(1997, 12, 31), 90),
    (date(1998, 3, 31), 90),
)
EARLY_CELLS = (
    *((date(1997, 4, 30), h) for h in (90, 180, 273, 365)),
    (date(1997, 5, 31), 90),
    (date(1997, 6, 30), 180),
)
EARLY_END = to_days(datetime(1997, 7, 1, tzinfo=UTC))


def frames(halves: bool = True) -> Iterator[tuple[str, pd.DataFrame]]:
    frame, _ = load_cdnow(None)
    yield "whole", frame
    if halves:
        number = frame["customer_id"].astype(str).str.extract(r"(\d+)$")[0].astype(int)
        yield "even ids", frame[number % 2 == 0]
        yield "odd ids", frame[number % 2 == 1]


def purchases(frame: pd.DataFrame) -> list[tuple[str, datetime, float]]:
    ordered = event_order(frame)
    return list(
        zip(
            ordered["customer_id"].astype(str).tolist(),
            ordered["occurred_at"].dt.to_pydatetime().tolist(),
            ordered["amount"].astype(float).tolist(),
            strict=True,
        )
    )


# -- preq: the hazard's prequential log loss ---------------------------------------------


class WithoutLapsed(PeriodHazard):
    def _transform(self, x, period):
        features = super()._transform(x, period)
        del features["lapsed"]
        return features


def lapsed_offset(alpha: float) -> type[PeriodHazard]:
    class Offset(PeriodHazard):
        def _transform(self, x, period):
            features = super()._transform(x, period)
            n = max(self._feature(x, "orders", 1.0), 1.0)
            tenure, t = self._feature(x, "tenure"), self._feature(x, "t")
            ratio = math.log((alpha + tenure + t) / (alpha + tenure))
            features["lapsed"] = (n - 1.0) * ratio / 10
            return features

    return Offset


class AdaGradRegression(AveragedLogisticRegression):
    """Per-weight steps ``1 / sqrt(sum of squared gradients)``, averaged as the model is."""

    def __init__(self, step: float = 1.0) -> None:
        super().__init__()
        self.step = step
        self._squares: dict[str, float] = {}
        self._intercept_squares = 0.0

    def learn_one(self, x, y):
        weights, squares = self.weights, self._squares
        z = self.intercept + sum(weights.get(k, 0.0) * v for k, v in x.items())
        error = self._sigmoid(z) - float(y)
        for name, value in x.items():
            gradient = error * value
            squares[name] = squares.get(name, 0.0) + gradient * gradient
            weights[name] = weights.get(name, 0.0) - self.step * gradient / math.sqrt(
                1e-8 + squares[name]
            )
        self._intercept_squares += error * error
        self.intercept -= self.step * error / math.sqrt(1e-8 + self._intercept_squares)
        self.n += 1
        keep, average = self.averaging, self._average
        for name, weight in weights.items():
            average[name] = keep * average.get(name, 0.0) + (1.0 - keep) * weight
        self._average_intercept = keep * self._average_intercept + (1.0 - keep) * self.intercept
        self._kept *= keep


class Scored(PurchasePropensity):
    """The propensity model, adding up the log loss of every label before learning it."""

    def __init__(self, hazard: type[PeriodHazard] = PeriodHazard, regression=None) -> None:
        super().__init__(horizon_days=90)
        self.hazard = hazard(self.period_days, self.max_periods, self.learning_rate)
        if regression is not None:
            self.hazard.regression = regression()
        self.loss = {"all": [0.0, 0], "early": [0.0, 0]}

    def _learn(self, x, y):
        p = min(max(self.hazard.predict_proba_one(x)[True], 1e-15), 1 - 1e-15)
        loss = -math.log(p if y else 1.0 - p)
        for part in ("all", "early") if self.clock < EARLY_END else ("all",):
            self.loss[part][0] += loss
            self.loss[part][1] += 1
        super()._learn(x, y)


PREQ_VARIANTS: dict[str, Callable[[], Scored]] = {
    "as is (lapsed statistic, α = 1 day)": Scored,
    "without the lapsed statistic": lambda: Scored(WithoutLapsed),
    **{f"α = {a:g} days": (lambda a=a: Scored(lapsed_offset(a))) for a in (3, 10, 30, 100)},
    "AdaGrad, step 1": lambda: Scored(regression=AdaGradRegression),
    "initial rate 0.25, 5,000-update average": lambda: Scored(
        regression=lambda: AveragedLogisticRegression(initial_rate=0.25, averaging=0.9998)
    ),
}


def preq(halves: bool) -> None:
    print("| data | variant | log loss, all labels | log loss, labels to 1997-06-30 |")
    print("|---|---|---|---|")
    for name, frame in frames(halves):
        rows = purchases(frame)
        for variant, make in PREQ_VARIANTS.items():
            model = make()
            for row in rows:
                model.learn_purchase(*row)
            (total, n), (early, m) = model.loss["all"], model.loss["early"]
            print(f"| {name} | {variant} | {total / n:.5f} ({n}) | {early / m:.5f} ({m}) |")


GRID_VARIANTS = {
    "AdaGrad, step 1": PREQ_VARIANTS["AdaGrad, step 1"],
    "initial rate 0.25, 5,000-update average": PREQ_VARIANTS[
        "initial rate 0.25, 5,000-update average"
    ],
}


def grid() -> None:
    from crmstream.streams.evaluation.propensity_grid import evaluate_grid, summary

    print("| data | variant | online >= LR | mean margin | worst margin (split) |")
    print("|---|---|---|---|---|")
    for name, frame in frames():
        for variant, make in GRID_VARIANTS.items():
            facts = summary(evaluate_grid(frame, model=make))
            print(
                f"| {name} | {variant} | {facts['online_at_least_lr']} of {facts['splits']} | "
                f"{facts['mean_margin']:+.4f} | {facts['worst_margin']:+.4f} "
                f"({facts['worst_split']}) |"
            )


# -- bootstrap ------------------------------------------------------------------------------


def paired_se(n: int, statistic: Callable[[np.ndarray], float], seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return float(np.std([statistic(rng.integers(0, n, n)) for _ in range(300)]))


def bootstrap() -> None:
    from sklearn.metrics import roc_auc_score

    print("| data | split | online − logistic regression AUC | standard error |")
    print("|---|---|---|---|")
    for name, frame in frames():
        frame = frame.assign(occurred_at=pd.to_datetime(frame["occurred_at"], utc=True))
        first = frame["occurred_at"].min().date()
        rows, times = purchases(frame), event_order(frame)["occurred_at"]
        online, fed = PurchasePropensity(), 0
        for end in sorted({e for e, _ in EARLY_CELLS}):
            cutoff = _midnight(end + timedelta(days=1))
            stop = int(times.searchsorted(cutoff))
            for row in rows[fed:stop]:
                online.learn_purchase(*row)
            fed, now = stop, to_days(cutoff.to_pydatetime())
            online.advance(now)
            calibration = frame[frame["occurred_at"] < cutoff]
            features = purchase_features(calibration, cutoff)
            histories = [online.snapshots[str(c)][-1].history for c in features.index]
            for horizon in (h for e, h in EARLY_CELLS if e == end):
                window = (frame["occurred_at"] >= cutoff) & (
                    frame["occurred_at"] < cutoff + pd.Timedelta(days=horizon)
                )
                buyers = pd.Index(frame.loc[window, "customer_id"].unique())
                truth = features.index.isin(buyers).astype(int)
                scores = np.array([online.predict_history(h, now, horizon) for h in histories])
                cut = cutoff - pd.Timedelta(days=training_days(first, end, horizon))
                train_x, train_y = training_data(calibration, cut, cutoff)
                regression = _baselines()["logistic_regression"]
                regression.fit(train_x.to_numpy(), train_y.to_numpy())
                batch = regression.predict_proba(features.to_numpy())[:, 1]

                def margin(i, truth=truth, scores=scores, batch=batch):
                    return roc_auc_score(truth[i], scores[i]) - roc_auc_score(truth[i], batch[i])

                se = paired_se(len(truth), margin)
                everyone = np.arange(len(truth))
                print(f"| {name} | {end}, {horizon} days | {margin(everyone):+.4f} | {se:.4f} |")
    print()
    print("| data | split | online − BG/NBD×GG top-decile capture | standard error |")
    print("|---|---|---|---|")
    for name, frame in frames():
        for end, horizon in VALUE_SPLITS:
            evaluation = value_evaluation.evaluate_value(frame, end, horizon)
            actual = evaluation.actual
            online = evaluation.predictions["online"]
            classic = evaluation.predictions["bgnbd_gamma_gamma"]

            def margin(i, actual=actual, online=online, classic=classic):
                return top_decile_capture(actual[i], online[i]) - top_decile_capture(
                    actual[i], classic[i]
                )

            se = paired_se(len(actual), margin)
            everyone = np.arange(len(actual))
            print(f"| {name} | {end}, {horizon} days | {margin(everyone):+.4f} | {se:.4f} |")


# -- value variants ---------------------------------------------------------------------------


def online_state(calibration: pd.DataFrame, customers: np.ndarray, cutoff, horizon: int):
    """The online models' view of every customer at the cutoff, as ``evaluate value``'s
    online model has it, plus each customer's purchase days (for a recency-weighted rate)."""
    # The hazard does not depend on the model's horizon; 90 days, the worker's default,
    # makes each snapshot's score the one a worker keeps.
    propensity, value = PurchasePropensity(horizon_days=90), ValueModel(horizon)
    days: dict[str, list[float]] = defaultdict(list)
    for customer_id, at, amount in purchases(calibration):
        propensity.learn_purchase(customer_id, at, amount)
        latest = propensity.snapshots[customer_id][-1]
        value.learn(latest.orders, latest.revenue, latest.first, latest.day)
        days[customer_id].append(latest.day)
    now = to_days(cutoff.to_pydatetime())
    propensity.advance(now)
    columns = defaultdict(list)
    for customer in customers:
        latest = propensity.snapshots[str(customer)][-1]
        history = latest.history
        columns["orders"].append(history.orders)
        columns["revenue"].append(history.revenue)
        columns["first"].append(history.first)
        columns["last"].append(history.last)
        columns["p"].append(propensity.predict_history(history, now, horizon))
        columns["score"].append(latest.score)  # the 90-day score at the last purchase
    state = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    state.update(now=now, horizon=horizon, mean_order=value.mean_order, mean_gap=value.mean_gap)
    state["days"] = [days[str(c)] for c in customers]
    return state


def predicted(s, k=1.5, r0=1.0, q=None, tau=None):
    """Expected revenue: the value model's formula, with the variant's part changed."""
    if tau is None:
        repeats, exposure = s["orders"] - 1, s["now"] - s["first"]
    else:
        repeats = np.array([np.exp(-(s["now"] - np.asarray(d[1:])) / tau).sum() for d in s["days"]])
        exposure = tau * -np.expm1(-(s["now"] - s["first"]) / tau)
    rate = (repeats + r0) / (exposure + r0 * s["mean_gap"])
    expected = rate * s["horizon"]
    if q == "hazard":  # the chance of staying after a purchase, read from the hazard's score
        at_last = (s["orders"] - 1 + r0) / (s["last"] - s["first"] + r0 * s["mean_gap"])
        q = np.minimum(s["score"] / -np.expm1(-at_last * 90.0), 1.0)
    if q is not None:
        stays = np.maximum(1.0 - q, 1e-9)
        expected = -np.expm1(-expected * stays) / stays
    given_one = expected / -np.expm1(-rate * s["horizon"])
    spend = (s["revenue"] + k * s["mean_order"]) / (s["orders"] + k)
    return s["p"] * given_one * spend


VALUE_VARIANTS = {
    "as is": {},
    "dropout q from the hazard": {"q": "hazard"},
    **{f"dropout q = {q}": {"q": q} for q in (0.9, 0.8, 0.7, 0.6)},
    **{f"{k} pseudo-orders": {"k": k} for k in (0.5, 3.0, 6.0)},
    **{f"rate prior {r} pseudo-repeats": {"r0": r} for r in (0.25, 4.0)},
    **{f"recency-weighted rate, τ = {t} days": {"tau": float(t)} for t in (90, 180, 365)},
}


def value() -> None:
    print(
        "| data | variant | Spearman wins | top-decile wins | Spearman margins "
        "| top-decile margins | aggregate errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, frame in frames():
        results = defaultdict(list)
        for end, horizon in VALUE_SPLITS:
            calibration, holdout, _, _, cutoff, _ = split_purchases(frame, end, horizon)
            customers = purchase_features(calibration, cutoff).index.to_numpy()
            actual = (
                holdout.groupby("customer_id")["amount"]
                .sum()
                .reindex(customers, fill_value=0.0)
                .to_numpy(dtype=float)
            )
            classic = value_metrics(
                actual,
                value_evaluation._bgnbd_gamma_gamma(calibration, customers, cutoff, horizon),
            )
            state = online_state(calibration, customers, cutoff, horizon)
            for variant, options in VALUE_VARIANTS.items():
                m = value_metrics(actual, predicted(state, **options))
                results[variant].append(
                    (
                        m["spearman"] - classic["spearman"],
                        m["top_decile_capture"] - classic["top_decile_capture"],
                        m["aggregate_error"],
                    )
                )
        for variant, rows in results.items():
            print(
                f"| {name} | {variant} | {sum(r[0] > 0 for r in rows)} of 6 | "
                f"{sum(r[1] > 0 for r in rows)} of 6 | "
                f"{' '.join(f'{r[0]:+.4f}' for r in rows)} | "
                f"{' '.join(f'{r[1]:+.4f}' for r in rows)} | "
                f"{' '.join(f'{r[2]:+.2f}' for r in rows)} |"
            )


def disagreement(end: date = date(1998, 3, 31), horizon: int = 90) -> None:
    """Who is in the online model's top decile and not in BG/NBD x Gamma-Gamma's on one
    split, and what they did in the holdout against what the online model expected."""
    frame, _ = load_cdnow(None)
    calibration, holdout, _, _, cutoff, _ = split_purchases(frame, end, horizon)
    customers = purchase_features(calibration, cutoff).index.to_numpy()
    held = holdout.groupby("customer_id")
    actual = held["amount"].sum().reindex(customers, fill_value=0.0).to_numpy(dtype=float)
    bought = held.size().reindex(customers, fill_value=0).to_numpy()
    classic = value_evaluation._bgnbd_gamma_gamma(calibration, customers, cutoff, horizon)
    s = online_state(calibration, customers, cutoff, horizon)
    online = predicted(s)
    rate = (s["orders"] - 1 + 1.0) / (s["now"] - s["first"] + s["mean_gap"])
    given_one = rate * horizon / -np.expm1(-rate * horizon)
    spend = (s["revenue"] + 1.5 * s["mean_order"]) / (s["orders"] + 1.5)
    silence = s["now"] - s["last"]
    top = math.ceil(len(customers) / 10)
    ours = set(np.argsort(-online, kind="stable")[:top])
    theirs = set(np.argsort(-classic, kind="stable")[:top])
    groups = {
        "online's top decile only": np.array(sorted(ours - theirs)),
        "BG/NBD's top decile only": np.array(sorted(theirs - ours)),
        "8+ purchases, silent 150+ days": np.flatnonzero((s["orders"] >= 8) & (silence >= 150)),
    }
    print(f"{end}, {horizon} days")
    print(
        "| group | customers | purchases | silence, days | chance predicted | bought "
        "| purchases if bought: expected / made | spend per order: expected / made |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, i in groups.items():
        buyers = i[actual[i] > 0]
        print(
            f"| {name} | {len(i)} | {s['orders'][i].mean():.1f} | {silence[i].mean():.0f} | "
            f"{s['p'][i].mean():.3f} | {(actual[i] > 0).mean():.3f} | "
            f"{given_one[buyers].mean():.2f} / {bought[buyers].mean():.2f} | "
            f"{spend[buyers].mean():.1f} / {actual[buyers].sum() / bought[buyers].sum():.1f} |"
        )


# -- rate: the stream's criteria for a recency-weighted rate ---------------------------------


def rate() -> None:
    from scipy.special import gammaln

    frame, _ = load_cdnow(None)
    rows = purchases(frame)
    by_customer: dict[str, list[float]] = defaultdict(list)
    for customer_id, at, _ in rows:
        by_customer[customer_id].append(to_days(at))
    end = max(to_days(at) for _, at, _ in rows)
    # The partition's mean gap as the value model learns it, at each purchase.
    seen: dict[str, list[float]] = defaultdict(list)
    mean_gaps, mean_gap, repeats = [], 0.0, 0
    for customer_id, at, _ in rows:
        days = seen[customer_id]
        days.append(to_days(at))
        if len(days) > 1 and days[-1] > days[0]:
            repeats += 1
            mean_gap += ((days[-1] - days[0]) / (len(days) - 1) - mean_gap) / repeats
        mean_gaps.append(mean_gap if repeats else 30.0)
    taus = (60.0, 90.0, 120.0, 180.0, 240.0, 365.0, 730.0, math.inf)
    print("| H | τ | squared error per purchase | per customer | truncated Poisson log loss |")
    print("|---|---|---|---|---|")
    for horizon in (90, 180, 365):
        squared, weighted, loss = defaultdict(float), defaultdict(float), defaultdict(float)
        count, weights = 0, 0.0
        position: dict[str, int] = defaultdict(int)
        for (customer_id, _, _), gap in zip(rows, mean_gaps, strict=True):
            days = by_customer[customer_id]
            j = position[customer_id]
            position[customer_id] += 1
            day = days[j]
            if day + horizon > end:
                continue
            bought = sum(1 for d in days[j + 1 :] if d < day + horizon)
            if not bought:
                continue
            count += 1
            weight = 1.0 / len(days)
            weights += weight
            past = np.asarray(days[1 : j + 1])
            for tau in taus:
                if math.isinf(tau):
                    number, exposure = float(j), day - days[0]
                else:
                    number = float(np.exp(-(day - past) / tau).sum())
                    exposure = tau * -math.expm1(-(day - days[0]) / tau)
                lam_h = (number + 1.0) / (exposure + gap) * horizon
                at_least_one = -math.expm1(-lam_h)
                error = (lam_h / at_least_one - bought) ** 2
                squared[tau] += error
                weighted[tau] += weight * error
                loss[tau] -= (
                    bought * math.log(lam_h) - lam_h - gammaln(bought + 1) - math.log(at_least_one)
                )
        for tau in taus:
            print(
                f"| {horizon} | {tau:g} | {math.sqrt(squared[tau] / count):.4f} | "
                f"{math.sqrt(weighted[tau] / weights):.4f} | {loss[tau] / count:.4f} |"
            )


# -- spend: the spend prior on the stream -------------------------------------------------------


def spend() -> None:
    """Each repeat order predicted from the customer's previous ones, shrunk to the
    partition's running mean order by ``k`` pseudo-orders; calibration of ``k = 1.5`` by
    tenth of the prediction and by days since the previous order; the empirical-Bayes
    shrinkage (within-customer over between-customer variance)."""
    frame, _ = load_cdnow(None)
    f = event_order(frame).reset_index(drop=True)
    by = f.groupby("customer_id")
    before = by.cumcount()
    revenue_before = by["amount"].cumsum() - f["amount"]
    mean_after = (revenue_before + f["amount"]) / (before + 1)
    population = mean_after.expanding().mean().shift(1)  # the value model's running mean
    repeat = before > 0
    amount, n, spent, prior = (
        f["amount"][repeat],
        before[repeat],
        revenue_before[repeat],
        population[repeat],
    )
    print("| pseudo-orders | RMSE of the next order value |")
    print("|---|---|")
    for k in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0):
        error = (spent + k * prior) / (n + k) - amount
        print(f"| {k:g} | {math.sqrt((error**2).mean()):.3f} |")
    predicted_value = (spent + 1.5 * prior) / (n + 1.5)
    tenth = pd.qcut(predicted_value, 10, labels=False)
    table = pd.DataFrame({"predicted": predicted_value, "actual": amount, "tenth": tenth})
    print(table.groupby("tenth")[["predicted", "actual"]].mean().round(1).to_string())
    gap = (f["occurred_at"] - by["occurred_at"].shift(1)).dt.days[repeat]
    table["gap"] = pd.cut(gap, [-1, 7, 30, 60, 120, 240, 600])
    print(table.groupby("gap", observed=True)[["predicted", "actual"]].mean().round(1).to_string())
    within = ((amount - spent / n) ** 2 / (1 + 1 / n)).mean()
    for name, spread in (("first orders", f["amount"][~repeat].var()), ("all", f["amount"].var())):
        shrinkage = within / (spread - within)
        print(f"empirical Bayes, spread from {name}: {shrinkage:.2f} pseudo-orders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="preq,grid,bootstrap,value,disagreement,rate,spend")
    parser.add_argument("--halves", action="store_true", help="preq on each half too")
    options = parser.parse_args()
    chosen = options.what.split(",")
    checks = {
        "preq": lambda: preq(options.halves),
        "grid": grid,
        "bootstrap": bootstrap,
        "value": value,
        "rate": rate,
        "spend": spend,
        "disagreement": disagreement,
    }
    for name, check in checks.items():  # in this order, whatever the order asked
        if name in chosen:
            check()


if __name__ == "__main__":
    main()
