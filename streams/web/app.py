"""The support dashboard and its JSON API: a Starlette (ASGI) app served by uvicorn.

It reads Kafka (``crm.alerts``, see :mod:`crmstream.streams.web.feed`) and Redis
(profiles, acknowledgements), never a worker's memory, so any number of dashboards can run
beside the workers. The live feed is server-sent events written by a plain
``StreamingResponse`` (no extra dependency; the event ids carry topic offsets). The page
is static HTML, CSS and JavaScript served by the app: no CDN, no build step, no inline
script, so the Content-Security-Policy forbids inline script altogether.

Every error is JSON: ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qs

import msgspec
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmstream.models.contact import CONTACT_FIELDS, ContactKeys
from crmstream.models.profile import Profile
from crmstream.models.redaction import redact
from crmstream.schemas.inputs import CUSTOMER_ID_PATTERN
from crmstream.schemas.outputs import AlertKind, AuditAction, Severity, Tier
from crmstream.streams.audit import KafkaOutputs, audit_event, audit_output
from crmstream.streams.credentials import aiokafka_options, kafka_python_options, redis_client_url
from crmstream.streams.erasure import Eraser
from crmstream.streams.items import ItemStore
from crmstream.streams.profiles import CUSTOMERS_KEY, ProfileStore, profile_key
from crmstream.streams.settings import Settings
from crmstream.streams.web.acks import Ack, AckStore
from crmstream.streams.web.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Authenticator,
    Principal,
    valid_name,
)
from crmstream.streams.web.feed import AlertFeed, Cursor, FeedItem
from crmstream.streams.web.overview import Overview

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
_ALERT_ID = re.compile(r"^[0-9a-f]{32}$")
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_KINDS = frozenset(get_args(AlertKind))
_SEVERITIES = frozenset(get_args(Severity))
_TIERS = frozenset(get_args(Tier))
KEEPALIVE_SECONDS = 10.0

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # not no-referrer: with it, browsers send "Origin: null" on form posts, and the login
    # checks the origin
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class ApiError(Exception):
    """An error answered as JSON with an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class SecurityHeaders:
    """Adds the security headers to every response (pure ASGI, so streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Dashboard:
    """The dashboard's state and endpoints (one per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.auth = Authenticator(
            settings.api_token.get_secret_value(), settings.dashboard_session_hours * 3600
        )
        self.feed = AlertFeed(
            settings.bootstrap_servers,
            settings.dashboard_alert_buffer,
            security=aiokafka_options(settings),
        )
        self.acks = AckStore(redis_client_url(settings))
        self.profiles = ProfileStore(redis_client_url(settings), history=settings.history_limits())
        #: Scores a customer's recommendations when their profile is read (None: off).
        self.items = (
            ItemStore(redis_client_url(settings), params)
            if (params := settings.recommend_params()) is not None
            else None
        )
        self.overview = Overview(settings, self.profiles)
        self.contact_keys = settings.contact_keys()
        self.outputs = KafkaOutputs(settings.bootstrap_servers, **kafka_python_options(settings))
        self._eraser: Eraser | None = None
        self._follower: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.feed.start()
        await self.overview.start()
        self._follower = asyncio.create_task(self.acks.follow(self._on_ack), name="ack-follower")
        try:
            yield
        finally:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
            await self.feed.stop()
            await self.overview.stop()
            await self.acks.close()
            await self.profiles.close()
            if self.items is not None:
                await self.items.close()
            await asyncio.to_thread(self.outputs.close)

    @property
    def eraser(self) -> Eraser:
        """Erases customers (created on first use)."""
        if self._eraser is None:
            settings = self.settings
            self._eraser = Eraser(
                self.profiles.client,
                self.contact_keys,
                settings.partitions,
                self.outputs.send,
                settings.erasure_policy,
            )
        return self._eraser

    async def audit(
        self,
        principal: Principal,
        action: AuditAction,
        target: str | None,
        **details: Any,
    ) -> None:
        """Record on ``crm.audit`` what ``principal`` did (before the answer is sent)."""
        actor = "api" if principal.via == "token" else f"dashboard:{principal.name}"
        await self.outputs.send([audit_output(audit_event(actor, action, target, **details))])

    def _on_ack(self, ack: Ack) -> None:
        self.feed.broadcast({"type": "ack", **msgspec.to_builtins(ack)})

    # -- authentication ------------------------------------------------------------------

    def caller(self, request: Request) -> Principal:
        """The authenticated caller; 401 otherwise, 403 for a session POST without CSRF."""
        principal = self.auth.bearer(request.headers.get("authorization"))
        if principal is None:
            principal = self.auth.session(request.cookies.get(SESSION_COOKIE))
            if principal is not None and request.method not in ("GET", "HEAD"):
                sent = request.headers.get(CSRF_HEADER, "")
                if not sent or sent != principal.csrf:
                    raise ApiError(403, "csrf", "missing or wrong X-CSRF-Token header")
        if principal is None:
            raise ApiError(
                401, "unauthenticated", "send Authorization: Bearer <CRM_API_TOKEN> or log in"
            )
        return principal

    async def login_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "login.html")

    async def login(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise ApiError(403, "cross_origin", "login from another origin is refused")
        body = (await request.body())[:4096].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body).items()}
        name = form.get("name", "").strip()
        if not valid_name(name) or not self.auth.token_matches(form.get("token", "")):
            return RedirectResponse("/login?failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.auth.issue(name),
            max_age=int(self.auth.session_seconds),
            httponly=True,
            samesite="strict",
            secure=self.settings.dashboard_secure_cookie,
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def index(self, request: Request) -> Response:
        if self.auth.session(request.cookies.get(SESSION_COOKIE)) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / "index.html")

    async def session(self, request: Request) -> Response:
        """
        summary: The logged-in user of the page and the CSRF token its POSTs must send.
        responses:
          200: {description: "{name, csrf}"}
          401: {description: not logged in}
        """
        principal = self.caller(request)
        return JSONResponse({"name": principal.name, "csrf": principal.csrf})

    # -- health and schema ---------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """
        summary: Liveness of this dashboard (no authentication).
        responses:
          200: {description: Redis answers and the alert feed is reading}
          503: {description: Redis does not answer, or the feed has not started}
        """
        problems = []
        try:
            await asyncio.wait_for(self.profiles.client.ping(), 2.0)
        except (RedisError, OSError, TimeoutError) as exc:
            problems.append(f"redis: {exc or type(exc).__name__}")
        if not self.feed.ready.is_set():
            problems.append("alert feed: not reading crm.alerts yet")
        status = "ok" if not problems else "unhealthy"
        return JSONResponse(
            {"status": status, "problems": problems}, status_code=503 if problems else 200
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(_SCHEMAS.get_schema(routes=request.app.routes))

    # -- customers -----------------------------------------------------------------------

    async def customer(self, request: Request) -> Response:
        """
        summary: A customer's profile.
        parameters:
          - {name: customer_id, in: path, required: true, schema: {type: string,
             pattern: "^[A-Za-z0-9_.-]{1,64}$"}}
        responses:
          200: {description: "The profile: tier, clv, purchase_propensity, segment,
                last_purchase_anomaly, sentiment, counts and dates, consent per channel,
                and contact: name, email and phone (decrypted when CRM_PII_ENCRYPTION_KEY
                is set, else null), country and external_ids"}
          401: {description: not authenticated}
          404: {description: unknown customer}
          422: {description: malformed customer id}
        """
        principal = self.caller(request)
        profile = await self._profile(request.path_params["customer_id"])
        if self.items is not None:
            profile.recommendations = await self.items.recommend(profile)
        view = profile_view(profile, self.contact_keys)
        shown = any(view["contact"][kind] is not None for kind in CONTACT_FIELDS)
        await self.audit(principal, "profile.read", profile.customer_id, contact_shown=shown)
        return JSONResponse(view)

    async def erase_customer(self, request: Request) -> Response:
        """
        summary: Erase a customer (as `crmstream erase`), then publish a notice on crm.erasures.
        description: "Removes everything crmstream keeps of the customer: profile, dedupe
          set, model state, history, alert acknowledgements, rule state and audience
          memberships; recorded on crm.audit. A page request must send its CSRF token."
        parameters:
          - {name: customer_id, in: path, required: true, schema: {type: string,
             pattern: "^[A-Za-z0-9_.-]{1,64}$"}}
        responses:
          200: {description: "{customer_id, keys_removed, shared_entries_removed,
                erasure_id, policy}"}
          401: {description: not authenticated}
          403: {description: a page request without its CSRF token}
          422: {description: malformed customer id}
        """
        principal = self.caller(request)
        customer_id = request.path_params["customer_id"]
        if not _CUSTOMER_ID.match(customer_id):
            raise ApiError(
                422, "invalid_customer_id", "a customer id is 1 to 64 of A-Z a-z 0-9 _ . -"
            )
        report = await self.eraser.erase(customer_id)
        self.feed.forget(customer_id)
        await self.audit(
            principal,
            "customer.erase",
            customer_id,
            keys_removed=report.keys,
            shared_entries_removed=report.shared_entries,
            policy=report.policy,
        )
        return JSONResponse(report.as_dict())

    async def customer_history(self, request: Request) -> Response:
        """
        summary: A customer's recent messages (scores, intents), alerts and tier history.
        parameters:
          - {name: customer_id, in: path, required: true, schema: {type: string}}
        responses:
          200: {description: "{messages, alerts, tiers}, oldest first"}
          404: {description: unknown customer}
          422: {description: malformed customer id}
        """
        principal = self.caller(request)
        profile = await self._profile(request.path_params["customer_id"])
        await self.audit(principal, "profile.read", profile.customer_id, part="history")
        history = profile.history
        return JSONResponse(
            {
                "customer_id": profile.customer_id,
                "messages": [
                    {**m, "excerpt": redact(m["excerpt"])} if m.get("excerpt") else m
                    for m in msgspec.to_builtins(history.messages)
                ],
                "alerts": msgspec.to_builtins(history.alerts),
                "tiers": msgspec.to_builtins(history.tiers),
            }
        )

    async def _profile(self, customer_id: str) -> Profile:
        if not _CUSTOMER_ID.match(customer_id):
            raise ApiError(
                422, "invalid_customer_id", "a customer id is 1 to 64 of A-Z a-z 0-9 _ . -"
            )
        profile = await self.profiles.get(customer_id)
        if profile is None:
            raise ApiError(404, "unknown_customer", "no customer with this id")
        return profile

    # -- alerts --------------------------------------------------------------------------

    async def alerts(self, request: Request) -> Response:
        """
        summary: Recent alerts from crm.alerts, newest first, with acknowledgements.
        parameters:
          - {name: since, in: query, schema: {type: string},
             description: "a duration (30m, 2h, 7d) or an ISO 8601 time"}
          - {name: kind, in: query, schema: {type: string, enum: [strongly_negative,
             negative_streak, sentiment_drop, churn_intent, low_rating, anomaly]}}
          - {name: severity, in: query, schema: {type: string, enum: [warning, critical]}}
          - {name: tier, in: query, schema: {type: string,
             enum: [bronze, silver, gold, platinum]}, description: the customer's tier now}
          - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000}}
        responses:
          200: {description: "{alerts: [...]}: each alert with partition, offset, tier and ack"}
          422: {description: a malformed parameter}
        """
        self.caller(request)
        query = request.query_params
        since = parse_since(query["since"]) if query.get("since") else None
        kind = _choice(query, "kind", _KINDS)
        severity = _choice(query, "severity", _SEVERITIES)
        tier = _choice(query, "tier", _TIERS)
        limit = _integer(query, "limit", 200, 1, 1000)
        chosen = []
        for item in reversed(self.feed.recent()):
            alert = item.alert
            if (kind and alert.kind != kind) or (severity and alert.severity != severity):
                continue
            if since and alert.occurred_at < since:
                continue
            chosen.append(item)
            if len(chosen) >= limit and not tier:
                break
        tiers = await self._tiers({i.alert.customer_id for i in chosen})
        if tier:
            chosen = [i for i in chosen if tiers.get(i.alert.customer_id) == tier][:limit]
        acks = await self.acks.get_many([i.alert.alert_id for i in chosen])
        return JSONResponse({"alerts": [alert_view(i, acks, tiers) for i in chosen]})

    async def acknowledge(self, request: Request) -> Response:
        """
        summary: Acknowledge an alert ("handled by" the logged-in user, or "api").
        parameters:
          - {name: alert_id, in: path, required: true, schema: {type: string,
             pattern: "^[0-9a-f]{32}$"}}
        responses:
          200: {description: "already acknowledged: the stored {alert_id, by, at}"}
          201: {description: "acknowledged: {alert_id, by, at}"}
          403: {description: a page POST without its CSRF token}
          404: {description: no such alert among the recent ones}
          422: {description: malformed alert id}
        """
        principal = self.caller(request)
        alert_id = request.path_params["alert_id"]
        if not _ALERT_ID.match(alert_id):
            raise ApiError(422, "invalid_alert_id", "an alert id is 32 lowercase hex digits")
        item = self.feed.get(alert_id)
        if item is None:
            raise ApiError(404, "unknown_alert", "no such alert among the recent alerts")
        ack, created = await self.acks.ack(alert_id, principal.name, item.alert.customer_id)
        if created:
            await self.audit(principal, "alert.acknowledge", alert_id, by=ack.by)
        return JSONResponse(msgspec.to_builtins(ack), status_code=201 if created else 200)

    async def stream(self, request: Request) -> Response:
        """
        summary: The live alert feed as server-sent events (text/event-stream).
        description: "Events: `alert` (id = the cursor of crm.alerts offsets after it;
          send it back as Last-Event-ID to resume without loss or repeat) and `ack`."
        parameters:
          - {name: Last-Event-ID, in: header, schema: {type: string}}
          - {name: backlog, in: query, schema: {type: integer, minimum: 0, maximum: 1000},
             description: recent alerts sent first on a fresh connection}
        responses:
          200: {description: an event stream}
        """
        self.caller(request)
        last = request.headers.get("last-event-id") or request.query_params.get("cursor")
        try:
            cursor = Cursor.parse(last) if last else None
        except ValueError as exc:
            raise ApiError(422, "invalid_cursor", str(exc)) from None
        backlog = _integer(request.query_params, "backlog", 100, 0, 1000)
        try:  # before the feed knows its partitions, a cursor cannot be resumed exactly
            await asyncio.wait_for(self.feed.ready.wait(), 10.0)
        except TimeoutError:
            raise ApiError(503, "feed_unavailable", "crm.alerts cannot be read yet") from None
        subscription, items, gaps, start = self.feed.subscribe(cursor, backlog)

        async def events() -> AsyncIterator[str]:
            position = Cursor(start)
            try:
                yield "retry: 1000\n\n"
                backlog_items = (await self.feed.read_range(gaps) if gaps else []) + items
                ids = [i.alert.alert_id for i in backlog_items]
                acks = await self.acks.get_many(ids)
                tiers = await self._tiers({i.alert.customer_id for i in backlog_items})
                for item in backlog_items:
                    if item.offset >= position.get(item.partition, 0):
                        yield _sse_alert(item, position, acks, tiers)
                while True:
                    try:
                        message = await asyncio.wait_for(
                            subscription.queue.get(), KEEPALIVE_SECONDS
                        )
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if message is None or (isinstance(message, dict) and message["type"] == "end"):
                        return
                    if isinstance(message, FeedItem):
                        if message.offset >= position.get(message.partition, 0):
                            tiers = await self._tiers({message.alert.customer_id})
                            yield _sse_alert(message, position, {}, tiers)
                    else:
                        yield f"event: ack\ndata: {msgspec.json.encode(message).decode()}\n\n"
            finally:
                self.feed.unsubscribe(subscription)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def stats(self, request: Request) -> Response:
        """
        summary: Counts for the overview.
        responses:
          200: {description: "customers, alerts in the last hour by kind and severity,
                acknowledged alerts, the feed's position on crm.alerts, events per second
                by input topic, dead letters of the last hour by reason, the tiers of a
                sample of customers, and model quality from the workers' checkpoints"}
        """
        self.caller(request)
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        recent = [i.alert for i in self.feed.recent() if i.alert.occurred_at >= hour_ago]
        client = self.profiles.client
        customers, acked = await asyncio.gather(
            client.scard(CUSTOMERS_KEY), self.acks.client.hlen("crm:alerts:acks")
        )
        return JSONResponse(
            {
                "customers": int(customers),
                "alerts_last_hour": {
                    "by_kind": dict(Counter(a.kind for a in recent)),
                    "by_severity": dict(Counter(a.severity for a in recent)),
                },
                "alerts_buffered": len(self.feed.buffer),
                "alerts_acknowledged": int(acked),
                "feed_positions": {str(p): o for p, o in sorted(self.feed.positions.items())},
                **self.overview.snapshot(),
                "at": time.time(),
            }
        )

    async def _tiers(self, customer_ids: set[str]) -> dict[str, str]:
        """Each customer's current tier (one pipelined read)."""
        if not customer_ids:
            return {}
        ordered = sorted(customer_ids)
        async with self.profiles.client.pipeline(transaction=False) as pipe:
            for customer_id in ordered:
                pipe.hget(profile_key(customer_id), "profile")
            values = await pipe.execute()
        return {c: _decode_tier(v).tier for c, v in zip(ordered, values, strict=True) if v}


class _TierOnly(msgspec.Struct):
    tier: str = "bronze"


_decode_tier = msgspec.json.Decoder(_TierOnly).decode

#: Profile fields the API does not show: internal model state (``items`` is what
#: recommendations keep of the customer's purchases; ``recommendations`` is shown).
_HIDDEN = ("model_state", "streak_event_ids", "history", "items")


def profile_view(profile: Profile, keys: ContactKeys | None = None) -> dict[str, Any]:
    """A profile as the API shows it: its fields, ``clv``, without internal model state;
    ``contact`` as :func:`contact_view` shows it."""
    data = msgspec.to_builtins(profile)
    for name in _HIDDEN:
        data.pop(name, None)
    data["clv"] = profile.clv
    data["contact"] = contact_view(profile, keys)
    return data


def contact_view(profile: Profile, keys: ContactKeys | None) -> dict[str, Any]:
    """A customer's contact as the API shows it: name, e-mail and phone decrypted when
    ``keys`` can open them (``null`` otherwise: never the hashes), country, external ids.

    >>> from crmstream.models.contact import Contact
    >>> keys = ContactKeys(b"k", bytes(32))
    >>> sealed = {"email": keys.seal("c1", "email", "ann@example.com")}
    >>> profile = Profile(customer_id="c1",
    ...                   contact=Contact(hashes={"email": "ab"}, sealed=sealed))
    >>> contact_view(profile, keys)["email"], contact_view(profile, None)["email"]
    ('ann@example.com', None)
    """
    contact = profile.contact
    view: dict[str, Any] = dict.fromkeys(CONTACT_FIELDS)
    if contact is None:
        return {**view, "country": None, "external_ids": {}}
    for kind in CONTACT_FIELDS:
        sealed = contact.sealed.get(kind)
        if sealed is not None and keys is not None and keys.can_seal:
            try:
                view[kind] = keys.open(profile.customer_id, kind, sealed)
            except ValueError:  # sealed with another key
                view[kind] = None
    return {**view, "country": contact.country, "external_ids": dict(contact.external_ids)}


def alert_view(item: FeedItem, acks: dict[str, Ack], tiers: dict[str, str]) -> dict[str, Any]:
    """An alert as the API shows it: its fields, where it is on the topic, tier and ack."""
    data = msgspec.to_builtins(item.alert)
    if data.get("excerpt"):  # redacted by the workers; again for alerts of older versions
        data["excerpt"] = redact(data["excerpt"])
    ack = acks.get(item.alert.alert_id)
    data.update(
        partition=item.partition,
        offset=item.offset,
        tier=tiers.get(item.alert.customer_id),
        ack=msgspec.to_builtins(ack) if ack else None,
    )
    return data


def _sse_alert(
    item: FeedItem, position: Cursor, acks: dict[str, Ack], tiers: dict[str, str]
) -> str:
    position[item.partition] = item.offset + 1
    data = msgspec.json.encode(alert_view(item, acks, tiers)).decode()
    return f"id: {position.render()}\nevent: alert\ndata: {data}\n\n"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A ``since`` parameter: a duration back from now (``30m``) or an ISO 8601 time.

    >>> now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    >>> parse_since("90m", now).isoformat()
    '2026-05-01T10:30:00+00:00'
    >>> parse_since("2026-04-30T08:00:00Z").isoformat()
    '2026-04-30T08:00:00+00:00'
    >>> try:
    ...     parse_since("yesterday")
    ... except ApiError as error:
    ...     print(error.status, error.code)
    422 invalid_since
    """
    match = _DURATION.match(text)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(match[1])})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422, "invalid_since", "since is a duration (30m, 2h, 7d) or an ISO 8601 time"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _choice(query: Any, name: str, allowed: frozenset[str]) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise ApiError(422, f"invalid_{name}", f"{name} is one of {', '.join(sorted(allowed))}")
    return value


def _integer(query: Any, name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ApiError(422, f"invalid_{name}", f"{name} is an integer from {low} to {high}")
    return int(value)


_SCHEMAS = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {"title": "crmstream dashboard API", "version": "1"},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
            }
        },
        "security": [{"bearer": []}, {"session": []}],
    }
)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


def _route(request: Request) -> str:
    """The route's template (``/api/customers/{customer_id}``): logs name no customer."""
    route = request.scope.get("route")
    return getattr(route, "path", "?")


async def _redis_error(request: Request, exc: Exception) -> Response:
    log.warning("dashboard: Redis error on %s: %s", _route(request), type(exc).__name__)
    return error_response(503, "redis_unavailable", "the profile store does not answer")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("dashboard: error on %s", _route(request), exc_info=exc)
    return error_response(500, "internal_error", "the server failed; see its log")


def create_dashboard(settings: Settings) -> Starlette:
    """The dashboard app for ``settings`` (``CRM_API_TOKEN`` must be set)."""
    board = Dashboard(settings)
    routes = [
        Route("/", board.index, include_in_schema=False),
        Route("/login", board.login_page, methods=["GET"], include_in_schema=False),
        Route("/login", board.login, methods=["POST"], include_in_schema=False),
        Route("/logout", board.logout, methods=["POST"], include_in_schema=False),
        Route("/favicon.ico", lambda request: Response(status_code=204), include_in_schema=False),
        Route("/health", board.health),
        Route("/openapi.json", board.openapi, include_in_schema=False),
        Route("/api/session", board.session),
        Route("/api/customers/{customer_id}", board.customer, methods=["GET"]),
        Route("/api/customers/{customer_id}", board.erase_customer, methods=["DELETE"]),
        Route("/api/customers/{customer_id}/history", board.customer_history),
        Route("/api/alerts", board.alerts),
        Route("/api/alerts/stream", board.stream),
        Route("/api/alerts/{alert_id}/ack", board.acknowledge, methods=["POST"]),
        Route("/api/stats", board.stats),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=board.lifespan,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            RedisError: _redis_error,
            Exception: _server_error,
        },
    )
    app.state.dashboard = board
    app.add_middleware(SecurityHeaders)
    return app
