"""What counting a batch for ``/metrics`` (streams/prometheus.py) costs per event.

.venv/bin/python bench/metrics_cost.py
"""

from __future__ import annotations

import time
from collections import namedtuple

from crmstream.streams import topics
from crmstream.streams.prometheus import WorkerMetrics

Message = namedtuple("Message", "topic partition offset")
BATCH = 500


def main() -> None:
    metrics = WorkerMetrics()
    names = (topics.PURCHASES, topics.CHATS, topics.FEEDBACK)
    batches = [
        [Message(names[i % 3], i % 8, b * BATCH + i) for i in range(BATCH)] for b in range(200)
    ]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for batch in batches:
            metrics.batch(batch, (), (), 0.01)
        best = min(best, time.perf_counter() - start)
    per_event = best / (len(batches) * BATCH) * 1e6
    print(f"metrics per event: {per_event:.3f} µs (batches of {BATCH}, 3 topics, 8 partitions)")


if __name__ == "__main__":
    main()
