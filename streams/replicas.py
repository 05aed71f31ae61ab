"""Each partition's shared models: learned once per event, checkpointed on an interval.

Every customer's events are on one partition number of each input topic (the topics are
keyed by ``customer_id`` and have the same partition count), so the models of partition
``p`` learn from ``crm.purchases``, ``crm.chats`` and ``crm.feedback`` partition ``p`` and
follow those partitions from worker to worker, as the profiles do. The worker that owns
them holds one :class:`Replica` per partition, loaded once from its checkpoint.

How no event is learned twice and none is skipped
-------------------------------------------------
* A replica records, per input partition, the last offset it has learned. The models
  learn an event only if its offset is newer, in offset order.
* What an event teaches is a function of the event and of what was stored with the
  customer when it was applied (a purchase's :class:`~crmstream.models.customer_state.
  PurchaseLesson` and propensity snapshot), never of the customer's state at learning
  time; a chat or feedback teaches from its own text and label. So an event learned late,
  in a replay, teaches exactly what it taught the first time.
* Checkpoints (the pickled models with the offsets they include, HMAC-signed, see
  :mod:`crmstream.streams.checkpoints`) are written every ``CRM_CHECKPOINT_INTERVAL``
  seconds, when partitions are revoked, and on shutdown; never per batch.
* The worker commits to Kafka only offsets that a checkpoint includes (the transport
  clamps every commit, see :mod:`crmstream.streams.transport`). After a crash the
  partition's next owner restores the checkpoint and Kafka redelivers everything after
  it: the profile guard skips what was already applied (no output is sent twice) while
  the models learn what they lack, from the lessons stored with the customers. Replay
  after a crash is bounded by the checkpoint interval.
* A partition revoked from this worker is checkpointed and then retired: it is never
  written again by this worker, so it cannot overwrite its new owner's checkpoints.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crmstream.models.conversations import ConversationModels
from crmstream.models.customer_state import CHAT, FEEDBACK, PURCHASE, CustomerModelState, Retention
from crmstream.models.profile import Profile
from crmstream.models.propensity import (
    Arrival,
    Due,
    PropensityModel,
    Snapshot,
    learn_purchases,
    snapshot_before,
    to_days,
)
from crmstream.models.purchase_models import PurchaseModels
from crmstream.schemas import ChatMessage, Feedback, Purchase
from crmstream.streams import topics
from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.due import DueIndex, Pair, member
from crmstream.streams.metrics import Stages
from crmstream.streams.profiles import ApplyResult, Delivery

log = logging.getLogger(__name__)


@dataclass
class PartitionModels:
    """The shared models of one partition."""

    purchases: PurchaseModels
    conversations: ConversationModels


ModelFactory = Callable[[], PartitionModels]

#: The kind of event of each input topic, as customers' model state names them.
KINDS = {topics.PURCHASES: PURCHASE, topics.CHATS: CHAT, topics.FEEDBACK: FEEDBACK}


def source(topic: str, partition: int) -> str:
    """The key of an input partition in a replica's offsets, ``topic:partition``."""
    return f"{topic}:{partition}"


@dataclass
class Replica:
    """The models of one partition and what they have learned."""

    partition: int
    models: PartitionModels
    #: Last offset learned, per input partition (``topic:partition``).
    offsets: dict[str, int] = field(default_factory=dict)
    learned: int = 0
    #: What the last checkpoint includes (what Kafka may commit, what customers may forget).
    checkpointed: dict[str, int] = field(default_factory=dict)
    checkpointed_clock: float = float("-inf")
    dirty: bool = False
    retired: bool = False

    def should_learn(self, delivery: Delivery[Any]) -> bool:
        """Whether ``delivery`` is new to these models."""
        return delivery.offset > self.offsets.get(delivery.source, -1)

    def retention(self) -> Retention:
        """What the customers of this partition may forget of their model state: what the
        checkpoint includes, and the snapshots of which the models have written pairs to
        the due index: those followed by a purchase they learned, in memory or before the
        checkpoint they were restored from (the pair is in Redis before the offset moves,
        and a replay after a crash reads it there)."""
        learned = {
            kind: self.checkpointed.get(source(topic, self.partition), -1)
            for topic, kind in KINDS.items()
        }
        paired = self.offsets.get(source(topics.PURCHASES, self.partition), -1)
        return Retention(learned, self.checkpointed_clock, paired)

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds."""
        return {"models": self.models, "offsets": dict(self.offsets), "learned": self.learned}

    @classmethod
    def restore(cls, partition: int, state: dict[str, Any]) -> Replica:
        offsets = dict(state["offsets"])
        models: PartitionModels = state["models"]
        return cls(
            partition,
            models,
            offsets,
            state["learned"],
            checkpointed=dict(offsets),
            checkpointed_clock=models.purchases.propensity.clock,
        )


class Replicas:
    """The replicas this worker owns: loaded once, taught each event once, checkpointed."""

    def __init__(
        self,
        store: CheckpointStore,
        due: Callable[[], DueIndex],
        factory: ModelFactory,
        model_states: Callable[[Iterable[str]], Awaitable[dict[str, CustomerModelState]]],
    ):
        self.store = store
        self._due = due
        self._model_states = model_states
        self.factory = factory
        self._replicas: dict[int, Replica] = {}
        self._lock = asyncio.Lock()
        #: One checkpoint at a time: a later one must never be overwritten by an earlier.
        self._checkpointing = asyncio.Lock()
        #: Held by the worker while a batch's events are learned and its items counted,
        #: which run at once: a checkpoint pickles a replica only between two batches, so
        #: Kafka never commits an event whose items are not counted yet.
        self.learning = asyncio.Lock()

    def __getitem__(self, partition: int) -> Replica:
        """A replica already loaded with :meth:`prepare`."""
        return self._replicas[partition]

    def __contains__(self, partition: int) -> bool:
        return partition in self._replicas

    @property
    def partitions(self) -> list[int]:
        return sorted(self._replicas)

    async def prepare(self, partitions: Iterable[int]) -> None:
        """Make sure the replicas of ``partitions`` are in memory, each loaded once from
        its checkpoint. A retired replica stays as it is (it still scores events of its
        partition that were in flight when it was revoked, and learns nothing more)
        until :meth:`assigned` says the partition is this worker's again."""
        async with self._lock:
            missing = sorted(p for p in set(partitions) if p not in self._replicas)
            if not missing:
                return
            states = await self.store.load(missing)
            for partition in missing:
                state = states.get(partition)
                if state is None:
                    replica = Replica(partition, self.factory())
                else:
                    replica = Replica.restore(partition, state)
                    log.info(
                        "restored the models of partition %d (%d events learned)",
                        partition,
                        replica.learned,
                    )
                self._replicas[partition] = replica

    async def learn(self, result: ApplyResult, stages: Stages | None = None) -> int:
        """Teach the replicas every event of ``result`` they have not learned, in offset
        order per input partition; returns how many events were new to them."""
        stages = stages or Stages()
        fresh: dict[int, list[Delivery[Any]]] = defaultdict(list)
        for delivery in result.learnable:
            kind = KINDS.get(delivery.topic)
            if kind is None:
                continue  # crm.customers: who a customer is teaches the models nothing
            replica = self._replicas.get(delivery.partition)
            if replica is None or replica.retired:
                continue  # revoked meanwhile: the new owner replays it from the checkpoint
            if not replica.should_learn(delivery):
                continue
            profile = result.states.get(delivery.customer_id)
            if profile is None or not profile.model_state.applied(kind, delivery.offset):
                continue  # a re-sent copy, never applied: it teaches nothing
            fresh[delivery.partition].append(delivery)
        if not fresh:
            return 0
        arrivals = {p: self._arrivals(ds, result.states) for p, ds in fresh.items()}
        states = result.states
        due, pairs = await self._find_due(arrivals, states)
        # A label of a snapshot with a stored pair needs nothing of its customer.
        customers = {
            d.customer_id
            for items in due.values()
            for d in items
            if member(d.customer_id, d.offset) not in pairs
        }
        others = await self._model_states(customers - states.keys())
        paired: dict[str, list[Snapshot]] = defaultdict(list)
        for name, pair in pairs.items():
            paired[name.rpartition("|")[0]].extend(pair)
        merged: dict[str, Sequence[Snapshot]] = {}

        def snapshots_of(customer_id: str) -> Sequence[Snapshot]:
            # The batch's own customers as just written, the others as stored, with the
            # snapshots of the pairs found.
            found = merged.get(customer_id)
            if found is not None:
                return found
            profile = states.get(customer_id)
            if profile is not None:
                found = profile.model_state.snapshots
            else:
                other = others.get(customer_id)
                found = other.snapshots if other is not None else ()
            extra = paired.get(customer_id)
            if extra:
                by_offset = {s.offset: s for s in extra}
                by_offset.update((s.offset, s) for s in found)
                found = sorted(by_offset.values(), key=lambda s: s.offset)
            merged[customer_id] = found
            return found

        taught = 0
        for partition, deliveries in fresh.items():
            replica = self._replicas.get(partition)
            if replica is None or replica.retired:
                continue
            taught += self._teach(
                replica,
                deliveries,
                arrivals[partition],
                due[partition],
                states,
                snapshots_of,
                stages,
            )
        return taught

    def passed(self, messages: Iterable[Any]) -> None:
        """Record that the worker is done with ``messages`` (any input message, valid or
        not): an offset the models have not learned and that teaches nothing (a dead
        letter, a re-sent copy) may still be committed once a checkpoint includes it."""
        for message in messages:
            replica = self._replicas.get(message.partition)
            if replica is None or replica.retired:
                continue
            name = source(message.topic, message.partition)
            if message.offset > replica.offsets.get(name, -1):
                replica.offsets[name] = message.offset
                replica.dirty = True

    @staticmethod
    def _arrivals(
        deliveries: list[Delivery[Any]], states: dict[str, Profile]
    ) -> list[tuple[Arrival, Delivery[Purchase]]]:
        out = []
        for delivery in deliveries:
            if not isinstance(delivery.record, Purchase):
                continue
            profile = states.get(delivery.customer_id)
            snapshot = profile.model_state.snapshot(delivery.offset) if profile else None
            day = to_days(delivery.record.occurred_at)
            out.append((Arrival(delivery.customer_id, delivery.offset, day, snapshot), delivery))
        return out

    async def _find_due(
        self,
        arrivals: dict[int, list[tuple[Arrival, Delivery[Purchase]]]],
        states: dict[str, Profile],
    ) -> tuple[dict[int, list[Due]], dict[str, Pair]]:
        """Per partition, the labels of earlier snapshots falling due during the batch's
        purchases, and the pairs found for them (see :mod:`crmstream.streams.due`)."""
        added: dict[int, list[tuple[str, int, float]]] = {}
        pairs: dict[int, list[tuple[str, Pair, float]]] = {}
        ranges = {}
        for partition, items in arrivals.items():
            if not items:
                continue
            model = self._replicas[partition].models.purchases.propensity
            added[partition] = [
                (a.customer_id, a.offset, a.snapshot.day) for a, _ in items if a.snapshot
            ]
            pairs[partition] = self._pairs(model, [a for a, _ in items], states)
            upto = model.watermark(max(a.day for a, _ in items))
            if upto > model.clock:
                ranges[partition] = (model, model.clock, upto)
        if not added:
            return defaultdict(list), {}
        found = await self._due().add_and_find(added, ranges, pairs)
        out: dict[int, list[Due]] = defaultdict(list)
        pairs_found = found.pairs
        for partition, items in found.due.items():
            first = min(a.offset for a, _ in arrivals[partition])
            teaches = ranges[partition][0].teaches
            kept = out[partition]
            for d in items:
                # Snapshots of this run's own purchases (and of later ones, during a
                # replay) are scheduled by the run itself.
                if d.offset >= first:
                    continue
                # A label settled with the customer's next purchase known (it arrived
                # before this run) that would teach nothing is not scheduled at all:
                # most labels of frequent buyers, once the stream is older than the periods.
                pair = pairs_found.get(member(d.customer_id, d.offset))
                if (
                    pair is not None
                    and pair[1].offset < first
                    and not teaches(d.period, pair[1].day - pair[0].day)
                ):
                    continue
                kept.append(d)
        return out, pairs_found

    @staticmethod
    def _pairs(
        model: PropensityModel, arrivals: list[Arrival], states: dict[str, Profile]
    ) -> list[tuple[str, Pair, float]]:
        """For each of ``arrivals`` that follows a snapshot of its customer, the pair of
        that snapshot and the arrival's own, with the earlier one's last due (see
        :mod:`crmstream.streams.due`). Only when a customer's snapshots are forgotten
        oldest first: the one kept just before a purchase's own is then the one before it
        (otherwise the customers keep their snapshots, and the pairs are not needed)."""
        pairs: list[tuple[str, Pair, float]] = []
        if not model.forgets_in_order:
            return pairs
        for arrival in arrivals:
            profile = states.get(arrival.customer_id)
            if arrival.snapshot is None or profile is None:
                continue
            # The arrival's own snapshot is in this state (see _arrivals).
            previous = snapshot_before(profile.model_state.snapshots, arrival.offset)
            if previous is not None:
                last = model.last_due(previous, arrival.snapshot)
                pairs.append((arrival.customer_id, (previous, arrival.snapshot), last))
        return pairs

    @staticmethod
    def _teach(
        replica: Replica,
        deliveries: list[Delivery[Any]],
        arrivals: list[tuple[Arrival, Delivery[Purchase]]],
        due: list[Due],
        states: dict[str, Profile],
        snapshots_of: Callable[[str], Sequence[Snapshot]],
        stages: Stages,
    ) -> int:
        models = replica.models
        # Chats teach only the intent model and feedback only the sentiment model: each
        # kind is learned in its own pass (in offset order), timed once per batch.
        chats = [d.record for d in deliveries if isinstance(d.record, ChatMessage)]
        feedback = [d.record for d in deliveries if isinstance(d.record, Feedback)]
        if chats:
            with stages.timed("intent"):
                for chat in chats:
                    models.conversations.learn_chat(chat)
        if feedback:
            with stages.timed("sentiment"):
                for rated in feedback:
                    models.conversations.learn_feedback(rated)
        lessons = {}
        for _, delivery in arrivals:
            profile = states.get(delivery.customer_id)
            state = profile.model_state if profile is not None else CustomerModelState()
            lesson = state.lesson(delivery.offset)
            if lesson is None:
                log.warning(
                    "no stored lesson for %s@%d: the models skip it",
                    delivery.source,
                    delivery.offset,
                )
            lessons[delivery.offset] = lesson

        def on_arrival(arrival: Arrival) -> None:
            lesson = lessons.get(arrival.offset)
            if lesson is not None:
                models.purchases.learn(lesson, arrival.snapshot)

        with stages.timed("purchase_models"):
            learn_purchases(
                models.purchases.propensity, [a for a, _ in arrivals], due, snapshots_of, on_arrival
            )
        for delivery in deliveries:
            replica.offsets[delivery.source] = delivery.offset
        replica.learned += len(deliveries)
        replica.dirty = True
        return len(deliveries)

    async def checkpoint(
        self, partitions: Iterable[int] | None = None, stages: Stages | None = None
    ) -> int:
        """Write the checkpoints of the (given) replicas that learned since their last one;
        returns the bytes written. ``stages`` gets the CPU time of pickling and signing
        (stage ``checkpoint``)."""
        stages = stages or Stages()
        async with self._checkpointing:
            chosen = (
                list(self._replicas.values())
                if partitions is None
                else [self._replicas[p] for p in partitions if p in self._replicas]
            )
            blobs: dict[int, bytes] = {}
            sealed: list[tuple[Replica, dict[str, int], float]] = []
            try:
                for replica in chosen:
                    if not replica.dirty or replica.retired:
                        continue
                    # The models and the offsets they include are pickled together, with
                    # no await between, and between two batches (see ``learning``): the
                    # blob is consistent even if a batch teaches the replica more before
                    # it is written (it is then dirty again).
                    async with self.learning:
                        state = replica.state()
                        with stages.timed("checkpoint"):
                            blobs[replica.partition] = self.store.seal(state)
                        replica.dirty = False
                    clock = replica.models.purchases.propensity.clock
                    sealed.append((replica, dict(state["offsets"]), clock))
                    # Let batches run between two partitions' pickles (a few ms each),
                    # rather than stall the event loop for all of them at once.
                    await asyncio.sleep(0)
                written = await self.store.write(blobs)
            except BaseException:
                for replica, _, _ in sealed:
                    replica.dirty = True
                raise
            for replica, offsets, clock in sealed:
                replica.checkpointed = offsets
                replica.checkpointed_clock = clock
            due = self._due()
            for replica, _, _ in sealed:
                window = replica.models.purchases.propensity.window_days
                await due.forget_before(replica.partition, replica.checkpointed_clock - window - 1)
            return written

    def committable(self) -> dict[tuple[str, int], int]:
        """The next offset to commit per input partition: what the checkpoints include."""
        out = {}
        for replica in self._replicas.values():
            for name, offset in replica.checkpointed.items():
                topic, _, partition = name.rpartition(":")
                out[(topic, int(partition))] = offset + 1
        return out

    def assigned(self, partitions: Iterable[int]) -> None:
        """Partitions assigned to this worker (again): retired replicas of them are
        dropped, to be loaded afresh from their checkpoints (another worker may have
        learned meanwhile)."""
        for partition in partitions:
            replica = self._replicas.get(partition)
            if replica is not None and replica.retired:
                del self._replicas[partition]

    def retire(self, partitions: Iterable[int]) -> None:
        """Never write the replicas of revoked partitions again (the partitions' new owner
        may be learning already); checkpoint them first (see ``Runtime.retire``)."""
        for partition in partitions:
            if partition in self._replicas:
                self._replicas[partition].retired = True
