"""Privacy against a real worker and dashboard on the embedded broker and Redis: customers
with names, contact details and card numbers in their events are processed; one is erased
through ``DELETE /api/customers/{id}``, one with ``crmstream erase``; afterwards none of
their keys or shared entries is left, the shared models hold nothing of them, a notice is
on ``crm.erasures``, their later events are dead-lettered (``erased``), every action is on
``crm.audit``, and Redis, every output topic and the logs hold no raw e-mail address,
phone or card number from the input."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis

from crmstream.schemas import (
    AuditEvent,
    ChatMessage,
    CustomerDetails,
    Erasure,
    Feedback,
    Purchase,
    Trigger,
)
from crmstream.streams import cli, topics
from crmstream.streams.customer_keys import ACKS_KEY, ACKS_LOG_KEY, customer_keys
from crmstream.streams.declare import declare_topics
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.erasure import ERASED_KEY
from crmstream.streams.profiles import CUSTOMERS_KEY
from crmstream.streams.settings import Settings
from crmstream.streams.tools import topicreader
from crmstream.streams.tools.publisher import Publisher
from tests.dashboard import DashboardProcess
from tests.helpers import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 2
T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
KEY = base64.b64encode(bytes(range(32, 64))).decode()
RULES = """
rules:
  - id: welcome-email
    on: [purchase]
    when: event.amount > 100.0
    channel: email
    once_per: customer
  - id: quote-the-chat
    on: [chat]
    when: event.sentiment < 0.0
    emit: {said: "{{ event.text }}"}
audiences:
  - id: spenders
    when: after.orders >= 1
"""
PEOPLE = {
    "cust-ann-7781": {
        "name": "Annabel Quist",
        "email": "annabel.quist@example.org",
        "phone": "+44 20 7946 0123",
        "card": "4111 1111 1111 1111",
    },
    "cust-bob-5523": {
        "name": "Roberto Ianuzzi",
        "email": "roberto.ianuzzi@example.net",
        "phone": "+1 415 555 0199",
        "card": "5555-5555-5555-4444",
    },
}
ANN, BOB = PEOPLE


def raw_forms(person: dict[str, str]) -> list[bytes]:
    """Every form of a person's data that must not appear anywhere."""
    forms = [person["name"], person["email"], person["phone"], person["card"]]
    forms += [re.sub(r"\D", "", person["phone"]), re.sub(r"\D", "", person["card"])]
    forms += [person["email"].split("@")[0], person["name"].split()[1]]
    return [f.encode() for f in forms]


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[dict]:
    folder = Path(tmp_path_factory.mktemp("privacy"))
    rules = folder / "rules.yaml"
    rules.write_text(RULES)
    with EmbeddedStack() as stack:
        declare_topics(Settings(kafka_url=stack.kafka_url, partitions=PARTITIONS))
        env = {
            **stack.env(),
            "CRM_PARTITIONS": str(PARTITIONS),
            "CRM_SESSION_TIMEOUT": "4",
            "CRM_CHECKPOINT_INTERVAL": "1",
            "CRM_RULES_FILE": str(rules),
            "CRM_PII_SECRET": "a-long-random-pepper",
            "CRM_PII_ENCRYPTION_KEY": KEY,
        }
        worker = WorkerProcess(env, folder / "worker.log")
        board = DashboardProcess(env, folder / "dashboard.log")
        try:
            publish_everything(stack)
            wait_until(
                lambda: processed(stack.redis_url), 60, f"the events (log: {worker.log_path})"
            )
            yield {"stack": stack, "worker": worker, "board": board, "env": env}
        finally:
            board.stop()
            worker.stop()


def publish_everything(stack: EmbeddedStack) -> None:
    with Publisher([f"127.0.0.1:{stack.kafka_port}"]) as publisher:
        for customer, person in PEOPLE.items():
            granted = {"email": {"granted": True, "at": T0, "source": "signup"}}
            publisher.publish(
                topics.CUSTOMERS,
                CustomerDetails(
                    event_id=f"{customer}-details",
                    customer_id=customer,
                    occurred_at=T0,
                    name=person["name"],
                    email=person["email"],
                    phone=person["phone"],
                    country="GB",
                    consent=granted,
                ),
            )
            for n in range(2):
                publisher.publish(
                    topics.PURCHASES,
                    Purchase(
                        event_id=f"{customer}-p{n}",
                        customer_id=customer,
                        occurred_at=T0 + timedelta(days=n),
                        amount=150.0,
                    ),
                )
            text = (
                f"This is awful, I hate you! Refund card {person['card']} now, call "
                f"{person['phone']} or mail {person['email']}"
            )
            publisher.publish(
                topics.CHATS,
                ChatMessage(
                    event_id=f"{customer}-m1",
                    customer_id=customer,
                    occurred_at=T0 + timedelta(days=2),
                    conversation_id=f"{customer}-k1",
                    sender="customer",
                    text=text,
                ),
            )
            publisher.publish(
                topics.FEEDBACK,
                Feedback(
                    event_id=f"{customer}-f1",
                    customer_id=customer,
                    occurred_at=T0 + timedelta(days=3),
                    rating=1,
                    text=f"Terrible, never again. Write to {person['email']}",
                ),
            )
        publisher.flush()


def processed(redis_url: str) -> bool:
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    for customer in PEOPLE:
        raw = store.hget(f"crm:{{{customer}}}:profile", "profile")
        if raw is None or json.loads(raw)["feedback"] < 1:
            return False
    return bool(store.keys("crm:models:*"))


def read_topic(bootstrap: list[str], topic: str) -> list:
    return list(topicreader.read_topic(bootstrap, topic, idle=0.25))


def records(bootstrap: list[str], topic: str, type_: type) -> list:
    return [msgspec.json.decode(r.value, type=type_) for r in read_topic(bootstrap, topic)]


def all_keys(store: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in store.scan_iter(count=1000))


def value_bytes(store: redis.Redis, key: str) -> bytes:
    """Everything a key holds, read by its type (DUMP would compress long strings)."""
    kind = store.type(key).decode()
    parts: list[bytes] = []
    if kind == "string":
        parts.append(store.get(key) or b"")
    elif kind == "hash":
        for field, value in store.hgetall(key).items():
            parts += [field, value]
    elif kind == "set":
        parts += list(store.smembers(key))
    elif kind == "zset":
        parts += [m for m, _ in store.zrange(key, 0, -1, withscores=True)]
    elif kind == "list":
        parts += store.lrange(key, 0, -1)
    elif kind == "stream":
        for entry_id, fields in store.xrange(key):
            parts.append(entry_id)
            for field, value in fields.items():
                parts += [field, value]
    return b"\x00".join(parts)


def test_contact_details_show_to_an_authenticated_user_and_reads_are_audited(running):
    board = running["board"]
    with board.client() as api:
        body = api.get(f"/api/customers/{ANN}").json()
    assert body["contact"]["email"] == PEOPLE[ANN]["email"]
    assert body["contact"]["name"] == PEOPLE[ANN]["name"]
    assert body["consent"]["email"]["granted"] is True
    with board.client(authenticated=False) as anonymous:
        assert anonymous.get(f"/api/customers/{ANN}").status_code == 401


def test_erasure_removes_every_trace_and_later_events_are_dead_lettered(
    running, monkeypatch, capsys
):
    stack, board = running["stack"], running["board"]
    for name, value in running["env"].items():
        monkeypatch.setenv(name, value)
    store = redis.Redis.from_url(stack.redis_url)
    bootstrap = [f"127.0.0.1:{stack.kafka_port}"]
    # an acknowledged alert of each, and their propensity snapshots in the due indexes
    with board.client() as api:
        assert api.get(f"/api/customers/{ANN}").status_code == 200  # audited: profile.read
        alerts = wait_until(
            lambda: (
                {
                    a["customer_id"]: a["alert_id"] for a in api.get("/api/alerts").json()["alerts"]
                }.keys()
                >= set(PEOPLE)
                and api.get("/api/alerts").json()["alerts"]
            ),
            30,
            "the alerts on the dashboard",
        )
        acked = {}
        for alert in alerts:
            if alert["customer_id"] not in acked:
                response = api.post(f"/api/alerts/{alert['alert_id']}/ack")
                assert response.status_code == 201, response.text
                acked[alert["customer_id"]] = alert["alert_id"]
    before = all_keys(store)
    for customer in PEOPLE:
        own = [k for k in before if k.startswith(f"crm:{{{customer}}}:")]
        assert f"crm:{{{customer}}}:profile" in own and f"crm:{{{customer}}}:acks" in own
        unregistered = set(own) - set(customer_keys(customer))
        assert not unregistered, f"keys no erasure knows: {unregistered}"
        assert store.sismember(CUSTOMERS_KEY, customer)
        dues = [k for k in before if k.startswith("crm:due:") and store.type(k) == b"zset"]
        assert any(
            m.decode().startswith(f"{customer}|") for k in dues for m in store.zrange(k, 0, -1)
        )
        pairs = [k for k in before if k.startswith("crm:due:") and k.endswith(":pair")]
        assert any(f.decode().startswith(f"{customer}|") for k in pairs for f in store.hkeys(k))
        assert store.hexists(ACKS_KEY, acked[customer])

    with board.client() as api:
        response = api.delete(f"/api/customers/{ANN}")
    assert response.status_code == 200, response.text
    assert response.json()["keys_removed"] >= 3
    assert cli.main(["erase", BOB, "--settle", "0.2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["customer_id"] == BOB and summary["keys_removed"] >= 3

    after = all_keys(store)
    logged = [f[b"alert_id"].decode() for _, f in store.xrange(ACKS_LOG_KEY)]
    for customer in PEOPLE:
        assert not [k for k in after if customer in k], after
        assert not store.sismember(CUSTOMERS_KEY, customer)
        for key in after:  # shared keys: no entry, member, field or value names them
            assert customer.encode() not in value_bytes(store, key), key
        assert not store.hexists(ACKS_KEY, acked[customer])
        assert acked[customer] not in logged
        assert cli.main(["profile", customer]) == 1
        assert "unknown customer" in capsys.readouterr().err
    assert store.scard(ERASED_KEY) == 2
    for marker in store.smembers(ERASED_KEY):
        assert not any(c.encode() in marker for c in PEOPLE)
    with board.client() as api:
        gone = api.get(f"/api/customers/{ANN}")
        assert gone.status_code == 404
        assert all(a["customer_id"] != ANN for a in api.get("/api/alerts").json()["alerts"])

    notices = records(bootstrap, topics.ERASURES, Erasure)
    assert sorted(n.customer_id for n in notices) == sorted(PEOPLE)

    # a later event of an erased customer is dead-lettered, without its value
    with Publisher(bootstrap) as publisher:
        publisher.publish(
            topics.PURCHASES,
            Purchase(event_id="late-1", customer_id=ANN, occurred_at=T0, amount=5.0),
        )
    letters = wait_until(
        lambda: [r for r in read_topic(bootstrap, topics.DEADLETTER) if r.key == ANN.encode()],
        30,
        "the late event's dead letter",
    )
    headers = dict(letters[0].headers)
    assert headers["crm.error.code"] == b"erased"
    assert not letters[0].value
    assert not [k for k in all_keys(store) if ANN in k]

    wanted = {
        ("profile.read", ANN),
        ("customer.erase", ANN),
        ("customer.erase", BOB),
        ("alert.acknowledge", acked[ANN]),
    }

    def audited() -> list[AuditEvent] | None:
        found = records(bootstrap, topics.AUDIT, AuditEvent)
        return found if wanted <= {(a.action, a.target) for a in found} else None

    # A reader stops after an idle wait; on a loaded machine one pass can stop early.
    audit = wait_until(audited, 30, "the audit records of the reads, erasures and ack")
    done = {(a.action, a.target): a.actor for a in audit}
    assert done[("profile.read", ANN)] == "api"
    assert done[("customer.erase", ANN)] == "api"
    assert done[("customer.erase", BOB)].startswith("cli:")
    assert done[("alert.acknowledge", acked[ANN])] == "api"
    assert all(a.at.tzinfo is not None for a in audit)


def test_no_raw_contact_details_or_card_numbers_anywhere(running):
    stack, worker, board = running["stack"], running["worker"], running["board"]
    bootstrap = [f"127.0.0.1:{stack.kafka_port}"]
    forbidden = [form for person in PEOPLE.values() for form in raw_forms(person)]
    store = redis.Redis.from_url(stack.redis_url)
    places: dict[str, bytes] = {f"redis {k}": value_bytes(store, k) for k in all_keys(store)}
    assert any(name.startswith("redis crm:models:") for name in places)
    counts = {}
    for topic in topics.OUTPUTS:
        found_on_topic = read_topic(bootstrap, topic)
        counts[topic] = len(found_on_topic)
        for record in found_on_topic:
            headers = b"".join(v or b"" for _, v in record.headers)
            places[f"{topic}@{record.offset}"] = (
                (record.key or b"") + (record.value or b"") + headers
            )
    places["worker log"] = worker.log_path.read_bytes()
    places["dashboard log"] = board.log_path.read_bytes()
    assert counts[topics.ALERTS] >= 2 and counts[topics.TRIGGERS] >= 2, counts
    triggers = records(bootstrap, topics.TRIGGERS, Trigger)
    said = [t.attributes["said"] for t in triggers if t.rule == "quote-the-chat"]
    assert said and all("[card]" in s and "[email]" in s for s in said), said
    email = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}")
    found = [(where, form) for where, data in places.items() for form in forbidden if form in data]
    found += [(where, m.group()) for where, data in places.items() for m in email.finditer(data)]
    assert found == [], sorted({(w.split("@")[0], f) for w, f in found})
