"""What one event costs the worker as its customers' state ages, in-process.

Runs the worker's own batch path (:func:`crmstream.streams.ingest.ingest`) on the mixed
workload of ``bench/mixed_workload.py`` (5,000 customers, one event a minute of event time)
against the embedded Redis, with the models checkpointed every ``--checkpoint-every``
batches (as the worker's timer does), and prints, per window of ``--window`` events: the
worker's CPU time per event (its thread), wall time per event, the Redis server's CPU time
per event, the propensity labels learned per event (delayed labels that taught the hazard,
and horizons resolved), and, at the window's end, the process's resident memory, the
stored profiles' size and the propensity snapshots the customers keep. The events are
built before the first window, so the resident memory's growth is the worker's state. A
young stream settles no delayed labels (the first fall due after 30 days of event time,
43,200 events): the windows after that add their cost.

    .venv/bin/python bench/aging.py [--events 120000] [--window 20000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import psutil
import redis
from kafka.partitioner.default import murmur2
from mixed_workload import MixedWorkload, load_pools
from rich.console import Console
from rich.table import Table

from crmstream.models.profile import Profile
from crmstream.streams.app import create_app
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.ingest import ingest
from crmstream.streams.profiles import PROFILE_FIELD, items_key, profile_key
from crmstream.streams.settings import Settings
from crmstream.streams.worker import tune_gc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import Discard, consumed  # outputs: the broker is bench/mixed.py's


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--checkpoint-every", type=int, default=20, help="batches (20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def redis_cpu(store: redis.Redis) -> float:
    info = store.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def profiles(store: redis.Redis, customers: list[str]) -> dict[str, Any]:
    """Of ``customers`` that have a profile: its stored size (bytes), the propensity
    snapshots and day buckets of activity it keeps, and the size of their item state."""
    pipe = store.pipeline(transaction=False)
    for customer in customers:
        pipe.hget(profile_key(customer), PROFILE_FIELD)
        pipe.strlen(items_key(customer))
    replies = pipe.execute()
    sizes, snapshots, days, items = [], [], [], []
    decode = msgspec.json.Decoder(Profile).decode
    for raw, item_bytes in zip(replies[::2], replies[1::2], strict=True):
        if raw:
            profile = decode(raw)
            sizes.append(len(raw))
            snapshots.append(len(profile.model_state.snapshots))
            days.append(len(profile.activity))
            items.append(item_bytes)
    return {
        "profile_bytes_busiest_500": statistics.mean(sizes),
        "profile_bytes_max": max(sizes),
        "snapshots_mean": statistics.mean(snapshots),
        "snapshots_max": max(snapshots),
        "activity_days_mean": statistics.mean(days),
        "item_state_bytes_mean": statistics.mean(items),
    }


def labels_learned(runtime: Any) -> int:
    """The propensity labels the worker's models have learned so far (all partitions):
    the delayed labels that taught the hazard, and the horizons resolved."""
    total = 0
    for partition in runtime.replicas.partitions:
        model = runtime.replicas[partition].models.purchases.propensity
        total += sum(model.labels.values()) + sum(model.outcomes.values())
    return total


def main() -> int:
    args = parse_args()
    console = Console(stderr=True)
    workload = MixedWorkload(load_pools(), customers=args.customers, seed=args.seed)
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    for _ in range(args.events):
        event = workload.next_event()
        partition = (murmur2(event.key) & 0x7FFFFFFF) % args.partitions
        offset = offsets.get((event.topic, partition), 0)
        offsets[(event.topic, partition)] = offset + 1
        messages.append(consumed(event.topic, partition, offset, event.key, event.value))
    # The heaviest customers get most events: their profiles are what a batch reads.
    busiest = [c.decode() for c, _ in Counter(m.key for m in messages).most_common(500)]
    rows: list[dict[str, Any]] = []
    with EmbeddedStack() as stack:
        settings = Settings(
            redis_url=stack.redis_url, kafka_url=stack.kafka_url, partitions=args.partitions
        )
        _, runtime = create_app(settings, sink=Discard())
        store = redis.Redis.from_url(stack.redis_url)
        loop = asyncio.new_event_loop()
        tune_gc()  # as the worker does at start-up
        cpu = wall = 0.0
        server = redis_cpu(store)
        staged = dict(runtime.stages.totals)
        learned = 0
        done = 0
        for n, start in enumerate(range(0, args.events, args.batch), 1):
            batch = messages[start : start + args.batch]
            began_cpu, began = time.thread_time(), time.perf_counter()
            loop.run_until_complete(ingest(runtime, batch))
            if n % args.checkpoint_every == 0:
                loop.run_until_complete(runtime.replicas.checkpoint())
            cpu += time.thread_time() - began_cpu
            wall += time.perf_counter() - began
            done += len(batch)
            if done % args.window == 0 or done == args.events:
                now = redis_cpu(store)
                window = done - (rows[-1]["events"] if rows else 0)
                labels = labels_learned(runtime)
                row = {
                    "events": done,
                    "labels_per_event": (labels - learned) / window,
                    "cpu_us": 1e6 * cpu / window,
                    "wall_us": 1e6 * wall / window,
                    "redis_us": 1e6 * (now - server) / window,
                    "rss_mb": psutil.Process().memory_info().rss / 2**20,
                    **profiles(store, busiest),
                    "stages_us": {
                        stage: (total - staged.get(stage, 0.0)) / window
                        for stage, total in runtime.stages.totals.items()
                    },
                }
                staged = dict(runtime.stages.totals)
                learned = labels
                rows.append(row)
                stages = ", ".join(
                    f"{name} {us:.0f}"
                    for name, us in sorted(row["stages_us"].items(), key=lambda kv: -kv[1])
                )
                console.log(
                    f"{done:,} events: {row['cpu_us']:.0f} µs CPU, {row['wall_us']:.0f} µs wall, "
                    f"Redis {row['redis_us']:.0f} µs per event; by stage: {stages}"
                )
                cpu = wall = 0.0
                server = now
        loop.run_until_complete(runtime.profiles.close())
        loop.run_until_complete(runtime.checkpoints.close())
        loop.close()
    table = Table(title="worker cost per event as the state ages (in-process, real Redis)")
    columns = (
        *("events to", "CPU µs", "wall µs", "Redis µs", "labels", "RSS MB", "profile B"),
        *("max B", "snapshots", "activity days", "item state B"),
    )
    for name in columns:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            f"{row['events']:,}",
            f"{row['cpu_us']:.0f}",
            f"{row['wall_us']:.0f}",
            f"{row['redis_us']:.0f}",
            f"{row['labels_per_event']:.2f}",
            f"{row['rss_mb']:,.0f}",
            f"{row['profile_bytes_busiest_500']:,.0f}",
            f"{row['profile_bytes_max']:,}",
            f"{row['snapshots_mean']:.1f} (max {row['snapshots_max']})",
            f"{row['activity_days_mean']:.0f}",
            f"{row['item_state_bytes_mean']:,.0f}",
        )
    Console().print(table)
    first, last = rows[0], rows[-1]
    print(
        f"last window / first window: CPU {last['cpu_us'] / first['cpu_us']:.2f}x, "
        f"wall {last['wall_us'] / first['wall_us']:.2f}x; resident memory "
        f"{first['rss_mb']:,.0f} -> {last['rss_mb']:,.0f} MB"
    )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
