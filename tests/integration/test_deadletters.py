"""Malformed input is dead-lettered with the right reason, valid input is not lost, and
fixed dead letters replay in full, once."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from crmstream.schemas import ChatMessage, Feedback, Purchase
from crmstream.streams import topics
from crmstream.streams.profiles import ProfileStore
from crmstream.streams.tools.publisher import Publisher
from crmstream.streams.tools.replay import dead_letters
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

VALID = 10_000
MALFORMED = 10_000
CUSTOMERS = 200
START = datetime(2026, 2, 1, tzinfo=UTC)


def valid_event(rng: random.Random, n: int, customer: str | None = None):
    """A valid event of a random input type: (topic, record)."""
    customer = customer or f"c{rng.randrange(CUSTOMERS):03d}"
    common = {
        "event_id": f"ev-{n}",
        "customer_id": customer,
        "occurred_at": START + timedelta(seconds=n),
    }
    roll = rng.random()
    if roll < 0.5:
        return topics.PURCHASES, Purchase(**common, amount=round(rng.uniform(1, 80), 2), cost=1.0)
    if roll < 0.8:
        sender = rng.choice(["customer", "customer", "agent", "bot"])
        text = rng.choice(["where is my parcel", "thanks a lot", "this is broken again"])
        return topics.CHATS, ChatMessage(
            **common, conversation_id=f"k{n % 97}", sender=sender, text=text
        )
    return topics.FEEDBACK, Feedback(**common, rating=rng.randint(1, 5), text="ok")


def as_dict(record) -> dict:
    return msgspec.to_builtins(record)


def corrupt(kind: str, topic: str, record) -> bytes:
    """The record's JSON damaged so that the worker must reject it with code ``kind``."""
    data = as_dict(record)
    if kind == "invalid_json":
        return msgspec.json.encode(data)[:-7]
    if kind == "invalid_utf8":
        return msgspec.json.encode({**data, "event_id": "@@"}).replace(
            b"@@", b"\xff\xfe" + record.event_id.encode()
        )
    if kind == "too_large":
        return msgspec.json.encode({**data, "padding": "x" * 70_000})
    if kind == "too_deep":
        return msgspec.json.encode({**data, "extra": 0}).replace(
            b'"extra":0', b'"extra":' + b"[" * 40 + b"]" * 40
        )
    if kind == "unknown_schema_version":
        return msgspec.json.encode({**data, "schema_version": 2})
    if kind == "bad_customer_id":
        return msgspec.json.encode({**data, "customer_id": f"bad id {record.event_id}"})
    if kind == "unsupported_currency":
        return msgspec.json.encode({**data, "currency": "XTS"})
    # schema_violation, in the way that fits the topic
    if topic == topics.PURCHASES:
        return msgspec.json.encode({**data, "amount": -data["amount"] - 1})
    if topic == topics.CHATS:
        return msgspec.json.encode({**data, "sender": "robot"})
    return msgspec.json.encode({**data, "rating": 9})


KINDS = [
    "invalid_json",
    "invalid_utf8",
    "too_large",
    "too_deep",
    "schema_violation",
    "unknown_schema_version",
    "bad_customer_id",
    "unsupported_currency",
]


def make_stream(seed: int = 11):
    """Valid and malformed events shuffled together, and per malformed value its code and
    the valid record it should have been."""
    rng = random.Random(seed)
    valid = [valid_event(rng, n) for n in range(VALID)]
    malformed: dict[bytes, tuple[str, str, object]] = {}
    weights = [1 if kind == "too_large" else 10 for kind in KINDS]
    n = VALID
    while len(malformed) < MALFORMED:
        kind = rng.choices(KINDS, weights)[0]
        topic, record = valid_event(rng, n)
        if kind == "unsupported_currency":
            topic, record = (
                topics.PURCHASES,
                Purchase(
                    event_id=f"ev-{n}",
                    customer_id=record.customer_id,
                    occurred_at=record.occurred_at,
                    amount=5.0,
                ),
            )
        n += 1
        malformed[corrupt(kind, topic, record)] = (kind, topic, record)
    stream = [(topic, encode_key(record), msgspec.json.encode(record)) for topic, record in valid]
    stream += [(topic, encode_key(record), raw) for raw, (_, topic, record) in malformed.items()]
    rng.shuffle(stream)
    return valid, malformed, stream


def encode_key(record) -> bytes:
    return record.customer_id.encode()


def expected_profiles(records) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(Counter)
    for record in records:
        mine = totals[record.customer_id]
        if isinstance(record, Purchase):
            mine["orders"] += 1
            mine["revenue"] += record.amount
        elif isinstance(record, ChatMessage):
            mine["messages"] += record.sender == "customer"
        else:
            mine["feedback"] += 1
    return totals


def observed_profiles(redis_url: str, customer_ids) -> dict[str, dict[str, float]]:
    async def fetch():
        store = ProfileStore(redis_url)
        try:
            found = {}
            for customer_id in customer_ids:
                p = await store.get(customer_id)
                found[customer_id] = (
                    None
                    if p is None
                    else {
                        "orders": p.orders,
                        "revenue": round(p.revenue, 6),
                        "messages": p.messages,
                        "feedback": p.feedback,
                    }
                )
            return found
        finally:
            await store.close()

    return asyncio.run(fetch())


def normalised(totals):
    return {
        c: {
            "orders": int(t["orders"]),
            "revenue": round(t["revenue"], 6),
            "messages": int(t["messages"]),
            "feedback": int(t["feedback"]),
        }
        for c, t in totals.items()
    }


def run_cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmstream.streams.cli", *args],
        env={**os.environ, **stack.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_malformed_input_is_dead_lettered_and_fixed_records_replay_once(
    stack, start_worker, tmp_path
):
    valid, malformed, stream = make_stream()
    bootstrap = [stack.kafka_url.removeprefix("kafka://")]
    assert {kind for kind, _, _ in malformed.values()} == set(KINDS)
    event_ids = [r.event_id for _, r in valid] + [r.event_id for _, _, r in malformed.values()]
    assert len(set(event_ids)) == VALID + MALFORMED

    with start_worker() as worker:
        with Publisher(bootstrap, max_request_size=1_048_576) as publisher:
            for topic, key, value in stream:
                publisher.send(topic, value, key)
            publisher.flush()

        def deadlettered():
            found = list(dead_letters(bootstrap))
            return found if len(found) >= MALFORMED else None

        letters = wait_until(deadlettered, 180, f"{MALFORMED} dead letters", every=2)
        want = normalised(expected_profiles(record for _, record in valid))
        wait_until(
            lambda: observed_profiles(stack.redis_url, want) == want,
            120,
            "profiles to match the valid input",
            every=1,
        )
        assert len(letters) == MALFORMED
        by_code = Counter()
        for message, record in letters:
            kind, topic, _ = malformed[message.value]
            assert record.reason.code == kind, (record, kind)
            assert record.source.topic == topic
            assert message.key == malformed[message.value][2].customer_id.encode()
            by_code[kind] += 1
        assert set(by_code) == set(KINDS)

        # Fix every dead letter the way an operator would: edit the value, replay the file.
        fixes = tmp_path / "fixed.jsonl"
        with fixes.open("wb") as out:
            for message, record in letters:
                fixed = msgspec.json.encode(malformed[message.value][2]).decode()
                out.write(
                    msgspec.json.encode(
                        msgspec.structs.replace(record, value=fixed, value_base64=None)
                    )
                    + b"\n"
                )
        command = ["deadletter", "replay", "--fix", str(fixes)]
        replay = run_cli(stack, *command)
        assert replay.returncode == 0, replay.stderr[-2000:]
        assert f"replayed {MALFORMED} dead letters" in replay.stdout

        everything = [record for _, record in valid] + [
            record for _, _, record in malformed.values()
        ]
        want_all = normalised(expected_profiles(everything))
        wait_until(
            lambda: observed_profiles(stack.redis_url, want_all) == want_all,
            180,
            "profiles to include every fixed record",
            every=1,
        )
        # Replaying the same fixes again changes nothing.
        again = run_cli(stack, *command)
        assert again.returncode == 0, again.stderr[-2000:]
        assert worker.process.poll() is None, "the worker must not have stopped"
        # Give the worker time to see the second replay before the last look.
        wait_until(
            lambda: (
                len(list(dead_letters(bootstrap))) == MALFORMED
                and observed_profiles(stack.redis_url, want_all) == want_all
            ),
            60,
            "a stable state after the second replay",
        )
        assert worker.stop() == 0
    log = worker.log()
    assert "Traceback" not in log, log[-3000:]
    assert "crashed" not in log.lower(), log[-3000:]
