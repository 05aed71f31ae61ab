"""Latency from publishing an unhappy customer's message to its alert on ``crm.alerts``.

Starts the embedded broker and Redis and one worker, then publishes chat messages at a
steady total rate for a while: most are ordinary messages of many customers, and a share
are strongly negative messages of customers who have no alert yet (so each must raise
one). A consumer on ``crm.alerts`` notes when each alert arrives; the latency of an alert
is its arrival time minus the moment its message was handed to the producer. Prints
p50/p95/p99/max per run and the medians over runs. Nothing is asserted.

    python bench/alert_latency.py [--rate 500] [--seconds 20] [--share 0.1] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import msgspec
import redis
from kafka import KafkaConsumer, TopicPartition

from crmstream.schemas import Alert, ChatMessage
from crmstream.streams import topics
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.profiles import profile_key
from crmstream.streams.tools.publisher import Publisher

CALM = ["Thanks, that helps", "Where can I find the invoice?", "Ok, I will wait for the courier"]
ANGRY = "This is terrible, awful service. I hate it."


class AlertClock(threading.Thread):
    """Notes the arrival time of every alert, by its source event id."""

    def __init__(self, bootstrap: list[str]) -> None:
        super().__init__(daemon=True)
        self.arrived: dict[str, float] = {}
        self.stopped = threading.Event()
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, fetch_max_wait_ms=10, auto_offset_reset="earliest"
        )
        self.ready = threading.Event()

    def run(self) -> None:
        while not self.consumer.partitions_for_topic(topics.ALERTS):
            time.sleep(0.1)
        parts = self.consumer.partitions_for_topic(topics.ALERTS)
        self.consumer.assign([TopicPartition(topics.ALERTS, p) for p in parts])
        self.ready.set()
        while not self.stopped.is_set():
            for records in self.consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for record in records:
                    alert = msgspec.json.decode(record.value, type=Alert)
                    self.arrived.setdefault(alert.source_event_ids[-1], now)
        self.consumer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_once(rate: float, seconds: float, share: float) -> dict[str, float]:
    with EmbeddedStack() as stack:
        env = {**os.environ, **stack.env(), "CRM_PARTITIONS": "4", "CRM_LOG_LEVEL": "warning"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "crmstream.streams.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bootstrap = [stack.kafka_url.removeprefix("kafka://")]
        store = redis.Redis.from_url(stack.redis_url)
        try:
            with Publisher(bootstrap, linger_ms=0) as publisher:
                warmup = ChatMessage(
                    event_id="warmup",
                    customer_id="warmup",
                    occurred_at=datetime.now(UTC),
                    conversation_id="w",
                    sender="customer",
                    text="hello",
                )
                publisher.publish(topics.CHATS, warmup)
                publisher.flush()
                deadline = time.monotonic() + 90
                while not store.exists(profile_key("warmup")):
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise RuntimeError("the worker did not start")
                    time.sleep(0.05)
                clock = AlertClock(bootstrap)
                clock.start()
                clock.ready.wait(30)
                sent: dict[str, float] = {}
                start = time.perf_counter()
                n = 0
                while (now := time.perf_counter()) - start < seconds:
                    for _ in range(int((now - start) * rate) - n):
                        angry = (n % round(1 / share)) == 0
                        customer = f"angry-{n}" if angry else f"calm-{n % 5000}"
                        message = ChatMessage(
                            event_id=f"m{n}",
                            customer_id=customer,
                            occurred_at=datetime.now(UTC),
                            conversation_id=f"k{n}",
                            sender="customer",
                            text=ANGRY if angry else CALM[n % len(CALM)],
                        )
                        if angry:
                            sent[message.event_id] = time.perf_counter()
                        publisher.publish(topics.CHATS, message)
                        n += 1
                    time.sleep(0.002)
                publisher.flush()
            time.sleep(3)
            clock.stopped.set()
            clock.join(5)
        finally:
            worker.terminate()
            worker.wait(30)
            store.close()
    latencies = [(clock.arrived[e] - t) * 1000 for e, t in sent.items() if e in clock.arrived]
    return {
        "messages": n,
        "alerts_expected": len(sent),
        "alerts_seen": len(latencies),
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500, help="chat messages per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--share", type=float, default=0.1, help="share of alerting messages")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        r = run_once(args.rate, args.seconds, args.share)
        results.append(r)
        print(
            f"run {run + 1}: {r['messages']} messages at {args.rate:.0f}/s, "
            f"{r['alerts_seen']}/{r['alerts_expected']} alerts; latency ms "
            f"p50 {r['p50']:.0f}  p95 {r['p95']:.0f}  p99 {r['p99']:.0f}  max {r['max']:.0f}",
            flush=True,
        )
    print(
        f"\nmedians of {args.runs} runs at {args.rate:.0f} messages/s ({args.share:.0%} alerting):"
    )
    for key in ("p50", "p95", "p99", "max"):
        print(f"  {key:>3}: {statistics.median(r[key] for r in results):6.0f} ms")


if __name__ == "__main__":
    main()
