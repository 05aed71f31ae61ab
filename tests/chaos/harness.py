"""Fault-injection runs against real workers, a real broker and a real Redis.

A :class:`ChaosRun` publishes a mixed stream (purchases, chats, rated feedback, a share
re-sent) in chunks while it kills workers with SIGKILL, restarts them, scales the group
out and in, or restarts Redis; then it waits until the workers have committed every
offset and checks what they left behind against what the stream says must be there:

* every customer's ``orders``, ``revenue``, ``messages`` and ``feedback`` equal their
  distinct input (nothing lost, nothing applied twice);
* every tier change a clean fold of the purchases causes is on ``crm.tier-changes``, and
  nothing else; each customer's chain of changes is consistent (each starts where the
  previous ended, and the last ends at the profile's tier);
* every alert that does not depend on learned models (``low_rating`` for each rating of
  2 or less, ``churn_intent`` for each chat a keyword rule reads as cancelling) and every
  trigger of the run's two rules (:data:`RULES`: one per large purchase, one per customer
  whose first purchase is over 50) is on its topic, and no trigger that should not be;
* an output id (tier change, alert, trigger) seen twice carries the same content both times;
* the models learned each distinct event once (the checkpoints' ``learned`` counts).

The figures of a run (events, faults, lost, double-applied, duplicate outputs, recovery
time) are printed, whatever the verdict.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crmstream.models.profile import Profile, apply_purchase
from crmstream.schemas import ChatMessage, Feedback, Purchase, deterministic_id
from crmstream.streams import topics
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.settings import Settings
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import (
    WorkerProcess,
    committed_total,
    learned_total,
    load_profiles,
    read_topic,
)

GROUP = "crmstream"
PRAISE = ["Lovely coffee, arrived fast and tastes great", "Great service, thank you so much"]
COMPLAINTS = ["The parcel arrived broken and nobody answers", "Terrible quality, I am very upset"]
CANCELS = ["Please cancel my subscription, I am done"]
#: The marketing rules every run loads: their triggers depend on each purchase and on the
#: customer's purchases before it, never on learned models, so the harness can predict them.
RULES = """
rules:
  - id: large-purchase
    on: [purchase]
    when: event.amount > 60.0
    emit:
      amount: "{{ event.amount }}"
  - id: first-purchase-over-50
    on: [purchase]
    when: before.orders == 0 && event.amount > 50.0
    emit:
      campaign: welcome
    once_per: customer
"""

Event = Purchase | ChatMessage | Feedback


def full_runs() -> bool:
    """Whether the full fault schedules run (``make chaos``) rather than reduced ones."""
    return os.environ.get("CRM_CHAOS_FULL") == "1"


def make_stream(
    events: int, customers: int, seed: int = 5, resent: float = 0.03
) -> list[tuple[str, Event]]:
    """A mixed stream of ``(topic, record)``: 60% purchases, 25% chats, 15% feedback,
    event time three hours apart up to 2026-01-01 (never in the future: workers refuse
    events dated beyond ``CRM_MAX_FUTURE``), and a ``resent`` share of records sent again
    later."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(minutes=180 * events)
    stream: list[tuple[str, Event]] = []
    for i in range(events):
        customer = f"cust-{rng.randrange(customers):04d}"
        at = start + timedelta(minutes=180 * i)
        roll = rng.random()
        if roll < 0.6:
            amount = round(rng.lognormvariate(3.3, 0.8), 2)
            purchase = Purchase(
                event_id=f"buy-{i}", customer_id=customer, occurred_at=at, amount=amount
            )
            stream.append((topics.PURCHASES, purchase))
        elif roll < 0.85:
            happy = rng.random() < 0.7
            chat = ChatMessage(
                event_id=f"chat-{i}",
                customer_id=customer,
                occurred_at=at,
                conversation_id=f"conv-{customer}",
                sender="customer",
                text=rng.choice(PRAISE if happy else COMPLAINTS + CANCELS),
                intent=None if happy else "complaint",
            )
            stream.append((topics.CHATS, chat))
        else:
            rating = rng.choice([1, 2, 4, 5])
            feedback = Feedback(
                event_id=f"fb-{i}",
                customer_id=customer,
                occurred_at=at,
                rating=rating,
                text=rng.choice(PRAISE if rating > 3 else COMPLAINTS),
            )
            stream.append((topics.FEEDBACK, feedback))
    for _ in range(int(events * resent)):
        index = rng.randrange(len(stream))
        stream.insert(rng.randrange(index + 1, len(stream) + 1), stream[index])
    return stream


def chunks(stream: list, n: int) -> list[list]:
    """``stream`` cut into ``n`` consecutive pieces (the last may be shorter)."""
    size = -(-len(stream) // n)
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@dataclass
class Expected:
    """What a stream must leave behind, from a clean fold of its distinct events."""

    events: int
    per_topic: Counter[str]
    counts: Counter[tuple[str, str]]
    revenue: dict[str, float]
    tier_changes: dict[str, tuple[str, str, str]]  # change id -> (customer, from, to)
    tiers: dict[str, str]
    alerts: set[str]  # ids of the alerts that do not depend on learned models
    triggers: set[str]


def expected(stream: list[tuple[str, Event]]) -> Expected:
    """Distinct events per customer and the tier changes their purchases cause."""
    policies = Settings().policies()
    seen: set[str] = set()
    counts: Counter[tuple[str, str]] = Counter()
    profiles: dict[str, Profile] = {}
    changes: dict[str, tuple[str, str, str]] = {}
    alerts: set[str] = set()
    triggers: set[str] = set()
    for topic, record in stream:
        if record.event_id in seen:
            continue
        seen.add(record.event_id)
        customer = record.customer_id
        counts[(topic, customer)] += 1
        if isinstance(record, Purchase):
            before = profiles.get(customer, Profile(customer_id=customer))
            after, change = apply_purchase(before, record, policies.tiers)
            profiles[customer] = after
            if change is not None:
                changes[change.change_id] = (change.customer_id, change.from_tier, change.to_tier)
            if record.amount > 60.0:
                key = ("large-purchase", customer, record.event_id)
                triggers.add(deterministic_id("trigger", *key))
            if before.orders == 0 and record.amount > 50.0:
                key = ("first-purchase-over-50", customer, "ever")
                triggers.add(deterministic_id("trigger", *key))
        elif isinstance(record, Feedback) and record.rating is not None and record.rating <= 2:
            alerts.add(deterministic_id("low_rating", record.event_id))
        elif isinstance(record, ChatMessage) and record.text in CANCELS:
            alerts.add(deterministic_id("churn_intent", record.event_id))
    return Expected(
        events=len(seen),
        per_topic=Counter(topic for topic, _ in stream),
        counts=counts,
        revenue={c: p.revenue for c, p in profiles.items()},
        tier_changes=changes,
        tiers={c: p.tier for c, p in profiles.items()},
        alerts=alerts,
        triggers=triggers,
    )


@dataclass
class Figures:
    """What a run did and found."""

    events: int = 0
    published: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    double_applied: int = 0
    duplicate_outputs: int = 0
    conflicting_outputs: int = 0
    missing_outputs: int = 0
    unexpected_outputs: int = 0
    broken_chains: int = 0
    learned: int = 0
    alerts: int = 0
    triggers: int = 0
    recovery_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        faults = ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items())) or "none"
        return (
            f"{self.events} distinct events ({self.published} published); faults: {faults}; "
            f"lost {self.lost}, double-applied {self.double_applied}, duplicate outputs "
            f"{self.duplicate_outputs} (conflicting {self.conflicting_outputs}), missing "
            f"{self.missing_outputs}, unexpected {self.unexpected_outputs}, broken chains "
            f"{self.broken_chains}; {self.alerts} alerts, {self.triggers} triggers; models "
            f"learned {self.learned}; caught up "
            f"{self.recovery_seconds:.1f} s after the last fault"
        )


class ChaosRun:
    """Workers against ``stack``, with faults injected between chunks of a stream."""

    def __init__(
        self,
        stack: EmbeddedStack,
        logs: Path,
        partitions: int,
        seed: int = 7,
        **settings: str,
    ) -> None:
        self.stack = stack
        self.logs = logs
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.env = {
            **stack.env(),
            "CRM_PARTITIONS": str(partitions),
            "CRM_SESSION_TIMEOUT": "6",
            "CRM_CHECKPOINT_INTERVAL": "1",
            "CRM_BATCH_SIZE": "100",
            "CRM_RULES_FILE": str(self._rules_file(logs)),
            **{f"CRM_{k.upper()}": v for k, v in settings.items()},
        }
        self.workers: list[WorkerProcess] = []
        self.stopped: list[WorkerProcess] = []
        self.figures = Figures()
        self.last_fault = time.monotonic()
        self.bootstrap = [stack.kafka_url.removeprefix("kafka://")]

    @staticmethod
    def _rules_file(logs: Path) -> Path:
        path = logs / "rules.yaml"
        path.write_text(RULES)
        return path

    # -- workers and faults -------------------------------------------------------------

    def start_worker(self) -> WorkerProcess:
        n = len(self.workers) + len(self.stopped)
        worker = WorkerProcess(self.env, self.logs / f"worker-{n}.log")
        self.workers.append(worker)
        return worker

    def kill_one(self) -> None:
        """SIGKILL a random worker and start another in its place."""
        victim = self.rng.choice(self.workers)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        victim.stop()
        self.workers.remove(victim)
        self.stopped.append(victim)
        self.start_worker()
        self._fault("kill -9")

    def scale_to(self, n: int) -> None:
        """Start or gracefully stop workers until ``n`` run."""
        while len(self.workers) < n:
            self.start_worker()
            self._fault("scale-out")
        while len(self.workers) > n:
            # A graceful stop of a worker that has joined (one still starting may be ended
            # by the signal before it can handle it; kill_one covers abrupt ends).
            deadline = time.monotonic() + 60
            while not (ready := [w for w in self.workers if "assigned: crm." in w.log()]):
                if time.monotonic() > deadline:
                    raise AssertionError("no worker joined the group within 60 s")
                time.sleep(0.3)
            worker = ready[0]
            self.workers.remove(worker)
            code = worker.stop()
            if code != 0:
                self.figures.problems.append(f"a worker stopped with {code}: {worker.log_path}")
            self.stopped.append(worker)
            self._fault("scale-in")

    def restart_store(self) -> None:
        """Stop Redis gracefully (its AOF is flushed) and start it again on its port."""
        self.stack.restart_store()
        self._fault("redis restart")

    def _fault(self, kind: str) -> None:
        self.figures.faults[kind] += 1
        self.last_fault = time.monotonic()

    def stop_all(self) -> None:
        for worker in self.workers:
            code = worker.stop()
            if code != 0:
                self.figures.problems.append(f"a worker stopped with {code}: {worker.log_path}")
        self.stopped.extend(self.workers)
        self.workers.clear()

    # -- the run ------------------------------------------------------------------------

    def publish(self, records: list[tuple[str, Event]]) -> None:
        with Publisher(self.bootstrap) as publisher:
            for topic, record in records:
                publisher.publish(topic, record)
            publisher.flush()
        self.figures.published += len(records)

    def catch_up(self, per_topic: Counter[str], timeout: float) -> None:
        """Fail unless the group commits every offset of ``per_topic`` within ``timeout``."""
        assert self.wait_committed(per_topic, timeout), (
            f"the workers fell behind: {self.committed()} of {self.figures.published} committed"
        )

    def committed(self) -> int:
        """Offsets the group has committed on the input topics."""
        return sum(committed_total(self.bootstrap, GROUP, topic) for topic in topics.INPUTS)

    def wait_progress(self, share: float = 0.5, timeout: float = 30.0) -> None:
        """Wait until the group has committed ``share`` of what was published (so that a
        fault strikes workers in the middle of their work, not while they start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.committed() < share * self.figures.published:
            time.sleep(0.3)

    def wait_committed(self, per_topic: Counter[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                committed_total(self.bootstrap, GROUP, topic) >= n for topic, n in per_topic.items()
            ):
                self.figures.recovery_seconds = time.monotonic() - self.last_fault
                return True
            time.sleep(0.5)
        return False

    # -- the verdict --------------------------------------------------------------------

    def check(self, want: Expected) -> Figures:
        """Compare what the workers left behind with ``want``; fill in the figures."""
        figures = self.figures
        figures.events = want.events
        customers = sorted({customer for _, customer in want.counts})
        stored = load_profiles(self.stack.redis_url, customers)
        for customer in customers:
            profile = stored.get(customer, Profile(customer_id=customer))
            for topic, got in (
                (topics.PURCHASES, profile.orders),
                (topics.CHATS, profile.messages),
                (topics.FEEDBACK, profile.feedback),
            ):
                wanted = want.counts[(topic, customer)]
                figures.lost += max(wanted - got, 0)
                figures.double_applied += max(got - wanted, 0)
            if abs(profile.revenue - want.revenue.get(customer, 0.0)) > 1e-6 * (
                1 + profile.revenue
            ):
                figures.problems.append(
                    f"{customer}: revenue {profile.revenue} != {want.revenue.get(customer)}"
                )
            if profile.tier != want.tiers.get(customer, "bronze"):
                figures.problems.append(f"{customer}: tier {profile.tier}")
        changes = self._outputs(topics.TIER_CHANGES, "change_id")
        alerts = self._outputs(topics.ALERTS, "alert_id")
        triggers = self._outputs(topics.TRIGGERS, "trigger_id")
        # Alerts of the other kinds depend on learned models: only their duplicates count.
        predictable = {"low_rating", "churn_intent"}
        alerted = {i for i, alert in alerts.items() if alert["kind"] in predictable}
        figures.missing_outputs = (
            len(want.tier_changes.keys() - changes.keys())
            + len(want.alerts - alerted)
            + len(want.triggers - triggers.keys())
        )
        figures.unexpected_outputs = (
            len(changes.keys() - want.tier_changes.keys())
            + len(alerted - want.alerts)
            + len(triggers.keys() - want.triggers)
        )
        figures.alerts, figures.triggers = len(alerts), len(triggers)
        chains: dict[str, list[dict]] = defaultdict(list)
        for change in changes.values():
            chains[change["customer_id"]].append(change)
        for customer, chain in chains.items():
            chain.sort(key=lambda c: c["occurred_at"])
            tier = "bronze"
            for change in chain:
                if change["from_tier"] != tier:
                    figures.broken_chains += 1
                    break
                tier = change["to_tier"]
            else:
                if tier != want.tiers.get(customer):
                    figures.broken_chains += 1
        figures.learned = learned_total(self.stack.redis_url, self.partitions)
        print(f"\nchaos: {figures.line()}")
        return figures

    def _outputs(self, topic: str, id_field: str) -> dict[str, dict]:
        first: dict[str, dict] = {}
        for record in read_topic(self.bootstrap, topic):
            value = json.loads(record.value)
            kept = first.setdefault(value[id_field], value)
            if kept is not value:
                self.figures.duplicate_outputs += 1
                if kept != value:
                    self.figures.conflicting_outputs += 1
        return first
