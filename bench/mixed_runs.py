"""Measurements of ``bench/mixed.py``: worker processes against the embedded stack.

Workers are driven only from outside: ``python -m crmstream.streams.cli worker`` (or the
bare Faust worker of ``bench/faust_baseline.py``) with ``CRM_*`` variables, observed
through psutil (CPU time, RSS), Redis (profile counters, the stage hash) and Kafka
(alerts). Nothing here asserts anything; it returns figures.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis
from confluent_kafka import Producer
from faust_baseline import counts_key
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from mixed_workload import TOPICS, MixedWorkload

from crmstream.streams import profiles, topics
from crmstream.streams.dev.embedded import EmbeddedStack, die_with_parent
from crmstream.streams.metrics import STAGES, STAGES_KEY
from crmstream.streams.profiles import profile_key
from crmstream.streams.tools.publisher import Publisher

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "faust_baseline.py"

# The hash the worker keeps cumulative CPU microseconds per stage in (with ``events``),
# and the stages: STAGES_KEY and STAGES of crmstream.streams.metrics.

#: Shortest pause between two counts of crmstream's profiles while draining, seconds.
FINE_POLL = 0.1

#: Profile counters that say how many events of each input topic a worker has applied.
PROFILE_COUNTERS = {
    topics.PURCHASES: "orders",
    topics.CHATS: "messages",
    topics.FEEDBACK: "feedback",
}

# KEYS: profile hashes; ARGV[1]: the hash field holding the profile as JSON ("" if the
# profile's fields are hash fields of their own), ARGV[2..]: the counters to sum.
# Redis runs a script alone, so the count must be cheap: it finds each counter by its
# name instead of decoding the profile (cjson.decode of 5,000 profiles held Redis for
# about 70 ms per count, while the worker under measurement waited for it). msgspec writes
# a profile's fields in their declared order, and the counters come right after
# ``customer_id``, before any nested object: the first match is the top-level counter.
_SUM_COUNTERS = """
local totals, patterns = {}, {}
for j = 2, #ARGV do
  totals[j - 1] = 0
  patterns[j - 1] = '"' .. ARGV[j] .. '":'
end
for i = 1, #KEYS do
  local values = {}
  local json = ARGV[1] ~= '' and redis.call('HGET', KEYS[i], ARGV[1])
  if json then
    for j = 1, #patterns do
      local _, last = string.find(json, patterns[j], 1, true)
      values[j] = last and string.match(json, '^%d+', last + 1)
    end
  else
    values = redis.call('HMGET', KEYS[i], unpack(ARGV, 2))
  end
  for j = 1, #ARGV - 1 do totals[j] = totals[j] + (tonumber(values[j]) or 0) end
end
return totals
"""

#: Where the worker keeps a profile as one JSON value, if it does (``crmstream.streams.
#: profiles`` decides the layout; older versions kept one hash field per profile field).
PROFILE_JSON_FIELD = getattr(profiles, "PROFILE_FIELD", "")


class BenchError(RuntimeError):
    """A worker died or did not get through its work in time."""


class BenchStack:
    """The embedded broker and Redis, with every crmstream topic created up front."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._stack = EmbeddedStack()
        self.workdir = Path(tempfile.mkdtemp(prefix="crmstream-bench-mixed-"))

    def __enter__(self) -> BenchStack:
        self._stack.start()
        self.bootstrap = [self._stack.kafka_url.removeprefix("kafka://")]
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, self.partitions, 1) for name in topics.ALL])
        finally:
            admin.close()
        self.store = redis.Redis.from_url(self._stack.redis_url)
        self._offsets: KafkaConsumer | None = None
        self._sum = self.store.register_script(_SUM_COUNTERS)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._offsets is not None:
            self._offsets.close()
        self.store.close()
        self._stack.stop()
        if exc_type is None:  # worker logs are kept when something went wrong
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def servers(self) -> dict[str, psutil.Process]:
        """The broker and store processes."""
        pids = self._stack.pids
        return {"broker": psutil.Process(pids[0]), "store": psutil.Process(pids[1])}

    def env(self) -> dict[str, str]:
        return {**self._stack.env(), "CRM_PARTITIONS": str(self.partitions)}

    def publish(self, events: list, linger_ms: int = 20) -> float:
        """Publish events as fast as the producer goes; return the seconds it took."""
        start = time.perf_counter()
        with Publisher(self.bootstrap, linger_ms=linger_ms, batch_size=256 * 1024) as publisher:
            for event in events:
                publisher.send(event.topic, event.value, event.key)
            publisher.flush()
        return time.perf_counter() - start

    def applied(self, kind: str, group: str, workload: MixedWorkload) -> dict[str, int]:
        """Events of each input topic the workers of ``kind`` have applied so far."""
        if kind == "faust":
            counts = dict.fromkeys(TOPICS, 0)
            for name, value in self.store.hgetall(counts_key(group)).items():
                topic = name.decode().rpartition(":")[0]
                if topic in counts:
                    counts[topic] += int(value)
            return counts
        totals = self._sum(
            keys=profile_keys(workload), args=[PROFILE_JSON_FIELD, *PROFILE_COUNTERS.values()]
        )
        return dict(zip(PROFILE_COUNTERS, (int(t) for t in totals), strict=True))

    def started(self, kind: str, group: str, workload: MixedWorkload) -> bool:
        """Whether the workers of ``kind`` have applied anything yet (for crmstream, one
        ``EXISTS`` over the customers' profiles, far cheaper than :meth:`applied`)."""
        if kind == "faust":
            return sum(self.applied(kind, group, workload).values()) > 0
        return bool(self.store.exists(*profile_keys(workload)))

    def lag(self, group: str) -> int:
        """Events on the input topics past the offsets ``group`` has committed (crmstream
        commits only what its latest model checkpoint includes, so this trails by up to a
        checkpoint interval)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            committed = admin.list_group_offsets(group).get(group, {})
        finally:
            admin.close()
        if self._offsets is None:
            self._offsets = KafkaConsumer(bootstrap_servers=self.bootstrap)
        partitions = [TopicPartition(t, p) for t in topics.INPUTS for p in range(self.partitions)]
        ends = self._offsets.end_offsets(partitions)
        done = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
        return sum(end - max(0, done.get((tp.topic, tp.partition), 0)) for tp, end in ends.items())

    def stages(self) -> dict[str, float]:
        """The worker's cumulative stage counters (empty while it keeps none)."""
        return {k.decode(): float(v) for k, v in self.store.hgetall(STAGES_KEY).items()}

    def reset_profiles(self) -> None:
        """Forget all crmstream state (profiles, checkpoints, stage counters) between runs."""
        self.store.flushdb()


def profile_keys(workload: MixedWorkload) -> list[str]:
    """The profile keys of every customer ``workload`` has published for, probes included."""
    customers = workload.customers + [
        workload.probe_customer(k) for k in range(1, workload.probes + 1)
    ]
    return [profile_key(c) for c in customers]


@dataclass
class Workers:
    """Worker processes of one consumer group, their logs kept in the stack's workdir."""

    kind: str
    group: str
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def ps(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self.processes]

    def cpu_seconds(self) -> list[float]:
        """User plus system CPU time of each worker so far."""
        return [sum(p.cpu_times()[:2]) for p in self.ps]

    def rss_mb(self) -> list[float]:
        return [p.memory_info().rss / 2**20 for p in self.ps]

    def check_alive(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise BenchError(
                    f"{self.kind} worker exited with {process.returncode}; log {log}:\n{tail}"
                )


@contextlib.contextmanager
def workers(stack: BenchStack, kind: str, n: int, group: str, **env: str) -> Iterator[Workers]:
    """Start ``n`` workers of ``kind`` (``crmstream`` or ``faust``) in consumer group ``group``."""
    argv = [sys.executable, "-m", "crmstream.streams.cli", "worker"]
    if kind == "faust":
        argv = [sys.executable, str(BASELINE)]
    processes, logs = [], []
    try:
        for i in range(n):
            log = stack.workdir / f"{group}-{i}.log"
            datadir = stack.workdir / f"{group}-{i}.data"
            full_env = {
                **os.environ,
                **stack.env(),
                "CRM_APP_ID": group,
                "CRM_DATA_DIR": str(datadir),
                "CRM_LOG_LEVEL": "warning",
                **env,
            }
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        argv,
                        env=full_env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent,
                    )
                )
            logs.append(log)
        yield Workers(kind, group, processes, logs)
    finally:
        # Measured already, and the group and the stack are thrown away: a clean shutdown
        # (a second or two per worker) would only make the benchmark longer.
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            process.wait()


class CpuMeter:
    """CPU time used by the workers, the broker, the store and this process (the publisher
    and the alert consumer) over an interval, in cores busy."""

    def __init__(self, stack: BenchStack, running: Workers) -> None:
        self.processes = {
            "worker": running.ps,
            **{name: [p] for name, p in stack.servers.items()},
            "bench": [psutil.Process()],
        }
        self.start()

    def _now(self) -> dict[str, float]:
        return {k: sum(sum(p.cpu_times()[:2]) for p in ps) for k, ps in self.processes.items()}

    def start(self) -> None:
        self._cpu, self._wall = self._now(), time.perf_counter()

    def busy(self) -> dict[str, float]:
        """Cores busy per process since :meth:`start` (1.0: one core all the time)."""
        cpu, wall = self._now(), time.perf_counter() - self._wall
        return {k: round((cpu[k] - self._cpu[k]) / wall, 3) for k in cpu}


@dataclass
class Drain:
    """How workers consumed a pre-published backlog."""

    kind: str
    workers: int
    events: int
    seconds: float
    rate: float
    cpu_us: float
    topic_rates: dict[str, float]
    stages_us: dict[str, float] | None
    cpu_share: list[float]
    rss_mb: list[float]
    start_seconds: float


def drain(
    stack: BenchStack,
    running: Workers,
    workload: MixedWorkload,
    stage_flush: float = 0.0,
    timeout: float = 600,
) -> Drain:
    """Measure ``running`` workers consuming what ``workload`` has published.

    The clock and the CPU counters start at the first applied batch (the workers have
    joined the group by then; start-up and the join are not measured) and stop when every
    published event is applied. The stage counters are read then too; with
    ``stage_flush`` (how often the worker adds to them, seconds) the read waits until they
    include every event drained (the worker is idle by then, so the wait costs nothing
    but time).
    """
    targets = dict(workload.published)
    started = time.perf_counter()
    deadline = started + 120
    while not stack.started(running.kind, running.group, workload):
        running.check_alive()
        if time.perf_counter() > deadline:
            raise BenchError(f"{running.kind} workers applied nothing in 120 s ({running.logs})")
        time.sleep(0.02)
    c0 = stack.applied(running.kind, running.group, workload)
    t0 = time.perf_counter()
    cpu0 = running.cpu_seconds()
    stages0 = stack.stages()
    done_at: dict[str, float] = {}
    rate_guess = 1000.0
    deadline = t0 + timeout
    # Few polls while far from the end, fine ones near it. Counting crmstream's profiles
    # holds Redis for a few milliseconds per thousand customers, so its polls are at least
    # FINE_POLL apart: the end it sees is at most that late.
    fine = 0.02 if running.kind == "faust" else FINE_POLL
    while len(done_at) < len(targets):
        counts = stack.applied(running.kind, running.group, workload)
        now = time.perf_counter()
        for topic, target in targets.items():
            if topic not in done_at and counts[topic] >= target:
                done_at[topic] = now
        if len(done_at) == len(targets):
            break
        running.check_alive()
        if now > deadline:
            raise BenchError(f"{running.kind}: {counts} of {targets} applied after {timeout} s")
        progressed = sum(counts.values()) - sum(c0.values())
        if progressed > 0:
            rate_guess = progressed / max(now - t0, 1e-3)
        remaining = sum(targets.values()) - sum(counts.values())
        time.sleep(min(1.0, max(fine, remaining / rate_guess / 4)))
    end = max(done_at.values())
    cpu = [b - a for a, b in zip(cpu0, running.cpu_seconds(), strict=True)]
    events = sum(targets.values()) - sum(c0.values())
    seconds = end - t0
    stages1 = stack.stages()
    if stage_flush:
        deadline = time.perf_counter() + stage_flush
        while stages1.get("events", 0) - stages0.get("events", 0) < events:
            if time.perf_counter() > deadline:
                break
            time.sleep(0.1)
            stages1 = stack.stages()
    return Drain(
        kind=running.kind,
        workers=len(running.processes),
        events=events,
        seconds=seconds,
        rate=events / seconds,
        cpu_us=sum(cpu) / events * 1e6,
        # A topic whose every event was in the first batch has no rate of its own.
        topic_rates={
            topic: (targets[topic] - c0[topic]) / (done_at[topic] - t0)
            if targets[topic] > c0[topic]
            else math.nan
            for topic in targets
        },
        stages_us=stage_costs(stages0, stages1),
        cpu_share=[c / max(sum(cpu), 1e-9) for c in cpu],
        rss_mb=running.rss_mb(),
        start_seconds=t0 - started,
    )


def stage_costs(before: dict[str, float], after: dict[str, float]) -> dict[str, float] | None:
    """CPU µs per event of each stage between two reads of the stage hash (``None`` while
    the worker keeps no such hash, or counted no event in between).

    Examples
    --------
    >>> stage_costs({}, {})
    >>> stage_costs({"events": 10, "decode": 30}, {"events": 110, "decode": 330})["decode"]
    3.0
    """
    events = after.get("events", 0.0) - before.get("events", 0.0)
    if not after or events <= 0:
        return None
    return {
        stage: (after[stage] - before.get(stage, 0.0)) / events
        for stage in STAGES
        if stage in after
    }


@dataclass
class Steady:
    """What a steady publishing phase sent, and when each probe left."""

    rate: float
    seconds: float
    events: int = 0
    probes: dict[str, float] = field(default_factory=dict)


def publish_steady(
    stack: BenchStack,
    workload: MixedWorkload,
    rate: float,
    seconds: float,
    probe_every: int,
    on_second: Callable[[float], None] | None = None,
) -> Steady:
    """Publish ``rate`` events per second for ``seconds``; every ``probe_every``-th event is
    a strongly negative message of a new customer, whose send time is kept.

    The load generator shares the machine with what it measures, so it publishes with
    librdkafka (``confluent-kafka``; the same linger and acknowledgements as
    :class:`~crmstream.streams.tools.publisher.Publisher`): at 1,350 events/s it took
    0.15-0.20 cores here, against 0.42-0.44 with ``kafka-python``.
    """
    sent = Steady(rate, seconds)
    producer = Producer(
        {"bootstrap.servers": ",".join(stack.bootstrap), "linger.ms": 5, "acks": "all"}
    )
    failed: list[str] = []

    def delivered(error: object, message: object) -> None:
        if error is not None:
            failed.append(str(error))

    start = time.perf_counter()
    ticked = 0
    while (now := time.perf_counter()) - start < seconds:
        for _ in range(int((now - start) * rate) - sent.events):
            sent.events += 1
            if sent.events % probe_every == 0:
                event_id, event = workload.probe()
                sent.probes[event_id] = time.perf_counter()
            else:
                event = workload.next_event()
            producer.produce(event.topic, event.value, event.key, on_delivery=delivered)
        producer.poll(0)
        if on_second is not None and now - start >= ticked + 1:
            ticked = int(now - start)
            on_second(now - start)
        time.sleep(0.002)
    if producer.flush(60) or failed:
        raise BenchError(f"steady publishing lost events: {failed[:3]}")
    return sent


def wait_applied(
    stack: BenchStack, running: Workers, workload: MixedWorkload, timeout: float
) -> tuple[float, int]:
    """Wait until everything published is applied; return the seconds it took (``inf`` if
    it was not in ``timeout``) and how many events were still not applied then."""
    start = time.perf_counter()
    while True:
        counts = stack.applied(running.kind, running.group, workload)
        behind = sum(max(0, n - counts[t]) for t, n in workload.published.items())
        if behind == 0:
            return time.perf_counter() - start, 0
        running.check_alive()
        if time.perf_counter() - start > timeout:
            return float("inf"), behind
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile by rank (``nan`` for no values).

    Examples
    --------
    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5)
    3.0
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(sent: Steady, arrived: dict[str, float]) -> dict[str, float]:
    """Publish-to-alert latency percentiles (ms) of the probes whose alert arrived."""
    ms = [(arrived[e] - t) * 1000 for e, t in sent.probes.items() if e in arrived]
    return {
        "p50": percentile(ms, 0.5),
        "p99": percentile(ms, 0.99),
        "max": max(ms, default=float("nan")),
        "alerts_expected": len(sent.probes),
        "alerts_seen": len(ms),
    }
