"""``crmstream rules backtest``: what a rule file would have fired on real purchase history.

The history (CDNOW, or a CSV export read as ``crmstream backfill`` reads it) is replayed
in event-time order through the worker's own fold, offline: each purchase goes through
:class:`~crmstream.models.offline.OfflinePartition` (``apply_event`` with the rules, then
the purchase models learn), with no broker and no Redis. Marketing sees, per rule, how
often it would have fired (per ISO week), for how many distinct customers, the first
examples, and for a rule with a ``holdout`` the uplift between treated and holdout
customers (:func:`uplift`).

Rules that read only the event, the profile's counters and the windowed traits fire
exactly as a worker fires them on the same events (a test checks it). Rules that read
model scores (``purchase_propensity``, ``segment``, ``last_purchase_anomaly``) may differ
a little: a worker scores a batch with the models as they were before that batch, and
has one set of models per partition.

On history, nobody acted on a trigger: the uplift of a backtest is an A/A comparison of
two random groups, and its confidence interval should include zero. It shows how large
an effect the rule's traffic could detect.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crmstream.models.events import Policies
from crmstream.models.offline import OfflinePartition
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.rules import RuleSet
from crmstream.schemas.inputs import Purchase
from crmstream.schemas.outputs import Trigger

#: Days after a customer's first trigger over which ``rules report`` and the backtest
#: measure purchases (the default of ``--days``).
UPLIFT_DAYS = 30
#: Examples kept per rule.
EXAMPLES = 3
#: z of a two-sided 95% confidence interval.
Z95 = 1.959964


def week(at: datetime) -> str:
    """The ISO week of an instant, ``YYYY-Www``.

    >>> from datetime import timezone
    >>> week(datetime(1997, 1, 1, tzinfo=timezone.utc))
    '1997-W01'
    """
    year, number, _ = at.isocalendar()
    return f"{year}-W{number:02d}"


@dataclass
class RuleResult:
    """What one rule did in a backtest."""

    fires: int = 0
    customers: set[str] = field(default_factory=set)
    per_week: Counter[str] = field(default_factory=Counter)
    examples: list[Trigger] = field(default_factory=list)
    holdout_fires: int = 0
    #: Each customer's first trigger: when, and whether they were in the holdout.
    first: dict[str, tuple[datetime, bool]] = field(default_factory=dict)


@dataclass
class Backtest:
    """The result of :func:`backtest`."""

    events: int
    rules: dict[str, RuleResult]
    holdouts: dict[str, float]
    triggers: list[Trigger]
    first_at: datetime | None
    last_at: datetime | None
    customers: int
    uplift: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"events": N, "rules": {"<id>": {"fires": N, "customers": N, "per_week":
        {...}, ...}}}``; the listed keys are stable, the others may grow."""
        rules: dict[str, Any] = {}
        for rule_id, result in self.rules.items():
            entry: dict[str, Any] = {
                "fires": result.fires,
                "customers": len(result.customers),
                "per_week": dict(sorted(result.per_week.items())),
                "holdout_fires": result.holdout_fires,
                "examples": [_example(t) for t in result.examples],
            }
            if rule_id in self.uplift:
                entry["uplift"] = self.uplift[rule_id]
            rules[rule_id] = entry
        return {
            "events": self.events,
            "customers": self.customers,
            "first_at": self.first_at.isoformat() if self.first_at else None,
            "last_at": self.last_at.isoformat() if self.last_at else None,
            "rules": rules,
        }


def _example(trigger: Trigger) -> dict[str, Any]:
    return {
        "customer_id": trigger.customer_id,
        "occurred_at": trigger.occurred_at.isoformat(),
        "event_id": trigger.event_id,
        "attributes": trigger.attributes,
        "holdout": trigger.holdout,
    }


def backtest(
    rules: RuleSet,
    purchases: Iterable[Purchase],
    policies: Policies,
    models: PurchaseModels,
    days: int = UPLIFT_DAYS,
) -> Backtest:
    """Replay ``purchases`` (in event-time order) through the fold with ``rules``.

    ``policies`` are the tier, alert and currency policies (their ``rules`` are replaced
    by ``rules``); ``models`` fresh purchase models; ``days`` the uplift window.
    """
    partition = OfflinePartition(models, Policies(*_policy_parts(policies), rules))
    results = {rule.id: RuleResult() for rule in rules.rules}
    history: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    fired: list[Trigger] = []
    events = 0
    first_at = last_at = None
    for purchase in purchases:
        amount = policies.currencies.to_base(purchase.amount, purchase.currency)
        for output in partition.apply(purchase, events):
            if not isinstance(output, Trigger):
                continue
            fired.append(output)
            result = results[output.rule]
            result.fires += 1
            result.customers.add(output.customer_id)
            result.per_week[week(output.occurred_at)] += 1
            result.holdout_fires += output.holdout
            if len(result.examples) < EXAMPLES:
                result.examples.append(output)
            result.first.setdefault(output.customer_id, (output.occurred_at, output.holdout))
        history[purchase.customer_id].append((purchase.occurred_at, amount))
        events += 1
        first_at = purchase.occurred_at if first_at is None else first_at
        last_at = purchase.occurred_at
    result = Backtest(
        events=events,
        rules=results,
        holdouts={rule.id: rule.holdout for rule in rules.rules},
        triggers=fired,
        first_at=first_at,
        last_at=last_at,
        customers=len(history),
    )
    if last_at is not None:
        for rule in rules.rules:
            if rule.holdout > 0:
                result.uplift[rule.id] = uplift(
                    results[rule.id].first, history, timedelta(days=days), last_at
                )
    return result


def _policy_parts(policies: Policies) -> tuple[Any, Any, Any]:
    return policies.tiers, policies.alerts, policies.currencies


def uplift(
    first: dict[str, tuple[datetime, bool]],
    history: dict[str, list[tuple[datetime, float]]],
    window: timedelta,
    end: datetime,
) -> dict[str, Any]:
    """Treated against holdout customers over ``window`` after their first trigger.

    ``first`` maps each triggered customer to (first trigger time, in holdout);
    ``history`` maps customers to their purchases (time, amount). A customer whose window
    ends after ``end`` (the end of the data) is left out. For each group: customers,
    purchase rate (share who bought at least once in the window, after the trigger's
    own event) and revenue per customer; then the difference treated − holdout with a 95%
    normal-approximation confidence interval.

    Examples
    --------
    >>> from datetime import timezone
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> first = {"a": (t, False), "b": (t, False), "c": (t, True), "d": (t, True)}
    >>> history = {"a": [(t, 5.0), (t + timedelta(days=3), 10.0)], "c": [(t, 5.0)]}
    >>> result = uplift(first, history, timedelta(days=30), t + timedelta(days=60))
    >>> result["treated"]["purchase_rate"], result["holdout"]["purchase_rate"]
    (0.5, 0.0)
    >>> result["purchase_rate"]["difference"], result["revenue_per_customer"]["difference"]
    (0.5, 5.0)
    """
    groups: dict[bool, list[tuple[int, float]]] = {False: [], True: []}
    for customer, (at, held) in first.items():
        if at + window > end:
            continue
        spent = [a for when, a in history.get(customer, ()) if at < when <= at + window]
        groups[held].append((int(bool(spent)), float(sum(spent))))
    out: dict[str, Any] = {"days": window.days}
    for name, held in (("treated", False), ("holdout", True)):
        rows = groups[held]
        out[name] = {
            "customers": len(rows),
            "purchase_rate": _mean([r[0] for r in rows]),
            "revenue_per_customer": _mean([r[1] for r in rows]),
        }
    for metric, index in (("purchase_rate", 0), ("revenue_per_customer", 1)):
        treated = [r[index] for r in groups[False]]
        held = [r[index] for r in groups[True]]
        out[metric] = _difference(treated, held)
    return out


def live_report(
    triggers: Iterable[Trigger],
    purchases: Iterable[tuple[str, datetime, float]],
    days: int = UPLIFT_DAYS,
) -> dict[str, Any]:
    """``crmstream rules report``: per rule, triggers, customers and holdout triggers, and
    treated against holdout customers over ``days`` after their first trigger
    (:func:`uplift`), from the triggers published and the purchases (customer, time,
    amount in the base currency) seen. Triggers are de-duplicated on ``trigger_id``.

    >>> from datetime import timezone
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> fired = [Trigger(trigger_id=f"x{i}", rule="r", customer_id=f"c{i}", occurred_at=t,
    ...                  event_id=f"e{i}", holdout=i % 2 == 0) for i in range(4)]
    >>> bought = [("c1", t + timedelta(days=2), 10.0), ("c9", t + timedelta(days=90), 1.0)]
    >>> report = live_report(fired + fired[:1], bought)
    >>> report["events"], report["rules"]["r"]["fires"], report["rules"]["r"]["holdout_fires"]
    (2, 4, 2)
    >>> report["rules"]["r"]["uplift"]["treated"]["purchase_rate"]
    0.5
    """
    history: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    end: datetime | None = None
    events = 0
    for customer, at, amount in purchases:
        history[customer].append((at, amount))
        end = at if end is None or at > end else end
        events += 1
    seen: set[str] = set()
    rules: dict[str, RuleResult] = defaultdict(RuleResult)
    for trigger in sorted(triggers, key=lambda t: t.occurred_at):
        if trigger.trigger_id in seen:
            continue
        seen.add(trigger.trigger_id)
        result = rules[trigger.rule]
        result.fires += 1
        result.customers.add(trigger.customer_id)
        result.per_week[week(trigger.occurred_at)] += 1
        result.holdout_fires += trigger.holdout
        result.first.setdefault(trigger.customer_id, (trigger.occurred_at, trigger.holdout))
    out: dict[str, Any] = {"events": events, "days": days, "rules": {}}
    for rule_id, result in sorted(rules.items()):
        entry: dict[str, Any] = {
            "fires": result.fires,
            "customers": len(result.customers),
            "holdout_fires": result.holdout_fires,
            "per_week": dict(sorted(result.per_week.items())),
        }
        if end is not None:
            entry["uplift"] = uplift(result.first, history, timedelta(days=days), end)
        out["rules"][rule_id] = entry
    return out


def render_report(report: dict[str, Any]) -> str:
    """The text of ``crmstream rules report``."""
    lines = [
        f"{report['events']:,} purchases; per rule, the {report['days']} days after each "
        "customer's first trigger (customers whose window is not over yet are left out)",
        "",
    ]
    for rule_id, entry in report["rules"].items():
        lines.append(
            f"{rule_id}: {entry['fires']:,} triggers, {entry['customers']:,} customers, "
            f"{entry['holdout_fires']:,} in the holdout"
        )
        stats = entry.get("uplift")
        if not stats:
            continue
        lines.extend(_uplift_lines(stats))
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _variance(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return sum((v - mean) ** 2 for v in values) / (n - 1)


def _difference(treated: Sequence[float], held: Sequence[float]) -> dict[str, float | None]:
    if not treated or not held:
        return {"difference": None, "ci_low": None, "ci_high": None}
    difference = sum(treated) / len(treated) - sum(held) / len(held)
    error = math.sqrt(_variance(treated) / len(treated) + _variance(held) / len(held))
    return {
        "difference": difference,
        "ci_low": difference - Z95 * error if len(treated) > 1 and len(held) > 1 else None,
        "ci_high": difference + Z95 * error if len(treated) > 1 and len(held) > 1 else None,
    }


def render(result: Backtest, title: str) -> str:
    """The backtest as a text report."""
    lines = [title]
    span = (
        f"{result.first_at:%Y-%m-%d} .. {result.last_at:%Y-%m-%d}"
        if result.first_at and result.last_at
        else "-"
    )
    lines.append(f"{result.events:,} purchases of {result.customers:,} customers, {span}")
    lines.append("")
    header = (
        f"{'rule':32} {'fires':>7} {'customers':>9} {'weeks':>6} {'max/week':>8} {'holdout':>8}"
    )
    lines.append(header)
    for rule_id, rule in result.rules.items():
        busiest = max(rule.per_week.values(), default=0)
        held = f"{rule.holdout_fires}" if result.holdouts.get(rule_id) else "-"
        lines.append(
            f"{rule_id:32} {rule.fires:>7,} {len(rule.customers):>9,} "
            f"{len(rule.per_week):>6} {busiest:>8,} {held:>8}"
        )
    for rule_id, rule in result.rules.items():
        if not rule.examples:
            continue
        lines.append("")
        lines.append(f"{rule_id}: first examples")
        for t in rule.examples:
            attributes = json.dumps(t.attributes, sort_keys=True)
            holdout = " (holdout)" if t.holdout else ""
            lines.append(
                f"  {t.occurred_at:%Y-%m-%d} {t.customer_id} {t.event_id} {attributes}{holdout}"
            )
    for rule_id, stats in result.uplift.items():
        lines.append("")
        lines.append(
            f"{rule_id}: treated vs holdout, {stats['days']} days after the first trigger "
            "(history: nobody acted, so this is an A/A check)"
        )
        lines.extend(_uplift_lines(stats))
    return "\n".join(lines)


def _uplift_lines(stats: dict[str, Any]) -> list[str]:
    """Treated against holdout, one line per metric, with the uplift's interval."""
    return [
        f"  {metric:22} treated {_fmt(stats['treated'][metric])} "
        f"(n={stats['treated']['customers']}), holdout {_fmt(stats['holdout'][metric])} "
        f"(n={stats['holdout']['customers']}), uplift {_interval(stats[metric])}"
        for metric in ("purchase_rate", "revenue_per_customer")
    ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(d: dict[str, float | None]) -> str:
    if d["difference"] is None:
        return "-"
    if d["ci_low"] is None or d["ci_high"] is None:
        return f"{d['difference']:+.3f}"
    return f"{d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def write_json(result: Backtest, path: Path | None = None) -> str:
    """The ``--json`` document (one JSON object), also written to ``path`` if given."""
    text = json.dumps(result.to_json(), sort_keys=False)
    if path is not None:
        path.write_text(text + "\n")
    return text
