"""C4: generated scenarios of publishing, re-sending, processing, checkpointing, crashing
and rebalancing, checked against an in-memory model of what must have been applied.

Each scenario runs the worker's own batch path (:func:`crmstream.streams.ingest.ingest`)
against a real Redis, with an in-memory log standing in for Kafka: a crash drops the
worker's memory and redelivers from the offsets the group has committed (which the worker
clamps to its last checkpoint); a rebalance checkpoints and retires the partitions, and a
new worker takes them. Whenever the worker has caught up, every customer's profile must
count each distinct event it was sent exactly once, and the models must have learned each
distinct event exactly once. ``make chaos`` runs 200 scenarios, ``make test`` fewer.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import redis
from faust.types import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmstream.schemas import ChatMessage, Feedback, Purchase
from crmstream.streams import topics
from crmstream.streams.app import create_app
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.ingest import ingest
from crmstream.streams.settings import Settings
from tests.chaos.harness import full_runs
from tests.helpers import Discard, consumed

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

PARTITIONS = 2
START = datetime(2026, 1, 1, tzinfo=UTC)
CUSTOMERS = [f"k{n}" for n in range(6)]
KINDS = {topics.PURCHASES: "orders", topics.CHATS: "messages", topics.FEEDBACK: "feedback"}


def partition_of(customer: str) -> int:
    return zlib.crc32(customer.encode()) % PARTITIONS


class Worker:
    """One worker's memory: its runtime (stores, models) on a private event loop."""

    def __init__(self, redis_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        settings = Settings(redis_url=redis_url, partitions=PARTITIONS)
        self.app, self.runtime = create_app(settings, sink=Discard())

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.runtime.profiles.close())
        self.run(self.runtime.checkpoints.close())
        self.loop.close()


class Scenario:
    """A broker log in memory, a worker, and what it must have applied."""

    def __init__(self, url: str) -> None:
        redis.Redis.from_url(url).flushdb()
        self.url = url
        self.worker = Worker(url)
        self.log: dict[tuple[str, int], list[Message]] = defaultdict(list)
        self.position: Counter[tuple[str, int]] = Counter()  # next offset the worker reads
        self.committed: Counter[tuple[str, int]] = Counter()  # next offset after a crash
        self.sent: dict[str, tuple[str, str]] = {}  # event id -> (topic, customer)
        self.processed: set[str] = set()  # event ids the worker has applied
        self.sequence = 0

    def close(self) -> None:
        self.worker.close()

    # -- the broker ---------------------------------------------------------------------

    def _append(self, topic: str, customer: str, value: bytes) -> None:
        key = (topic, partition_of(customer))
        messages = self.log[key]
        messages.append(consumed(topic, key[1], len(messages), customer, value))

    def publish(self, n, seed):
        """``n`` events of random kinds and customers (drawn from ``seed``)."""
        rng = random.Random(seed)
        for _ in range(n):
            topic, customer = rng.choice(sorted(KINDS)), rng.choice(CUSTOMERS)
            self.sequence += 1
            occurred = START + timedelta(hours=self.sequence)
            event_id = f"e{self.sequence}"
            if topic == topics.PURCHASES:
                amount = round(rng.uniform(1.0, 500.0), 2)
                record = Purchase(
                    event_id=event_id, customer_id=customer, occurred_at=occurred, amount=amount
                )
            elif topic == topics.CHATS:
                record = ChatMessage(
                    event_id=event_id,
                    customer_id=customer,
                    occurred_at=occurred,
                    conversation_id="c",
                    sender="customer",
                    text="where is my parcel, this is awful",
                    intent="delivery",
                )
            else:
                record = Feedback(
                    event_id=event_id,
                    customer_id=customer,
                    occurred_at=occurred,
                    rating=rng.randint(1, 5),
                    text="arrived late and broken",
                )
            self.sent[event_id] = (topic, customer)
            self._append(topic, customer, msgspec.json.encode(record))

    def resend(self, pick: int):
        """A producer sends an event again: same event id, a new offset."""
        if not self.sent:
            return
        ids = sorted(self.sent)
        event_id = ids[pick % len(ids)]
        topic, customer = self.sent[event_id]
        original = next(
            m
            for m in self.log[(topic, partition_of(customer))]
            if msgspec.json.decode(m.value)["event_id"] == event_id
        )
        self._append(topic, customer, original.value)

    # -- the worker ---------------------------------------------------------------------

    def _unread(self) -> list[Message]:
        return [m for key, ms in sorted(self.log.items()) for m in ms[self.position[key] :]]

    def process(self, limit):
        """One batch: the next unread messages, in order within each partition."""
        batch = self._unread()[:limit]
        if not batch:
            return
        self.worker.run(ingest(self.worker.runtime, batch))
        for message in batch:
            self.position[(message.topic, message.partition)] = message.offset + 1
            self.processed.add(msgspec.json.decode(message.value)["event_id"])

    def checkpoint(self):
        """The checkpoint timer: models written, Kafka commits what they include."""
        self.worker.run(self.worker.runtime.replicas.checkpoint())
        for key, offset in self.worker.runtime.replicas.committable().items():
            self.committed[key] = max(self.committed[key], offset)

    def crash(self):
        """kill -9: the worker's memory is gone; Kafka redelivers from the commits."""
        self.worker.close()
        self.worker = Worker(self.url)
        self.position = Counter(self.committed)

    def redeliver(self):
        """Kafka sends again from the committed offsets to the same, living worker (a
        consumer seek, a fetch retried after a broker failover)."""
        self.position = Counter(self.committed)

    def rebalance(self):
        """The partitions move: checkpointed and retired here, restored by the next owner."""
        partitions = sorted(self.worker.runtime.replicas.partitions)
        self.worker.run(self.worker.runtime.replicas.checkpoint(partitions))
        for key, offset in self.worker.runtime.replicas.committable().items():
            self.committed[key] = max(self.committed[key], offset)
        self.worker.runtime.replicas.retire(partitions)
        self.worker.close()
        self.worker = Worker(self.url)
        self.position = Counter(self.committed)

    # -- what must hold -----------------------------------------------------------------

    def caught_up_means_exactly_once(self):
        if self._unread():
            return
        expected: Counter[tuple[str, str]] = Counter()
        for event_id in self.processed:
            expected[self.sent[event_id]] += 1
        runtime = self.worker.runtime
        profiles = self.worker.run(runtime.profiles.get_many(CUSTOMERS))
        for customer in CUSTOMERS:
            profile = profiles.get(customer)
            for topic, field in KINDS.items():
                got = getattr(profile, field) if profile is not None else 0
                assert got == expected[(topic, customer)], (customer, topic)
        # Partitions this worker has not touched yet are loaded from their checkpoints.
        self.worker.run(runtime.replicas.prepare(range(PARTITIONS)))
        learned = sum(runtime.replicas[p].learned for p in range(PARTITIONS))
        assert learned == len(self.processed)


ACTIONS = st.one_of(
    st.tuples(st.just("publish"), st.integers(1, 12), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("resend"), st.integers(0, 10**6)),
    st.tuples(st.just("process"), st.integers(1, 20)),
    st.sampled_from([("checkpoint",), ("crash",), ("redeliver",), ("rebalance",)]),
)


@pytest.fixture(scope="module")
def redis_url():
    with EmbeddedStack() as stack:
        yield stack.redis_url


@pytest.fixture(scope="module")
def tally():
    """What the generated scenarios did, printed once they have all run."""
    counts: Counter[str] = Counter()
    yield counts
    faults = ", ".join(f"{counts[k]} {k}" for k in ("crash", "redeliver", "rebalance", "resend"))
    print(
        f"\nchaos C4: {counts['scenarios']} scenarios, {counts['steps']} steps, "
        f"{counts['events']} events; faults: {faults}; checked after every step, "
        f"{counts['mismatches']} mismatches"
    )


@settings(
    max_examples=200 if full_runs() else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1), actions=st.lists(ACTIONS, min_size=10, max_size=40))
def test_c4_generated_scenarios_apply_and_learn_each_event_once(redis_url, tally, seed, actions):
    scenario = Scenario(redis_url)
    tally["scenarios"] += 1
    try:
        scenario.publish(10, seed)
        for name, *args in actions:
            getattr(scenario, name)(*args)
            tally[name] += 1
            tally["steps"] += 1
            scenario.caught_up_means_exactly_once()
        scenario.process(10**6)  # whatever is left, in one batch
        scenario.caught_up_means_exactly_once()
    except AssertionError:
        tally["mismatches"] += 1
        raise
    finally:
        tally["events"] += scenario.sequence
        scenario.close()
