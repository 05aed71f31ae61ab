"""The dashboard's JSON API and live feed against a running ``crmstream dashboard``, the
embedded broker and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest
import redis

from crmstream.models.history import History, MessageEntry, TierEntry
from crmstream.models.profile import Profile
from crmstream.models.recommend import DEFAULT_PARAMS, CustomerItems, Recommendation, remember
from crmstream.streams import topics
from crmstream.streams.declare import declare_topics
from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.settings import Settings
from crmstream.streams.tools.publisher import Publisher
from crmstream.streams.web.acks import ACKS_LOG_KEY
from tests.dashboard import (
    TOKEN,
    DashboardProcess,
    EventStream,
    make_alert,
    publish_alerts,
    store_profile,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


@pytest.fixture(scope="module")
def board_stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack() as stack:
        declare_topics(Settings(kafka_url=stack.kafka_url, partitions=2))
        yield stack


@pytest.fixture(scope="module")
def dashboard(board_stack, tmp_path_factory) -> Iterator[DashboardProcess]:
    log = Path(tmp_path_factory.mktemp("dashboard")) / "dashboard.log"
    board = DashboardProcess(board_stack.env(), log)
    yield board
    board.stop()


@pytest.fixture(scope="module")
def bootstrap(board_stack) -> list[str]:
    return [f"127.0.0.1:{board_stack.kafka_port}"]


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_unauthenticated_requests_get_401_and_every_response_security_headers(dashboard):
    with dashboard.client(authenticated=False) as anonymous:
        for path in ("/api/customers/c1", "/api/alerts", "/api/stats", "/api/alerts/stream"):
            _error(anonymous.get(path), 401, "unauthenticated")
        _error(
            anonymous.get("/api/alerts", headers={"Authorization": "Bearer wrong"}),
            401,
            "unauthenticated",
        )
        _error(anonymous.post("/api/alerts/" + "a" * 32 + "/ack"), 401, "unauthenticated")
        health = anonymous.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        page = anonymous.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        for response in (health, page, anonymous.get("/api/alerts"), anonymous.get("/login")):
            for name, value in SECURITY_HEADERS.items():
                assert response.headers[name] == value
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp


def test_customer_profile_unknown_and_malformed(dashboard, board_stack):
    at = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    history = History(
        messages=[
            MessageEntry(at=at, event_id="m1", sentiment=-0.7, intent="refund", excerpt="broken")
        ],
        tiers=[TierEntry(at=at, from_tier="bronze", to_tier="gold", clv=600.0)],
    )
    profile = Profile(
        customer_id="ana.lima-7",
        orders=3,
        revenue=900.0,
        cost=300.0,
        tier="gold",
        history=history,
        items=remember(CustomerItems(), ["tea"], at.timestamp(), DEFAULT_PARAMS),
        # What a worker stored is not shown: the API scores recommendations when read.
        recommendations=[Recommendation("stale", 0.9, "popular")],
    )
    store_profile(board_stack.redis_url, profile)
    store = redis.Redis.from_url(board_stack.redis_url, decode_responses=True)
    with dashboard.client() as api:
        found = api.get("/api/customers/ana.lima-7")
        assert found.status_code == 200
        body = found.json()
        assert (body["customer_id"], body["tier"], body["orders"]) == ("ana.lima-7", "gold", 3)
        assert body["clv"] == 600.0
        assert "model_state" not in body and "history" not in body and "items" not in body
        top = body["recommendations"][0]
        assert (top["item"], top["reason"]) == ("tea", "you bought this before")
        assert top["score"] >= 1.0  # the whole of the customer's own baskets
        assert "stale" not in {r["item"] for r in body["recommendations"]}
        recent = api.get("/api/customers/ana.lima-7/history")
        assert recent.status_code == 200
        assert recent.json() == {
            "customer_id": "ana.lima-7",
            "messages": [
                {
                    "at": "2026-06-01T09:00:00Z",
                    "event_id": "m1",
                    "sentiment": -0.7,
                    "intent": "refund",
                    "excerpt": "broken",
                }
            ],
            "alerts": [],
            "tiers": [
                {
                    "at": "2026-06-01T09:00:00Z",
                    "from_tier": "bronze",
                    "to_tier": "gold",
                    "clv": 600.0,
                }
            ],
        }
        _error(api.get("/api/customers/nobody/history"), 404, "unknown_customer")
        _error(api.get("/api/customers/nobody"), 404, "unknown_customer")
        reads_before = _calls(store, "hgetall")
        for malformed in ("bad%20id", "x" * 65, "a%2Ab", "%E2%82%AC"):
            _error(api.get(f"/api/customers/{malformed}"), 422, "invalid_customer_id")
            _error(api.get(f"/api/customers/{malformed}/history"), 422, "invalid_customer_id")
        assert _calls(store, "hgetall") == reads_before  # no malformed id reached Redis
    store.close()


def _calls(store: redis.Redis, command: str) -> int:
    stats = store.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_alerts_filters_and_acknowledgements(dashboard, bootstrap, board_stack):
    alerts = [
        make_alert(100, "f1", "strongly_negative", "warning"),
        make_alert(101, "f2", "churn_intent", "critical"),
        make_alert(102, "f3", "low_rating", "warning"),
    ]
    store_profile(board_stack.redis_url, Profile(customer_id="f2", tier="platinum"))
    publish_alerts(bootstrap, alerts)
    with dashboard.client() as api:

        def listed(**params):
            response = api.get("/api/alerts", params=params)
            assert response.status_code == 200, response.text
            return [a["alert_id"] for a in response.json()["alerts"]]

        wait_until(lambda: alerts[2].alert_id in listed(), 10, "the alerts to be read")
        assert listed(kind="churn_intent") == [alerts[1].alert_id]
        assert alerts[1].alert_id not in listed(severity="warning")
        assert alerts[0].alert_id in listed(severity="warning", since="5m")
        assert listed(tier="platinum") == [alerts[1].alert_id]
        assert alerts[0].alert_id not in listed(since="2999-01-01T00:00:00Z")
        _error(api.get("/api/alerts", params={"kind": "bogus"}), 422, "invalid_kind")
        _error(api.get("/api/alerts", params={"since": "soon"}), 422, "invalid_since")
        _error(api.get("/api/alerts", params={"limit": "0"}), 422, "invalid_limit")

        target = alerts[1].alert_id
        first = api.post(f"/api/alerts/{target}/ack")
        assert first.status_code == 201, first.text
        assert first.json()["by"] == "api"
        again = api.post(f"/api/alerts/{target}/ack")
        assert again.status_code == 200 and again.json() == first.json()
        _error(api.post("/api/alerts/" + "0" * 32 + "/ack"), 404, "unknown_alert")
        _error(api.post("/api/alerts/not-an-id/ack"), 422, "invalid_alert_id")
        shown = api.get("/api/alerts", params={"kind": "churn_intent"}).json()["alerts"][0]
        assert shown["ack"]["by"] == "api" and shown["tier"] == "platinum"
    store = redis.Redis.from_url(board_stack.redis_url, decode_responses=True)
    entries = store.xrange(ACKS_LOG_KEY)
    store.close()
    assert [(e["alert_id"], e["by"]) for _, e in entries] == [(target, "api")]


def test_login_session_cookie_and_csrf(dashboard, bootstrap):
    alert = make_alert(200, "s1")
    publish_alerts(bootstrap, [alert])
    with httpx.Client(base_url=dashboard.url, timeout=10) as browser:
        refused = browser.post("/login", data={"name": "Ana", "token": "wrong"})
        assert refused.status_code == 303 and refused.headers["location"] == "/login?failed=1"
        assert "crm_session" not in browser.cookies
        foreign = browser.post(
            "/login", data={"name": "Ana", "token": TOKEN}, headers={"Origin": "http://evil"}
        )
        _error(foreign, 403, "cross_origin")
        accepted = browser.post("/login", data={"name": "Ana", "token": TOKEN})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/"
        cookie = accepted.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/").status_code == 200
        session = browser.get("/api/session").json()
        assert session["name"] == "Ana" and len(session["csrf"]) > 20
        wait_until(
            lambda: (
                browser.get("/api/alerts").json()["alerts"][:1]
                and alert.alert_id
                in [a["alert_id"] for a in browser.get("/api/alerts").json()["alerts"]]
            ),
            10,
            "the alert to be read",
        )
        path = f"/api/alerts/{alert.alert_id}/ack"
        _error(browser.post(path), 403, "csrf")
        _error(browser.post(path, headers={"X-CSRF-Token": "forged"}), 403, "csrf")
        done = browser.post(path, headers={"X-CSRF-Token": session["csrf"]})
        assert done.status_code == 201 and done.json()["by"] == "Ana"
        _error(browser.delete("/api/customers/s1"), 403, "csrf")
        erased = browser.delete("/api/customers/s1", headers={"X-CSRF-Token": session["csrf"]})
        assert erased.status_code == 200 and erased.json()["customer_id"] == "s1"
        assert alert.alert_id not in [
            a["alert_id"] for a in browser.get("/api/alerts").json()["alerts"]
        ]
        browser.post("/logout")
        _error(browser.get("/api/session"), 401, "unauthenticated")


def test_excerpts_written_before_redaction_are_redacted_when_shown(
    dashboard, bootstrap, board_stack
):
    said = "call me on +44 20 7946 0958 or at ann@example.com"
    entry = MessageEntry(at=datetime.now(UTC), event_id="m9", sentiment=-0.5, intent="other",
                         excerpt=said)  # fmt: skip
    profile = Profile(customer_id="old-1", history=History(messages=[entry]))
    store_profile(board_stack.redis_url, profile)
    alert = msgspec.structs.replace(make_alert(500, "old-1"), excerpt=said)
    publish_alerts(bootstrap, [alert])
    with dashboard.client() as api:
        history = api.get("/api/customers/old-1/history").json()
        assert history["messages"][0]["excerpt"] == "call me on [phone] or at [email]"

        def found() -> list:
            return [
                a
                for a in api.get("/api/alerts").json()["alerts"]
                if a["alert_id"] == alert.alert_id
            ]

        shown = wait_until(found, 10, "the alert to be read")
        assert shown[0]["excerpt"] == "call me on [phone] or at [email]"


def test_live_feed_resumes_without_loss_or_repeat(dashboard, bootstrap):
    first = [make_alert(300 + n, f"live{n}") for n in range(3)]
    publish_alerts(bootstrap, first)
    with dashboard.client() as api:
        wait_until(
            lambda: (
                first[-1].alert_id
                in [a["alert_id"] for a in api.get("/api/alerts").json()["alerts"]]
            ),
            10,
            "the alerts to be read",
        )
        with api.stream("GET", "/api/alerts/stream", params={"backlog": 1000}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = EventStream(response)
            backlog = stream.alerts(
                len(api.get("/api/alerts", params={"limit": 1000}).json()["alerts"])
            )
            seen = [a["alert_id"] for _, a in backlog]
            assert len(seen) == len(set(seen))  # no alert twice
            assert {a.alert_id for a in first} <= set(seen)
            live = make_alert(310, "live-new")
            publish_alerts(bootstrap, [live])
            last_id, arrived = stream.alerts(1)[0]
            assert arrived["alert_id"] == live.alert_id
            acked = api.post(f"/api/alerts/{live.alert_id}/ack")
            assert acked.status_code == 201
            event = stream.next_event()
            while event.get("event") != "ack":
                event = stream.next_event()
            assert live.alert_id in event["data"]
        missed = [make_alert(320 + n, f"gone{n}") for n in range(4)]
        publish_alerts(bootstrap, missed)
        with api.stream(
            "GET", "/api/alerts/stream", headers={"Last-Event-ID": last_id}
        ) as response:
            resumed = EventStream(response).alerts(len(missed))
        assert sorted(a["alert_id"] for _, a in resumed) == sorted(a.alert_id for a in missed)
        _error(
            api.get("/api/alerts/stream", headers={"Last-Event-ID": "garbage"}),
            422,
            "invalid_cursor",
        )


def test_openapi_documents_the_api(dashboard):
    with dashboard.client(authenticated=False) as anonymous:
        schema = anonymous.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/customers/{customer_id}",
        "/api/customers/{customer_id}/history",
        "/api/alerts",
        "/api/alerts/{alert_id}/ack",
        "/api/stats",
        "/health",
    ):
        assert path in paths, path
    assert "404" in {str(k) for k in paths["/api/customers/{customer_id}"]["get"]["responses"]}
    assert "200" in {str(k) for k in paths["/api/customers/{customer_id}"]["delete"]["responses"]}


def test_second_dashboard_resumes_from_kafka_and_shares_acknowledgements(
    dashboard, bootstrap, board_stack, tmp_path
):
    with dashboard.client() as api:
        wait_until(lambda: api.get("/health").status_code == 200, 10, "the first dashboard")
        positions = api.get("/api/stats").json()["feed_positions"]
    cursor = ".".join(f"{p}:{o}" for p, o in positions.items())
    many = [make_alert(1000 + n, f"bulk{n}") for n in range(150)]
    publish_alerts(bootstrap, many)
    # A dashboard that keeps only 100 alerts: the older ones come back from Kafka.
    second = DashboardProcess(
        {**board_stack.env(), "CRM_DASHBOARD_ALERT_BUFFER": "100"}, tmp_path / "second.log"
    )
    try:
        with second.client() as api2:
            wait_until(
                lambda: (
                    many[-1].alert_id
                    in [a["alert_id"] for a in api2.get("/api/alerts").json()["alerts"]]
                ),
                10,
                "the second dashboard to read the alerts",
            )
            assert len(api2.get("/api/alerts", params={"limit": 1000}).json()["alerts"]) <= 100
            with api2.stream(
                "GET", "/api/alerts/stream", headers={"Last-Event-ID": cursor}
            ) as response:
                stream = EventStream(response)
                resumed = [a["alert_id"] for _, a in stream.alerts(len(many))]
                assert sorted(resumed) == sorted(a.alert_id for a in many)
                with dashboard.client() as api:
                    assert api.post(f"/api/alerts/{many[-1].alert_id}/ack").status_code == 201
                event = stream.next_event()
                while event.get("event") != "ack":
                    assert event.get("event") != "alert", "an alert was sent twice"
                    event = stream.next_event()
                assert many[-1].alert_id in event["data"]
            listed = api2.get("/api/alerts", params={"limit": 1000}).json()["alerts"]
            acks = {a["alert_id"]: a["ack"] for a in listed}
            assert acks[many[-1].alert_id]["by"] == "api"
    finally:
        second.stop()


def test_stats_overview_counts_rates_dead_letters_and_tiers(dashboard, bootstrap, board_stack):
    store_profile(board_stack.redis_url, Profile(customer_id="stat-s1", tier="silver"))
    with Publisher(bootstrap) as publisher:
        for n in range(30):
            publisher.send(topics.PURCHASES, b'{"anything": 1}', f"rate{n}")
        publisher.send(
            topics.DEADLETTER,
            b"{not json",
            "dl1",
            headers=[("crm.error.code", b"invalid_json")],
        )
        publisher.flush()
    with dashboard.client() as api:
        stats = wait_until(
            lambda: (
                (s := api.get("/api/stats").json())
                and s["events_per_second"].get(topics.PURCHASES, 0) > 0
                and s["deadletters_last_hour"] == {"invalid_json": 1}
                and s["tiers_sampled"]["tiers"].get("silver", 0) >= 1
                and s
            ),
            30,
            "the overview to see the published records",
        )
    assert set(stats["events_per_second"]) == set(topics.INPUTS)
    assert stats["tiers_sampled"]["sample"] == stats["customers"]  # fewer than the sample size
    assert stats["alerts_last_hour"]["by_kind"]
