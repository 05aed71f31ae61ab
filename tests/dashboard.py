"""Helpers for tests of the dashboard: a ``crmstream dashboard`` process, alerts put on
``crm.alerts``, profiles written to Redis, and a reader of server-sent events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import redis

from crmstream.models.profile import Profile
from crmstream.schemas.outputs import Alert, deterministic_id
from crmstream.streams import topics
from crmstream.streams.dev.embedded import free_port
from crmstream.streams.profiles import (
    CUSTOMERS_KEY,
    HISTORY_KINDS,
    history_keys,
    profile_key,
    profile_to_fields,
)
from crmstream.streams.tools.publisher import Publisher
from tests.helpers import wait_until

TOKEN = "test-token-0123456789"


class DashboardProcess:
    """A ``crmstream dashboard`` subprocess on a free port, its log kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, token: str = TOKEN) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crmstream.streams.cli", "dashboard", "--port", str(self.port)],
            env={**os.environ, "CRM_API_TOKEN": token, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._healthy, 30, f"the dashboard to answer /health (log: {log_path})")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"dashboard exited: {self.log()}")
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, authenticated: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if authenticated else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def make_alert(n: int, customer_id: str = "c1", kind="strongly_negative", severity="warning"):
    return Alert(
        alert_id=deterministic_id(f"event-{n}", kind),
        customer_id=customer_id,
        kind=kind,
        severity=severity,
        score=-0.8,
        reason=f"test alert {n}",
        occurred_at=datetime.now(UTC),
        source_event_ids=[f"event-{n}"],
        excerpt="this is awful",
    )


def publish_alerts(bootstrap: list[str], alerts: list[Alert]) -> None:
    with Publisher(bootstrap) as publisher:
        for alert in alerts:
            publisher.send(topics.ALERTS, msgspec.json.encode(alert), alert.customer_id)
        publisher.flush()


def store_profile(redis_url: str, profile: Profile) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(profile_key(profile.customer_id), mapping=profile_to_fields(profile))
        for kind, key in zip(HISTORY_KINDS, history_keys(profile.customer_id), strict=True):
            entries = getattr(profile.history, kind)
            if entries:
                client.rpush(key, *map(msgspec.json.encode, entries))
        client.sadd(CUSTOMERS_KEY, profile.customer_id)
    finally:
        client.close()


class EventStream:
    """Reads server-sent events from an open ``httpx`` streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: Iterator[str] = response.iter_lines()

    def next_event(self) -> dict[str, str]:
        """The next event (its ``id``, ``event`` and ``data`` fields); comments skipped."""
        event: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in event:
                    return event
                event = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")
        raise AssertionError("the event stream ended")

    def alerts(self, count: int) -> list[tuple[str, dict]]:
        """The next ``count`` alert events as (id, alert), skipping other events."""
        found = []
        while len(found) < count:
            event = self.next_event()
            if event.get("event") == "alert":
                found.append((event["id"], msgspec.json.decode(event["data"])))
        return found
