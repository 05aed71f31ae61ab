"""``bench/mixed.py --quick`` runs end to end and writes its figures (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crmstream.streams import topics

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "mixed.py"

TINY = [
    "--quick",
    "--runs",
    "1",
    "--events",
    "2000",
    "--latency-seconds",
    "2",
    "--soak-minutes",
    "0.1",
]


def test_mixed_bench_quick_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "mixed.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), *TINY, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads(out.read_text())
    assert {
        "config",
        "throughput",
        "cpu_us_per_event",
        "stages_us_per_event",
        "latency_ms",
        "scaling",
        "soak",
        "checkpoint",
        "runs",
    } <= results.keys()
    for kind in ("crmstream", "faust"):
        assert results["throughput"][kind]["all"]["median"] > 0, kind
        for topic in (topics.PURCHASES, topics.CHATS, topics.FEEDBACK):  # what it publishes
            # None only if every event of the topic was in the first, unmeasured batch.
            per_topic = results["throughput"][kind][topic]
            assert per_topic is None or per_topic["median"] > 0, (kind, topic)
        assert results["cpu_us_per_event"][kind]["median"] > 0
        assert results["scaling"][kind]["two"]["median"] > 0
    assert set(results["latency_ms"]) == {"50%", "80%"}
    assert results["soak"]["rss_warm_mb"] > 0
    assert results["soak"]["rss_end_mb"] > 0
