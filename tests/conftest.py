"""Shared fixtures: the embedded servers and helpers to run real workers against them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crmstream.streams.dev.embedded import EmbeddedStack
from tests.helpers import WorkerProcess


@pytest.fixture
def stack() -> Iterator[EmbeddedStack]:
    """A fresh broker and Redis for one test (both start in well under a second)."""
    with EmbeddedStack() as running:
        yield running


@pytest.fixture
def start_worker(tmp_path: Path, stack: EmbeddedStack):
    """Start ``crmstream worker`` processes against ``stack``; all are stopped at teardown."""
    workers: list[WorkerProcess] = []

    @contextmanager
    def _start(**env: str) -> Iterator[WorkerProcess]:
        full_env = {
            **stack.env(),
            "CRM_PARTITIONS": "4",
            "CRM_SESSION_TIMEOUT": "6",
            **{f"CRM_{k.upper()}": v for k, v in env.items()},
        }
        worker = WorkerProcess(full_env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        try:
            yield worker
        finally:
            worker.stop()

    yield _start
    for worker in workers:
        worker.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers), the tests that start servers
    and worker processes run one after another on one worker, as they would alone: their
    timeouts are sized for that. The pure tests and doctests run beside them on the other."""
    for item in items:
        if item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.xdist_group("servers"))
