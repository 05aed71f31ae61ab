"""The benchmark's count of applied events (``bench/mixed_runs.py``) reads each counter by
its name in the stored profile JSON, without decoding it: it must agree with the decoded
profiles, whatever else the profiles hold."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from crmstream.models.profile import Profile
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.profiles import profile_key, profile_to_fields

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"
AT = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def mixed_runs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("mixed_runs")


def profiles() -> list[Profile]:
    """Profiles whose other fields carry the counters' names and numbers after them."""
    return [
        Profile(customer_id="plain", orders=3, messages=5, feedback=1),
        # A quote in a JSON string is escaped: '"orders":' cannot appear inside one.
        Profile(customer_id='tricky","orders":99,"messages":98', orders=2, feedback=4),
        Profile(
            customer_id="nested",
            messages=7,
            last_intent='"feedback":55',
            last_alerts={"orders": AT, "messages": AT},
            rules_fired={"feedback": AT},
            consent={"orders": True},
        ),
        Profile(customer_id="zeros"),
        Profile(customer_id="big", orders=123456, messages=10, feedback=2),
    ]


def test_count_agrees_with_decoded_profiles(stack: EmbeddedStack, mixed_runs) -> None:
    stored = profiles()
    store = redis.Redis.from_url(stack.redis_url)
    try:
        for profile in stored:
            store.hset(profile_key(profile.customer_id), mapping=profile_to_fields(profile))
        count = store.register_script(mixed_runs._SUM_COUNTERS)
        counters = list(mixed_runs.PROFILE_COUNTERS.values())
        keys = [profile_key(p.customer_id) for p in stored] + [profile_key("never-seen")]
        totals = count(keys=keys, args=[mixed_runs.PROFILE_JSON_FIELD, *counters])
    finally:
        store.close()
    expected = [sum(getattr(p, name) for p in stored) for name in counters]
    assert counters == ["orders", "messages", "feedback"]
    assert [int(t) for t in totals] == expected == [123461, 22, 7]
