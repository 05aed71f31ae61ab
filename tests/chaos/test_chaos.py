"""Faults under load: workers killed with SIGKILL and scaled out and in (C1), Redis
restarted (C2). ``make test`` runs reduced schedules; ``make chaos`` the full ones
(``CRM_CHAOS_FULL=1``). See :mod:`tests.chaos.harness` for what is checked."""

from __future__ import annotations

import pytest

from crmstream.streams.dev.embedded import EmbeddedStack
from tests.chaos.harness import ChaosRun, chunks, expected, full_runs, make_stream

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def assert_clean(figures, want) -> None:
    assert figures.problems == []
    assert (figures.lost, figures.double_applied) == (0, 0)
    assert figures.conflicting_outputs == 0
    assert (figures.missing_outputs, figures.unexpected_outputs) == (0, 0)
    assert figures.broken_chains == 0
    assert figures.learned == want.events
    assert figures.recovery_seconds <= 60.0


def test_c1_workers_killed_and_scaled_under_load(stack, tmp_path):
    """C1: kill -9 of random workers at random moments, each replaced, and scaling."""
    if full_runs():
        events, customers, partitions, pieces, kills = 100_000, 5000, 8, 40, 20
    else:
        events, customers, partitions, pieces, kills = 3000, 300, 4, 8, 2
    stream = make_stream(events, customers)
    want = expected(stream)
    run = ChaosRun(stack, tmp_path, partitions)
    parts = chunks(stream, pieces)
    # Scale 1 -> 3 in the first third, back to 1 in the last; kills spread in between.
    grow, shrink = len(parts) // 6, len(parts) - 2
    kill_at = set(run.rng.sample(range(1, len(parts) - 1), min(kills, len(parts) - 2)))
    try:
        run.start_worker()
        for index, part in enumerate(parts):
            run.publish(part)
            run.wait_progress()
            if index == grow:
                run.scale_to(3)
            if index in kill_at:
                run.kill_one()
            if index == shrink:
                run.scale_to(1)
        run.catch_up(want.per_topic, timeout=max(240, events / 300))
    finally:
        run.stop_all()
    assert_clean(run.check(want), want)


@pytest.fixture
def durable_stack():
    """A fresh broker and a Redis with its append-only file on, as in production."""
    with EmbeddedStack(appendonly=True) as running:
        yield running


def test_c2_redis_restarted_under_load(durable_stack, tmp_path):
    """C2: Redis (AOF on) restarted while two workers apply a stream."""
    if full_runs():
        events, customers, partitions, pieces, restarts = 30_000, 2000, 8, 15, 5
    else:
        events, customers, partitions, pieces, restarts = 2000, 200, 4, 6, 2
    stream = make_stream(events, customers, seed=9)
    want = expected(stream)
    run = ChaosRun(durable_stack, tmp_path, partitions, seed=3)
    parts = chunks(stream, pieces)
    restart_at = set(run.rng.sample(range(1, len(parts)), restarts))
    try:
        run.start_worker()
        run.start_worker()
        for index, part in enumerate(parts):
            run.publish(part)
            run.wait_progress()
            if index in restart_at:
                run.restart_store()
        run.catch_up(want.per_topic, timeout=max(240, events / 300))
    finally:
        run.stop_all()
    assert_clean(run.check(want), want)
