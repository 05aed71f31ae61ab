"""A new user's configuration mistakes, through the real command against real servers:
exit code 2, one line on stderr naming the problem, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from crmstream.streams.dev.embedded import free_port
from tests.helpers import read_topic

pytestmark = pytest.mark.integration


def crmstream(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    return subprocess.run(
        [sys.executable, "-m", "crmstream.streams.cli", *args],
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def reason(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of a configuration error (fails the test if it is anything else)."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crmstream: ")
    return lines[0]


def test_a_redis_url_that_is_not_redis():
    result = crmstream("profile", "alice", env={"CRM_REDIS_URL": "http://127.0.0.1:6379/0"})
    line = reason(result)
    assert "CRM_REDIS_URL" in line and "redis://, rediss://, unix:// or, for a cluster" in line


def test_a_database_the_server_does_not_have(stack):
    url = stack.redis_url.rsplit("/", 1)[0] + "/99"
    line = reason(crmstream("profile", "alice", env={**stack.env(), "CRM_REDIS_URL": url}))
    assert "CRM_REDIS_URL" in line and "DB index is out of range" in line


def test_a_redis_url_that_points_at_the_broker(stack):
    url = f"redis://127.0.0.1:{stack.kafka_port}/0"
    started = time.monotonic()
    line = reason(crmstream("models", env={**stack.env(), "CRM_REDIS_URL": url}))
    assert f"127.0.0.1:{stack.kafka_port}" in line and "is it a Redis server?" in line
    assert time.monotonic() - started < 20


def test_a_redis_server_that_is_not_running():
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = reason(crmstream("health", env={"CRM_REDIS_URL": url}))
    assert "cannot reach Redis" in line and "CRM_REDIS_URL" in line


def test_a_worker_without_a_broker(stack):
    env = {**stack.env(), "CRM_KAFKA_URL": f"kafka://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    line = reason(crmstream("worker", env=env))
    assert "no Kafka broker answered" in line and "CRM_KAFKA_URL" in line
    assert time.monotonic() - started < 20


def test_publishing_a_file_that_does_not_exist(stack, tmp_path):
    missing = tmp_path / "missing.jsonl"
    line = reason(crmstream("publish", "crm.purchases", str(missing), env=stack.env()))
    assert line == f"crmstream: {missing}: No such file or directory"


def test_replaying_fixes_from_a_file_that_does_not_exist(stack, tmp_path):
    missing = tmp_path / "fixed.jsonl"
    line = reason(crmstream("deadletter", "replay", "--fix", str(missing), env=stack.env()))
    assert str(missing) in line and "No such file or directory" in line


def test_listing_dead_letters_without_a_broker():
    env = {"CRM_KAFKA_URL": f"kafka://127.0.0.1:{free_port()}"}
    assert "no Kafka broker answered" in reason(crmstream("deadletter", "list", env=env))


def test_a_stack_on_a_port_in_use(stack):
    line = reason(crmstream("stack", "--redis-port", str(stack.redis_port), env={}))
    assert f"port {stack.redis_port} (--redis-port) is already in use" in line


def test_a_dashboard_without_a_token():
    line = reason(crmstream("dashboard", env={}))
    assert "CRM_API_TOKEN must be set" in line


def test_a_dashboard_on_a_port_in_use(stack):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = crmstream(
            "dashboard", "--port", str(port), env={**stack.env(), "CRM_API_TOKEN": "t" * 20}
        )
    assert f"port {port} (--port) is already in use" in reason(result)


def test_publish_refuses_a_topic_that_is_not_an_input(stack, tmp_path):
    source = tmp_path / "one.jsonl"
    source.write_text('{"customer_id": "alice", "note": 1}\n')
    line = reason(crmstream("publish", "crm.nope", str(source), env=stack.env()))
    assert "crm.nope is not a crmstream input topic" in line
    assert "--any-topic" in line
    sent = crmstream("publish", "crm.nope", str(source), "--any-topic", env=stack.env())
    assert sent.returncode == 0, sent.stderr
    assert "published 1 events to crm.nope (0 refused)" in sent.stdout
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    (record,) = read_topic(bootstrap, "crm.nope")
    assert record.key == b"alice"
