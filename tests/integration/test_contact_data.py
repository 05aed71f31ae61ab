"""``crm.customers`` in the events agent (Faust's test context, a real Redis): contact
details are stored as keyed hashes and AES-GCM copies, never raw; consent gates the
triggers of rules that name a channel; chat text is redacted in alerts and histories."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import redis

from crmstream.schemas import ChatMessage, CustomerDetails, Purchase, Trigger
from crmstream.schemas.outputs import Alert
from crmstream.streams import topics
from crmstream.streams.profiles import profile_key
from crmstream.streams.web.app import profile_view
from tests.integration.conftest import Feeder, make_app

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
KEY = base64.b64encode(bytes(range(32))).decode()
NAME, EMAIL, PHONE = "Ann Lee", "ann.lee@example.com", "+44 20 7946 0958"
RULES = """
rules:
  - id: welcome-email
    on: [purchase]
    when: event.amount > 100.0
    channel: email
  - id: welcome-sms
    on: [purchase]
    when: event.amount > 100.0
    channel: sms
  - id: any-purchase
    on: [purchase]
    when: event.amount > 100.0
"""


def details(event_id: str, at: datetime, **fields) -> bytes:
    record = CustomerDetails(event_id=event_id, customer_id="c1", occurred_at=at, **fields)
    return msgspec.json.encode(record)


def consent(granted: bool, at: datetime) -> dict:
    return {"granted": granted, "at": at, "source": "preferences-page"}


def buy(event_id: str, at: datetime, amount: float = 150.0) -> bytes:
    return msgspec.json.encode(
        Purchase(event_id=event_id, customer_id="c1", occurred_at=at, amount=amount)
    )


def fired(sink) -> list[tuple[str, str, str | None]]:
    triggers = [msgspec.json.decode(o.value, type=Trigger) for o in sink.on(topics.TRIGGERS)]
    return [(t.event_id, t.rule, t.channel) for t in triggers]


async def test_contact_details_are_hashed_and_sealed_and_consent_gates_triggers(stack, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    app, runtime, sink = make_app(
        stack, pii_secret="pepper", pii_encryption_key=KEY, rules_file=str(rules)
    )
    async with app.agents["events"].test_context() as agent:
        feed = Feeder(agent)
        grants = {"email": consent(True, T0), "sms": consent(False, T0)}
        summary = await feed.put(
            topics.CUSTOMERS,
            details("u1", T0, name=NAME, email=EMAIL, phone=PHONE, country="GB",
                    consent=grants, external_ids={"shop": "u-42"}),
        )  # fmt: skip
        assert (summary.applied, summary.deadlettered, summary.outputs) == (1, 0, 0)
        await feed.put(topics.PURCHASES, buy("p1", T0 + timedelta(hours=1)))
        # withdrawn the next day (and an older answer that arrives late changes nothing)
        later = T0 + timedelta(days=1)
        await feed.put(
            topics.CUSTOMERS, details("u2", later, consent={"email": consent(False, later)})
        )
        await feed.put(topics.CUSTOMERS, details("u3", T0, consent={"email": consent(True, T0)}))
        await feed.put(topics.PURCHASES, buy("p2", T0 + timedelta(days=2)))

    assert fired(sink) == [
        ("p1", "welcome-email", "email"),
        ("p1", "any-purchase", None),
        ("p2", "any-purchase", None),
    ]
    store = redis.Redis.from_url(stack.redis_url)
    stored = b"".join(b"".join(pair) for pair in store.hgetall(profile_key("c1")).items())
    for raw in (NAME, EMAIL, PHONE, "7946", "ann.lee", "Ann"):
        assert raw.encode() not in stored, raw
    keys = runtime.contact
    for kind, value in (("name", NAME), ("email", EMAIL), ("phone", PHONE)):
        assert keys.digest(kind, value).encode() in stored
    profile = await runtime.profiles.get("c1")
    assert profile is not None
    assert profile.contact.hashes["email"] == keys.digest("email", "ANN.LEE@example.com")
    assert {c: a.granted for c, a in profile.consent.items()} == {"email": False, "sms": False}
    view = profile_view(profile, keys)
    assert view["contact"] == {
        "name": NAME,
        "email": EMAIL,
        "phone": PHONE,
        "country": "GB",
        "external_ids": {"shop": "u-42"},
    }
    assert profile_view(profile, None)["contact"]["email"] is None
    await runtime.profiles.close()


async def test_without_an_encryption_key_only_hashes_are_kept(stack):
    app, runtime, _ = make_app(stack, pii_secret="pepper")
    async with app.agents["events"].test_context() as agent:
        await Feeder(agent).put(topics.CUSTOMERS, details("u1", T0, email=EMAIL, phone=PHONE))
    profile = await runtime.profiles.get("c1")
    assert profile is not None and profile.contact is not None
    assert sorted(profile.contact.hashes) == ["email", "phone"]
    assert profile.contact.sealed == {}
    await runtime.profiles.close()


async def test_alert_excerpts_and_histories_are_redacted(stack):
    app, runtime, sink = make_app(stack)
    text = (
        "This is terrible, I hate it! Refund card 4111 1111 1111 1111 now, "
        f"mail {EMAIL} or call {PHONE}"
    )
    message = ChatMessage(
        event_id="m1",
        customer_id="c1",
        occurred_at=T0,
        conversation_id="k1",
        sender="customer",
        text=text,
    )
    async with app.agents["events"].test_context() as agent:
        await Feeder(agent).put(topics.CHATS, msgspec.json.encode(message))
    alerts = [msgspec.json.decode(o.value, type=Alert) for o in sink.on(topics.ALERTS)]
    assert alerts, "the message should raise an alert"
    for alert in alerts:
        assert alert.excerpt is not None
        assert "[card]" in alert.excerpt and "[email]" in alert.excerpt
        assert "4111" not in alert.excerpt and EMAIL not in alert.excerpt
    profile = await runtime.profiles.get("c1")
    assert profile is not None
    excerpt = profile.history.messages[0].excerpt
    assert excerpt.startswith("This is terrible") and "4111" not in excerpt
    assert "ann.lee" not in excerpt
    await runtime.profiles.close()
