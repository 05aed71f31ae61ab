"""``crmstream demo``: the embedded stack, one worker, synthetic traffic, a live summary."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from crmstream.streams import topics
from crmstream.streams.dev.embedded import EmbeddedStack, die_with_parent, free_port
from crmstream.streams.dev.traffic import SyntheticShop
from crmstream.streams.profiles import CUSTOMERS_KEY
from crmstream.streams.tools.publisher import Publisher


@dataclass
class Totals:
    """Counts shown by the live summary."""

    published: int = 0
    processed: int = 0
    customers: int = 0
    tier_changes: int = 0
    alerts: int = 0
    deadlettered: int = 0

    def final_line(self) -> str:
        return (
            f"demo: {self.processed} events, {self.customers} customers, "
            f"{self.tier_changes} tier changes, {self.alerts} alerts, "
            f"{self.deadlettered} dead-lettered"
        )


class _Generator(threading.Thread):
    """Publishes synthetic events at a steady rate until stopped."""

    def __init__(self, bootstrap: list[str], rate: float, customers: int) -> None:
        super().__init__(name="traffic", daemon=True)
        self.publisher = Publisher(bootstrap)
        self.shop = SyntheticShop(customers=customers)
        self.rate = rate
        self.sent = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        events = self.shop.events()
        while not self.stopped.is_set():
            due = int((time.monotonic() - start) * self.rate)
            for _ in range(due - self.sent):
                event = next(events)
                self.publisher.send(event.topic, event.value, event.key)
                self.sent += 1
            time.sleep(0.01)
        self.publisher.close()


class _OutputCounter(threading.Thread):
    """Counts the records that appear on the output topics."""

    def __init__(self, bootstrap: list[str]) -> None:
        super().__init__(name="outputs", daemon=True)
        self.counts: Counter[str] = Counter()
        self.stopped = threading.Event()
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )

    def run(self) -> None:
        assigned: set[TopicPartition] = set()
        while not self.stopped.is_set():
            wanted = {
                TopicPartition(topic, p)
                for topic in topics.OUTPUTS
                for p in self.consumer.partitions_for_topic(topic) or ()
            }
            if wanted != assigned:
                self.consumer.assign(sorted(wanted))
                self.consumer.seek_to_beginning(*(wanted - assigned))
                assigned = wanted
            for tp, records in self.consumer.poll(timeout_ms=500).items():
                self.counts[tp.topic] += len(records)
        self.consumer.close()


def _processed(admin: KafkaAdminClient, group: str) -> int:
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(m.offset for tp, m in offsets.items() if tp.topic in topics.INPUTS and m.offset > 0)


def _start_dashboard(
    env: dict[str, str], port: int, logdir: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start ``crmstream dashboard`` with a one-time token; return it, its URL and token."""
    token = env.get("CRM_API_TOKEN") or secrets.token_urlsafe(18)
    if not port or not _port_free(port):
        port = free_port()
    with open(logdir / "dashboard.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "crmstream.streams.cli", "dashboard", "--port", str(port)],
            env={**env, "CRM_API_TOKEN": token},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    return process, f"http://127.0.0.1:{port}/", token


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_demo(
    seconds: float = 0, rate: float = 500, customers: int = 2000, dashboard_port: int = 8080
) -> int:
    """Run the demo for ``seconds`` (0: until Ctrl-C) and print the final summary."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    logdir = Path(tempfile.mkdtemp(prefix="crmstream-demo-"))
    print("demo: starting the embedded broker and Redis", flush=True)
    with EmbeddedStack() as stack:
        print(f"demo: {stack.kafka_url}  {stack.redis_url}", flush=True)
        bootstrap = [stack.kafka_url.removeprefix("kafka://")]
        env = {
            **os.environ,
            **stack.env(),
            "CRM_PARTITIONS": os.environ.get("CRM_PARTITIONS", "4"),
            # Progress is read from committed offsets, which follow the model checkpoints.
            "CRM_CHECKPOINT_INTERVAL": os.environ.get("CRM_CHECKPOINT_INTERVAL", "2"),
        }
        worker_log = logdir / "worker.log"
        with open(worker_log, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "crmstream.streams.cli", "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        print(f"demo: worker pid {worker.pid}, log {worker_log}", flush=True)
        board, board_url, token = _start_dashboard(env, dashboard_port, logdir)
        print(
            f"demo: dashboard {board_url} (log in with any name and the token {token}; "
            f"API: Authorization: Bearer {token})",
            flush=True,
        )
        generator = _Generator(bootstrap, rate, customers)
        counter = _OutputCounter(bootstrap)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        store = redis.Redis.from_url(stack.redis_url)
        totals = Totals()
        group = env.get("CRM_APP_ID", "crmstream")

        def refresh() -> None:
            totals.published = generator.sent
            totals.processed = _processed(admin, group)
            totals.customers = int(store.scard(CUSTOMERS_KEY))
            totals.tier_changes = counter.counts[topics.TIER_CHANGES]
            totals.alerts = counter.counts[topics.ALERTS]
            totals.deadlettered = counter.counts[topics.DEADLETTER]

        generator.start()
        counter.start()
        started = time.monotonic()
        window: deque[tuple[float, int]] = deque([(started, 0)], maxlen=6)
        try:
            while not stopping.is_set():
                if seconds and time.monotonic() - started >= seconds:
                    break
                stopping.wait(2.0)
                if worker.poll() is not None:
                    print(
                        f"demo: the worker exited with code {worker.returncode}; see {worker_log}"
                    )
                    break
                refresh()
                # Offsets are committed at each checkpoint: a rate over ~10 s reads steadier.
                now = time.monotonic()
                window.append((now, totals.processed))
                per_second = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
                print(
                    f"demo: {now - started:5.0f}s  published {totals.published}  "
                    f"checkpointed {totals.processed} ({per_second:.0f}/s)  "
                    f"customers {totals.customers}  tier changes {totals.tier_changes}  "
                    f"alerts {totals.alerts}  dead-lettered {totals.deadlettered}",
                    flush=True,
                )
        except KeyboardInterrupt:
            print("\ndemo: stopping", flush=True)
        finally:
            generator.stopped.set()
            generator.join(30)
            elapsed = time.monotonic() - started
            # Let the worker finish what was published (bounded), then stop everything.
            deadline = time.monotonic() + 30
            with contextlib.suppress(Exception):
                while worker.poll() is None and time.monotonic() < deadline:
                    refresh()
                    if totals.processed >= generator.sent:
                        break
                    time.sleep(0.5)
            time.sleep(1.0)  # the counter catches the last outputs
            with contextlib.suppress(Exception):
                refresh()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            board.send_signal(signal.SIGTERM)
            try:
                board.wait(10)
            except subprocess.TimeoutExpired:
                board.kill()
                board.wait()
            counter.stopped.set()
            counter.join(5)
            admin.close()
            store.close()
    print(
        f"demo: {elapsed:.0f}s, {totals.processed / max(elapsed, 1e-9):.0f} events/s on average; "
        f"worker log {worker_log}"
    )
    print(totals.final_line(), flush=True)
    return 0 if totals.processed else 1
