"""Throughput and CPU cost per event of the purchase path, against a bare Faust agent.

Each run starts a fresh embedded broker and Redis and one worker process, waits until
the worker has joined its group (a warm-up event is processed), then publishes N
synthetic purchases and waits until all are applied. It reports end-to-end events per
second and the worker's CPU time per event. The baseline is a Faust agent on the same
topic with the same batching that only counts events: the ratio shows what crmstream's
decode, Redis round trips and tier logic cost on top of Faust itself.

    python bench/purchase_path.py [--events 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import redis

from crmstream.streams import topics
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.dev.traffic import SyntheticShop
from crmstream.streams.profiles import CUSTOMERS_KEY, PROFILE_FIELD, profile_key
from crmstream.streams.tools.publisher import Publisher

BASELINE_KEY = "bench:baseline:count"


def baseline_worker() -> None:
    """A Faust agent that counts purchases and stores the count in Redis per batch."""
    import faust

    from crmstream.streams.settings import Settings

    settings = Settings()
    app = faust.App(
        "bench-baseline",
        datadir=tempfile.mkdtemp(prefix="crmstream-bench-"),
        broker=settings.kafka_url,
        store="memory://",
        broker_session_timeout=settings.session_timeout,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(topics.PURCHASES, key_serializer="raw", value_serializer="raw")
    client = redis.asyncio.Redis.from_url(settings.redis_url)

    @app.agent(topic, concurrency=1)
    async def count(stream):
        seen = 0
        async for events in stream.take_events(settings.batch_size, within=settings.batch_wait):
            seen += len(events)
            await client.set(BASELINE_KEY, seen)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def applied(store: redis.Redis, customers: list[str]) -> int:
    pipe = store.pipeline(transaction=False)
    for customer in customers:
        pipe.hget(profile_key(customer), PROFILE_FIELD)
    return sum(json.loads(v)["orders"] for v in pipe.execute() if v)


def run_once(kind: str, events: int, customers: int) -> tuple[float, float]:
    shop = SyntheticShop(
        customers=customers,
        invalid_share=0,
        duplicate_share=0,
        chat_share=0,
        feedback_share=0,
        seed=len(kind),
    )
    stream = shop.events()
    batch = [next(stream) for _ in range(events + 1)]
    customer_ids = shop.customers
    with EmbeddedStack() as stack:
        env = {**os.environ, **stack.env(), "CRM_PARTITIONS": "4", "CRM_LOG_LEVEL": "warning"}
        argv = [sys.executable, "-m", "crmstream.streams.cli", "worker"]
        if kind == "baseline":
            argv = [sys.executable, __file__, "--baseline-worker"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        worker = subprocess.Popen(argv, env=env, **quiet)
        store = redis.Redis.from_url(stack.redis_url)
        bootstrap = [stack.kafka_url.removeprefix("kafka://")]

        def done() -> int:
            if kind == "baseline":
                return int(store.get(BASELINE_KEY) or 0)
            return applied(store, customer_ids)

        try:
            with Publisher(bootstrap) as publisher:
                warmup = batch[0]
                publisher.send(warmup.topic, warmup.value, warmup.key)
                publisher.flush()
                deadline = time.monotonic() + 90
                while done() < 1:
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise RuntimeError(f"{kind} worker did not start")
                    time.sleep(0.05)
                process = psutil.Process(worker.pid)
                cpu0 = sum(process.cpu_times()[:2])
                start = time.perf_counter()
                for event in batch[1:]:
                    publisher.send(event.topic, event.value, event.key)
                publisher.flush()
            while done() < events + 1:
                if worker.poll() is not None:
                    raise RuntimeError(f"{kind} worker exited")
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
            cpu = sum(process.cpu_times()[:2]) - cpu0
        finally:
            worker.terminate()
            worker.wait(30)
            if kind != "baseline":
                assert store.scard(CUSTOMERS_KEY) > 0
            store.close()
    return events / elapsed, cpu / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker()
        return
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "crmstream": []}
    for run in range(args.runs):
        for kind in results:  # interleaved, so drift on a shared machine hits both alike
            rate, cpu_us = run_once(kind, args.events, args.customers)
            results[kind].append((rate, cpu_us))
            print(f"run {run + 1} {kind:9s} {rate:8.0f} events/s  {cpu_us:6.1f} µs CPU/event")
    print(f"\nmedians of {args.runs} runs, {args.events} purchases, {args.customers} customers:")
    for kind, values in results.items():
        rate = statistics.median(v[0] for v in values)
        cpu_us = statistics.median(v[1] for v in values)
        print(f"  {kind:9s} {rate:8.0f} events/s  {cpu_us:6.1f} µs CPU/event")
    ratios = [c[1] / b[1] for b, c in zip(results["baseline"], results["crmstream"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"  crmstream / bare Faust CPU per event: {ratio:.2f}x (median of per-run ratios)")


if __name__ == "__main__":
    main()
