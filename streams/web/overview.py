"""The dashboard's overview: what the whole deployment is doing, from Kafka and Redis.

Refreshed in the background (every few seconds, whatever the number of open pages):

* events per second on each input topic, from the topics' end offsets;
* dead letters of the last hour by reason, read from ``crm.deadletter`` (its
  ``crm.error.code`` header);
* the tier distribution of a random sample of customers (``SRANDMEMBER``: reading every
  profile would cost as much as the customers);
* the model quality the workers last checkpointed (propensity AUC, segment sizes, anomaly
  rate, what the conversation models learned), read like ``crmstream models``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from crmstream.streams import topics
from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.credentials import aiokafka_options, redis_client_url
from crmstream.streams.profiles import CUSTOMERS_KEY, ProfileStore, profile_key
from crmstream.streams.settings import Settings

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
MODELS_EVERY = 6  # refreshes: the models are read every 30 s
TIER_SAMPLE = 1000
HOUR = 3600.0


class _TierOnly(msgspec.Struct):
    tier: str = "bronze"


_decode_tier = msgspec.json.Decoder(_TierOnly).decode


class Overview:
    """Keeps the overview's figures fresh; :meth:`snapshot` is what ``/api/stats`` adds."""

    def __init__(self, settings: Settings, profiles: ProfileStore) -> None:
        self.settings = settings
        self.profiles = profiles
        self.checkpoints = CheckpointStore(
            redis_client_url(settings), settings.checkpoint_hmac_key()
        )
        self.ends: deque[tuple[float, dict[str, int]]] = deque(maxlen=7)
        self.deadletters: deque[tuple[float, str]] = deque()
        self.tiers: dict[str, int] = {}
        self.tier_sample = 0
        self.models: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="overview")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.checkpoints.close()

    def snapshot(self) -> dict[str, Any]:
        """The latest figures."""
        rates: dict[str, float] = {}
        if len(self.ends) >= 2:
            (t0, first), (t1, last) = self.ends[0], self.ends[-1]
            rates = {
                topic: round((last.get(topic, 0) - first.get(topic, 0)) / (t1 - t0), 1)
                for topic in topics.INPUTS
            }
        hour_ago = time.time() - HOUR
        reasons = Counter(reason for at, reason in self.deadletters if at >= hour_ago)
        return {
            "events_per_second": rates,
            "deadletters_last_hour": dict(reasons),
            "tiers_sampled": {"sample": self.tier_sample, "tiers": self.tiers},
            "models": self.models,
        }

    async def _run(self) -> None:
        consumer = None
        rounds = 0
        while True:
            try:
                if consumer is None:
                    consumer = await self._deadletter_consumer()
                await self._refresh_ends(consumer)
                await self._read_deadletters(consumer)
                await self._sample_tiers()
                if rounds % MODELS_EVERY == 0 or not self.models.get("anomaly_rate"):
                    await self._read_models()
                rounds += 1
            except asyncio.CancelledError:
                if consumer is not None:
                    await consumer.stop()
                raise
            except Exception as exc:
                log.warning("overview: refresh failed (%s); retrying", exc)
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                    consumer = None
            await asyncio.sleep(REFRESH_SECONDS)

    async def _deadletter_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
            **aiokafka_options(self.settings),
        )
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            partitions = sorted(cluster.partitions_for_topic(topics.DEADLETTER) or ())
            if not partitions:
                raise RuntimeError(f"{topics.DEADLETTER} does not exist yet")
            tps = [TopicPartition(topics.DEADLETTER, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            beginnings = await consumer.beginning_offsets(tps)
            for tp in tps:  # the recent ones are enough for "the last hour"
                consumer.seek(tp, max(beginnings[tp], ends[tp] - 10_000))
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _refresh_ends(self, consumer: AIOKafkaConsumer) -> None:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [
            TopicPartition(topic, p)
            for topic in topics.INPUTS
            for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(tps) if tps else {}
        totals: Counter[str] = Counter()
        for tp, end in ends.items():
            totals[tp.topic] += end
        self.ends.append((time.monotonic(), dict(totals)))

    async def _read_deadletters(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
        for records in batches.values():
            for record in records:
                headers = dict(record.headers or ())
                reason = headers.get("crm.error.code", b"unknown").decode(errors="replace")
                self.deadletters.append((record.timestamp / 1000.0, reason))
        hour_ago = time.time() - HOUR
        while self.deadletters and self.deadletters[0][0] < hour_ago:
            self.deadletters.popleft()
        while len(self.deadletters) > 100_000:
            self.deadletters.popleft()

    async def _sample_tiers(self) -> None:
        client = self.profiles.client
        sample = await client.srandmember(CUSTOMERS_KEY, TIER_SAMPLE)
        if not sample:
            self.tiers, self.tier_sample = {}, 0
            return
        async with client.pipeline(transaction=False) as pipe:
            for customer_id in sample:
                pipe.hget(profile_key(customer_id), "profile")
            values = await pipe.execute()
        found = [_decode_tier(v).tier for v in values if v]
        self.tiers, self.tier_sample = dict(Counter(found)), len(found)

    async def _read_models(self) -> None:
        from crmstream.streams.tools.quality import read_quality

        report = await read_quality(self.checkpoints, self.settings.partitions)
        purchases, conversations = report["purchases"], report["conversations"]
        # each partition clusters its own customers: segment ids are per partition
        segments = {
            str(p): {str(s): int(d["customers"]) for s, d in row["segments"].items()}
            for p, row in purchases.items()
        }
        self.models = {
            "propensity_auc": {
                str(p): row["propensity"]["period_auc"] for p, row in purchases.items()
            },
            "anomaly_rate": {str(p): row["anomaly"]["rate"] for p, row in purchases.items()},
            "segment_sizes": segments,
            "sentiment_ratings_learned": sum(
                row["sentiment_ratings_learned"] for row in conversations.values()
            ),
            "intent_labels_learned": sum(
                row["intent_labels_learned"] for row in conversations.values()
            ),
        }
