"""CPU cost per event of the worker's key and partition checks, in process.

Builds N purchases of N distinct customers (a seeded RNG), each as a Faust message keyed by
its ``customer_id`` on the partition murmur2 gives it, and times, interleaved over R
repeats with the garbage collector off:

* ``decode``: ``crmstream.schemas.decode`` alone (what the decode stage did before);
* ``to_delivery``: the worker's decode step as it is: the tombstone check, decode, the
  key check (``key_mismatch``) and the partition check (:mod:`crmstream.streams.routing`);
* ``checks``: only the key comparison and the partition check, cache warm (every key seen);
* ``checks, cold``: the same on keys never seen (murmur2 in pure Python, then cached).

Prints the median and minimum µs per event. Nothing is asserted.

    python bench/keys.py [--events 20000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from faust.types import Message

from crmstream.schemas import Purchase, decode
from crmstream.streams import topics
from crmstream.streams.ingest import to_delivery
from crmstream.streams.routing import Routing, partition_for
from crmstream.streams.settings import Settings

PARTITIONS = 8


def message(customer_id: str, n: int) -> Message:
    value = json.dumps(
        {
            "event_id": f"e-{n}",
            "customer_id": customer_id,
            "occurred_at": "2026-05-01T10:00:00.123456Z",
            "amount": 12.5,
            "cost": 3.0,
            "order_id": f"o-{n}",
        },
        separators=(",", ":"),
    ).encode()
    key = customer_id.encode()
    return Message(
        topic=topics.PURCHASES,
        partition=partition_for(key, PARTITIONS),
        offset=n,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=key,
        value=value,
        checksum=b"",
    )


def timed(run: Callable[[], None], count: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        run()
        return (time.perf_counter_ns() - start) / count / 1000
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(7)
    customers = [f"c{rng.randrange(10**9)}" for _ in range(args.events)]
    messages = [message(c, n) for n, c in enumerate(customers)]
    settings = Settings(partitions=PARTITIONS)
    runtime = SimpleNamespace(
        settings=settings, policies=settings.policies(), routing=Routing(PARTITIONS)
    )
    latest = datetime.now(UTC) + timedelta(seconds=settings.max_future)

    def run_decode() -> None:
        for m in messages:
            decode(m.value, Purchase)

    def run_to_delivery() -> None:
        for m in messages:
            to_delivery(m, runtime, latest)  # type: ignore[arg-type]

    def run_checks(routing: Routing) -> Callable[[], None]:
        pairs = [(m, m.key.decode()) for m in messages]

        def run() -> None:
            for m, customer_id in pairs:
                if m.key != customer_id.encode():
                    raise AssertionError
                routing.misrouted(m.topic, m.partition, m.key)

        return run

    warm = Routing(PARTITIONS)
    run_checks(warm)()
    results: dict[str, list[float]] = {
        "decode": [],
        "to_delivery": [],
        "checks": [],
        "checks, cold": [],
    }
    run_to_delivery()  # warm up
    for _ in range(args.repeats):
        results["decode"].append(timed(run_decode, len(messages)))
        results["to_delivery"].append(timed(run_to_delivery, len(messages)))
        results["checks"].append(timed(run_checks(warm), len(messages)))
        results["checks, cold"].append(timed(run_checks(Routing(PARTITIONS)), len(messages)))
    print(f"{args.events} purchases of distinct customers, {args.repeats} repeats; µs per event")
    print(f"{'step':16s} {'median':>8s} {'min':>8s}")
    for name, values in results.items():
        print(f"{name:16s} {statistics.median(values):8.2f} {min(values):8.2f}")


if __name__ == "__main__":
    main()
