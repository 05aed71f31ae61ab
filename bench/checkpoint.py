"""Checkpoint size and write time of a partition's models, at 10,000 and 100,000 customers.

Per-customer model state lives with each customer in Redis, so a checkpoint (the pickled,
HMAC-signed shared models, see ``crmstream.streams.checkpoints``) should not grow with the
number of customers. This trains one partition's models offline on N customers' purchases
(two each, a year apart, plus rated feedback texts), then measures the sealed checkpoint's
size and the time to seal it and write it to an embedded Redis (median of several writes),
in a new process that restored the models from that checkpoint, as a worker holds them.

    .venv/bin/python bench/checkpoint.py            # a table
    .venv/bin/python bench/checkpoint.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crmstream.models.conversations import ConversationModels
from crmstream.models.offline import OfflinePartition
from crmstream.schemas import Purchase
from crmstream.streams.checkpoints import CheckpointStore, open_sealed, seal
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.replicas import PartitionModels, Replica
from crmstream.streams.settings import Settings

TEXTS = (
    ("arrived smashed and late, never again", False),
    ("lovely, crisp and fresh as always", True),
    ("the box was crushed and the tea stale", False),
    ("great value, fast delivery, thank you", True),
)


def trained(customers: int, seed: int = 1) -> Replica:
    settings = Settings()
    partition = OfflinePartition(settings.purchase_models(), settings.policies())
    conversations = ConversationModels.create()
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = []
    for n in range(customers):
        first = start + timedelta(days=rng.uniform(0, 365))
        for at in (first, first + timedelta(days=rng.uniform(5, 365))):
            events.append((at, f"c{n}", round(rng.lognormvariate(3.3, 0.6), 2)))
    events.sort()
    for i, (at, customer, amount) in enumerate(events):
        partition.apply(
            Purchase(event_id=f"e{i}", customer_id=customer, occurred_at=at, amount=amount)
        )
    for i in range(2000):
        text, positive = TEXTS[i % len(TEXTS)]
        conversations.sentiment.learn(f"{text} {i % 97}", positive)
    return Replica(0, PartitionModels(partition.models, conversations), learned=len(events))


SECRET = b"bench"


async def measure(redis_url: str, replica: Replica, repeats: int) -> dict[str, float]:
    store = CheckpointStore(redis_url, SECRET)
    state = replica.state()
    gc.collect()
    seal_ms, write_ms = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        blob = seal(state, SECRET)
        seal_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await store.save({0: state})
        write_ms.append((time.perf_counter() - t0) * 1000)
    await store.close()
    return {
        "bytes": len(blob),
        "seal_ms": round(statistics.median(seal_ms), 2),
        "write_ms": round(statistics.median(write_ms), 2),
    }


def restored(replica: Replica, redis_url: str, repeats: int, tmp: Path) -> dict[str, float]:
    """Seal and write times of ``replica`` restored from its checkpoint in a new process,
    as a worker holds it: the training's customers are in no worker's memory (they are in
    Redis), and a heap that held them (100,000 customers' states) made pickling the same
    models about three times slower in the process that trained them."""
    path = tmp / "checkpoint"
    path.write_bytes(seal(replica.state(), SECRET))
    argv = [sys.executable, __file__, "--restored", str(path), "--redis-url", redis_url]
    out = subprocess.run(
        [*argv, "--repeats", str(repeats)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--restored", help=argparse.SUPPRESS)  # internal: see restored()
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restored:
        replica = Replica.restore(
            0, open_sealed(Path(args.restored).read_bytes(), SECRET, args.restored)
        )
        print(json.dumps(asyncio.run(measure(args.redis_url, replica, args.repeats))))
        return
    results = {}
    with EmbeddedStack() as stack, tempfile.TemporaryDirectory() as tmp:
        for customers in args.customers:
            t0 = time.perf_counter()
            replica = trained(customers)
            train_s = time.perf_counter() - t0
            figures = restored(replica, stack.redis_url, args.repeats, Path(tmp))
            figures["train_s"] = round(train_s, 1)
            results[str(customers)] = figures
            if not args.json:
                print(
                    f"{customers:>8,} customers: checkpoint {figures['bytes']:,} bytes, "
                    f"seal {figures['seal_ms']} ms, seal+write {figures['write_ms']} ms "
                    f"(median of {args.repeats}; trained in {train_s:.0f} s)",
                    flush=True,
                )
    sizes = [r["bytes"] for r in results.values()]
    results["size_ratio_largest_to_smallest"] = round(max(sizes) / min(sizes), 3)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"size ratio, largest to smallest: {results['size_ratio_largest_to_smallest']}")


if __name__ == "__main__":
    main()
