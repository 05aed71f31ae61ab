"""Helpers for tests that run real workers against the embedded servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faust.types import Message
from kafka import KafkaAdminClient

from crmstream.streams.tools import topicreader


def consumed(
    topic: str,
    partition: int,
    offset: int,
    key: str | bytes,
    value: bytes,
    generation_id: int | None = None,
) -> Message:
    """A record as the worker's consumer hands it over (for in-process batches)."""
    raw_key = key.encode() if isinstance(key, str) else key
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=time.time(),
        timestamp_type=0,
        headers=[],
        key=raw_key,
        value=value,
        checksum=b"",
        serialized_key_size=len(raw_key),
        serialized_value_size=len(value),
        generation_id=generation_id,
    )


class Discard:
    """A sink whose outputs go nowhere: for runs of the worker's batch path that check
    state, not outputs."""

    async def send(self, outputs: object) -> None:
        pass


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class WorkerProcess:
    """A ``crmstream worker`` subprocess with its log captured to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crmstream.streams.cli", "worker"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """Stop gracefully (SIGTERM) and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def committed_total(bootstrap: list[str], group: str, topic: str) -> int:
    """Sum of a consumer group's committed offsets on ``topic`` (0 if none yet)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def read_topic(bootstrap: list[str], topic: str) -> list:
    """Every record on ``topic`` from the beginning, in partition order."""
    return list(topicreader.read_topic(bootstrap, topic, idle=2.0))


def load_checkpoints(redis_url: str, partitions: int) -> dict[int, dict]:
    """The model checkpoints of partitions ``0..partitions-1`` that exist, unsealed with
    the settings' key."""
    from crmstream.streams.checkpoints import CheckpointStore
    from crmstream.streams.settings import Settings

    async def fetch() -> dict[int, dict]:
        store = CheckpointStore(redis_url, Settings().checkpoint_hmac_key())
        try:
            return await store.load(list(range(partitions)))
        finally:
            await store.close()

    return asyncio.run(fetch())


def learned_total(redis_url: str, partitions: int) -> int:
    """Events the checkpointed models of ``partitions`` partitions have learned."""
    return sum(state["learned"] for state in load_checkpoints(redis_url, partitions).values())


def load_profiles(redis_url: str, customers: list[str]) -> dict:
    """The stored profiles of those of ``customers`` that have one."""
    from crmstream.streams.profiles import ProfileStore

    async def fetch() -> dict:
        store = ProfileStore(redis_url)
        try:
            return await store.get_many(customers)
        finally:
            await store.close()

    return asyncio.run(fetch())
