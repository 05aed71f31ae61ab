"""The worker's process concerns without a broker: log rate limiting, the shutdown
watchdog, and the health verdict."""

from __future__ import annotations

import logging
import threading

import pytest

from crmstream.streams.health import WorkerHeartbeat, judge, verdict
from crmstream.streams.worker import EXIT_SHUTDOWN_TIMEOUT, RepeatFilter, ShutdownWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str, name: str = "aiokafka", level: int = logging.ERROR, *args: object):
    return logging.LogRecord(name, level, __file__, 1, message, args or None, None)


def test_a_repeated_error_passes_once_per_interval_and_counts_the_rest():
    clock = Clock()
    repeats = RepeatFilter(interval=10.0, clock=clock)
    passed = []
    for tick in range(1000):  # 100 s of an error every 0.1 s, as aiokafka retries
        clock.now = tick / 10
        line = record("Unable connect to node with id %s: %s", "aiokafka", logging.ERROR, 1, "x")
        if repeats.filter(line):
            passed.append(line.getMessage())
    assert len(passed) == 10
    assert passed[0] == "Unable connect to node with id 1: x"
    assert passed[1] == "Unable connect to node with id 1: x [99 more like this in the last 10s]"
    assert repeats.suppressed == 990


def test_distinct_messages_loggers_and_levels_are_limited_separately():
    repeats = RepeatFilter(interval=10.0, clock=Clock())
    assert repeats.filter(record("a"))
    assert repeats.filter(record("b"))
    assert repeats.filter(record("a", "aiokafka.consumer.fetcher"))
    assert repeats.filter(record("a", "aiokafka", logging.WARNING))
    assert not repeats.filter(record("a"))


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("aiokafka", logging.INFO),  # lifecycle lines ("Stopping...") are never held back
        ("crmstream.streams.worker", logging.ERROR),  # our own logs say things once
        ("aiokafkaesque", logging.ERROR),  # a prefix of the name is not its parent
    ],
)
def test_records_outside_the_limited_loggers_and_levels_always_pass(name, level):
    repeats = RepeatFilter(interval=10.0, clock=Clock())
    assert all(repeats.filter(record("same", name, level)) for _ in range(5))


def test_memory_is_bounded_when_messages_never_repeat():
    clock = Clock()
    repeats = RepeatFilter(interval=10.0, clock=clock, max_keys=50)
    for n in range(1000):
        clock.now = n / 100
        assert repeats.filter(record(f"offset {n}"))
    assert len(repeats._seen) <= 50


def test_the_watchdog_exits_with_its_code_and_says_what_it_waited_for(caplog):
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    watchdog = ShutdownWatchdog(0.05, lambda: "Worker/App/Consumer", exit=fake_exit)
    with caplog.at_level(logging.CRITICAL, logger="crmstream.streams.worker"):
        watchdog.arm("SIGTERM")
        watchdog.arm("SIGTERM")  # a second signal does not start a second countdown
        assert exited.wait(5)
        watchdog.thread.join(5)
    assert codes == [EXIT_SHUTDOWN_TIMEOUT]
    assert "after SIGTERM" in caplog.text and "Worker/App/Consumer" in caplog.text


def test_a_disarmed_watchdog_does_nothing():
    codes: list[int] = []
    watchdog = ShutdownWatchdog(0.05, lambda: "", exit=codes.append)
    watchdog.arm("SIGTERM")
    watchdog.disarm()
    watchdog.thread.join(5)
    assert codes == []


def beat(status: str) -> WorkerHeartbeat:
    return WorkerHeartbeat("h:1", "crmstream", "h", 1, status, 0.0, 0.0)


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["ok"], 0),
        (["ok", "ok"], 0),
        (["ok", "starting"], 0),
        (["ok", "stopping"], 0),
        ([], 1),
        (["starting"], 1),
        (["stopping"], 1),
        (["ok", "broker_unreachable"], 1),
        (["redis_unreachable"], 1),
    ],
)
def test_health_needs_one_ok_worker_and_no_unhealthy_one(statuses, code):
    assert verdict([beat(s) for s in statuses]) == code


def test_stopping_wins_over_problems_and_problems_over_readiness():
    assert judge(stopping=True, ready=False, redis_problem=True, broker_problem=True) == (
        "stopping"
    )
    assert judge(stopping=False, ready=True, redis_problem=True, broker_problem=True) == (
        "redis_unreachable"
    )
    assert judge(stopping=False, ready=False, redis_problem=False, broker_problem=True) == (
        "broker_unreachable"
    )


def test_tune_gc_freezes_start_up_objects_and_makes_collections_rarer():
    import gc

    from crmstream.streams.worker import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
