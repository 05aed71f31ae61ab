"""The README's kcat block, run by bash as written against the embedded broker and a
worker, with Debian 12's kcat (librdkafka 2.0.2) on the confluent-kafka wheel's
librdkafka: a purchase lands where murmur2 puts its key and is applied, and kcat's own
consumer group reads the tier change it made.

Under ``CI=true`` a missing kcat fails the test (the Makefile's ``system`` target installs
it); elsewhere the test is skipped with the install command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crmstream.streams import topics
from crmstream.streams.routing import partition_for
from tests.helpers import load_profiles, read_topic, wait_until

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def kcat_block() -> list[str]:
    (block,) = [
        b for b in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S) if "kcat -P" in b
    ]
    return block.replace("\\\n", "").splitlines()


def run(lines: list[str], bootstrap: str, cwd: Path) -> subprocess.CompletedProcess:
    script = "set -e\n" + "\n".join(lines).replace("localhost:9092", bootstrap)
    script = script.replace(".venv/bin/python", sys.executable)
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_readme_kcat_block_works_as_written(stack, start_worker, tmp_path):
    if not shutil.which("kcat"):
        message = "kcat is not installed: apt-get install -y kcat (make test does it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    bootstrap = stack.kafka_url.removeprefix("kafka://")
    lines = kcat_block()
    (consume,) = [line for line in lines if line.startswith("kcat -C")]
    setup = [line for line in lines if line.startswith(("mkdir", "export"))]
    with start_worker() as worker:
        produced = run([line for line in lines if line != consume], bootstrap, tmp_path)
        assert produced.returncode == 0, produced.stderr
        wait_until(lambda: load_profiles(stack.redis_url, ["bob"]).get("bob"), 60, "bob")
        (purchase,) = read_topic([bootstrap], topics.PURCHASES)
        assert purchase.key == b"bob"
        assert purchase.partition == partition_for(b"bob", 4)
        wait_until(lambda: read_topic([bootstrap], topics.TIER_CHANGES), 30, "bob's tier change")

        consumed = run([*setup, consume], bootstrap, tmp_path)
        assert consumed.returncode == 0, consumed.stderr
        key, value = consumed.stdout.strip().split(" ", 1)
        change = json.loads(value)
        assert (key, change["customer_id"], change["to_tier"]) == ("bob", "bob", "silver")
        assert worker.stop() == 0
