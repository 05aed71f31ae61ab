"""A worker's life: it reports itself healthy, and when its broker goes away it logs a
bounded number of lines, reports itself unhealthy and still stops on SIGTERM in time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from crmstream.streams.health import read_heartbeats
from crmstream.streams.worker import EXIT_SHUTDOWN_TIMEOUT
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

#: CRM_SHUTDOWN_TIMEOUT of these workers, seconds (short, to keep the tests short).
SHUTDOWN_TIMEOUT = 5.0


def health(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmstream.streams.cli", "health", *args],
        env={**os.environ, **stack.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def statuses(stack) -> list[str]:
    """The workers' statuses, read straight from Redis (polling the command costs more)."""
    return [beat.status for beat in read_heartbeats(stack.redis_url)]


def log_lines(worker) -> int:
    return len(worker.log().splitlines())


def test_a_healthy_worker_says_so_and_stops_cleanly(stack, start_worker):
    with start_worker(shutdown_timeout=str(SHUTDOWN_TIMEOUT)) as worker:
        wait_until(lambda: statuses(stack) == ["ok"], 60, "the worker to report ok")
        result = health(stack, "--json")
        assert result.returncode == 0
        (reported,) = json.loads(result.stdout)["workers"]
        assert reported["status"] == "ok"
        assert reported["pid"] == worker.process.pid
        assert reported["app_id"] == "crmstream"

        started = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - started < SHUTDOWN_TIMEOUT
    # A clean stop removes the heartbeat: nobody is left to say "ok".
    result = health(stack)
    assert result.returncode == 1
    assert "no worker" in result.stdout


def test_a_worker_whose_broker_goes_away(stack, start_worker):
    with start_worker(shutdown_timeout=str(SHUTDOWN_TIMEOUT)) as worker:
        wait_until(lambda: statuses(stack) == ["ok"], 60, "the worker to report ok")
        # The stack's first process is the broker (EmbeddedStack starts it first).
        broker = stack._processes[0]
        assert "broker" in broker.args
        before = log_lines(worker)
        broker.terminate()
        broker.wait(10)
        time.sleep(10)
        # Before the rate limit: ~72 lines a second (723 in these 10 s).
        logged = log_lines(worker) - before
        assert logged < 100, worker.log()[-5000:]

        wait_until(lambda: statuses(stack) == ["broker_unreachable"], 20, "broker_unreachable")
        result = health(stack)
        assert result.returncode == 1
        assert "broker_unreachable" in result.stdout
        assert "no Kafka broker answered" in result.stdout

        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        code = worker.process.wait(SHUTDOWN_TIMEOUT + 30)
        took = time.monotonic() - started
    # Before the watchdog: 61 s (Faust waits a minute for its consumer thread).
    assert took < SHUTDOWN_TIMEOUT + 5, f"stopped after {took:.1f}s"
    assert code in (0, EXIT_SHUTDOWN_TIMEOUT)
    if code == EXIT_SHUTDOWN_TIMEOUT:
        assert "(CRM_SHUTDOWN_TIMEOUT); exiting with code 3. Waiting for:" in worker.log()
