"""The README's kcat block, run by bash as written against the embedded broker, with
Debian 12's kcat (librdkafka 2.0.2) on the confluent-kafka wheel's librdkafka: its
producer puts a purchase where murmur2 puts the key, in the contract, and its consumer
group reads the tier change the worker's fold makes of that purchase.

No worker runs here (one costs ~10 s): a record on the right partition with a valid value
is applied like any other (tests/integration/test_third_party_clients.py), and the tier
change is the worker's own output record, made by the worker's own fold.

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
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from crmstream.models.events import apply_event
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.schemas import Purchase, decode, encode
from crmstream.streams import topics
from crmstream.streams.routing import partition_for
from crmstream.streams.settings import Settings
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
PARTITIONS = 4


def kcat_block() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if "kcat -P" in b]
    return block.replace("\\\n", "").splitlines()


def run(lines: list[str], bootstrap: str, cwd: Path) -> subprocess.CompletedProcess:
    script = "set -e\n" + "\n".join(lines).replace("localhost:9092", bootstrap)
    script = script.replace(".venv/bin/python", sys.executable)
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_readme_kcat_block_works_as_written(stack, tmp_path):
    if not shutil.which("kcat"):
        message = "kcat is not installed: apt-get install -y kcat (make test does it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    bootstrap = stack.kafka_url.removeprefix("kafka://")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in (topics.PURCHASES, topics.TIER_CHANGES)]
    )
    admin.close()
    lines = kcat_block()
    (consume,) = [line for line in lines if line.startswith("kcat -C")]
    setup = [line for line in lines if line.startswith(("mkdir", "export"))]

    produced = run([line for line in lines if line != consume], bootstrap, tmp_path)
    assert produced.returncode == 0, produced.stderr
    (record,) = read_topic([bootstrap], topics.PURCHASES)
    assert record.key == b"bob"
    assert record.partition == partition_for(b"bob", PARTITIONS)
    purchase = decode(record.value, Purchase)  # the worker's decoder accepts it

    # What the worker sends for it: bob's first purchase (CLV 150) makes him silver.
    _, outputs = apply_event(
        Profile(customer_id="bob"),
        purchase,
        record.offset,
        Settings().policies(),
        PurchaseModels.create(),
    )
    (change,) = outputs
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(topics.TIER_CHANGES, key=b"bob", value=encode(change)).get(30)
    producer.close()

    consumed = run([*setup, consume], bootstrap, tmp_path)
    assert consumed.returncode == 0, consumed.stderr
    key, value = consumed.stdout.strip().split(" ", 1)
    read = json.loads(value)
    assert (key, read["change_id"], read["to_tier"]) == ("bob", change.change_id, "silver")
