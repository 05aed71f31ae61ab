"""Configuration errors: URL validation in Settings, and every command's one-line reason
with exit code 2 (in process; tests/integration/test_cli_errors.py runs the real command
against real servers)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from crmstream.streams.cli import configuration_problem, main
from crmstream.streams.settings import Settings, redact_url

#: One invocation of every command, with arguments that would otherwise be valid.
EVERY_COMMAND = [
    ["stack"],
    ["worker"],
    ["health"],
    ["publish", "crm.purchases", "-"],
    ["deadletter", "list"],
    ["deadletter", "replay"],
    ["profile", "alice"],
    ["models"],
    ["demo", "--seconds", "1"],
    ["datasets", "sentiment", "--out", "unused"],
    ["backfill", "cdnow"],
    ["evaluate", "sentiment", "--train", "a.jsonl", "--test", "b.jsonl"],
    ["evaluate", "propensity"],
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("CRM_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://cache",
        "rediss://user:secret@cache:6380/15",
        "redis://:secret@cache:6379",
        "unix:///run/redis.sock?db=3",
    ],
)
def test_accepts_redis_urls(monkeypatch, url):
    monkeypatch.setenv("CRM_REDIS_URL", url)
    assert Settings().redis_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379/0", "must start with redis://, rediss://, unix:// or, for a cl"),
        ("127.0.0.1:6379", "must start with redis://"),
        ("redis://127.0.0.1:6379/zero", "the database must be a number"),
        ("redis://127.0.0.1:6379/-1", "the database must be a number"),
        ("redis://127.0.0.1:70000/0", "the port must be a number from 1 to 65535"),
        ("redis://127.0.0.1:port/0", "the port must be a number from 1 to 65535"),
        ("redis:///0", "needs a host"),
        ("unix://", "needs the socket path"),
    ],
)
def test_rejects_redis_urls_with_the_reason(monkeypatch, url, problem):
    monkeypatch.setenv("CRM_REDIS_URL", url)
    with pytest.raises(ValidationError, match="redis_url") as caught:
        Settings()
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "url", ["kafka://", "kafka://;", "kafka://broker:", "kafka://broker:0", "kafka://:9092"]
)
def test_rejects_kafka_urls_without_a_server(monkeypatch, url):
    monkeypatch.setenv("CRM_KAFKA_URL", url)
    with pytest.raises(ValidationError, match="kafka://host:port"):
        Settings()


def test_a_redis_password_never_reaches_a_message(monkeypatch):
    monkeypatch.setenv("CRM_REDIS_URL", "redis://app:hunter2@cache:6379/x")
    with pytest.raises(ValidationError) as caught:
        Settings()
    reason = configuration_problem(caught.value, None)
    assert "hunter2" not in reason
    assert "redis://app:***@cache:6379/x" in reason
    assert redact_url("redis://app:hunter2@cache/0") == "redis://app:***@cache/0"


def test_shutdown_timeout_is_a_setting(monkeypatch):
    assert Settings().shutdown_timeout == 15.0
    monkeypatch.setenv("CRM_SHUTDOWN_TIMEOUT", "2.5")
    assert Settings().shutdown_timeout == 2.5
    monkeypatch.setenv("CRM_SHUTDOWN_TIMEOUT", "0")
    with pytest.raises(ValidationError, match="shutdown_timeout"):
        Settings()


def one_line_reason(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("crmstream: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_every_command_refuses_a_bad_redis_url_in_one_line(monkeypatch, capsys, argv):
    monkeypatch.setenv("CRM_REDIS_URL", "http://127.0.0.1:6379/0")
    reason = one_line_reason(capsys, argv)
    assert "CRM_REDIS_URL" in reason and "redis://" in reason


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_every_command_names_each_bad_variable(monkeypatch, capsys, argv):
    monkeypatch.setenv("CRM_PARTITIONS", "eight")
    monkeypatch.setenv("CRM_KAFKA_URL", "127.0.0.1:9092")
    reason = one_line_reason(capsys, argv)
    assert "CRM_PARTITIONS" in reason and "'eight'" in reason
    assert "CRM_KAFKA_URL" in reason


def test_thresholds_that_contradict_each_other_are_a_configuration_error(monkeypatch, capsys):
    monkeypatch.setenv("CRM_TIER_SILVER", "600")  # above the default gold (500)
    assert "silver < gold < platinum" in one_line_reason(capsys, ["profile", "alice"])
