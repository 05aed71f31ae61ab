"""Whether the servers answer, and what each worker says about itself.

Two questions, one module. Before a command uses Redis or Kafka, :func:`check_redis` and
:func:`check_broker` ask each server one cheap question with a short timeout and raise
:class:`Unreachable` with a one-line reason instead of letting a client retry for
minutes. While a worker runs, it writes a heartbeat (:class:`WorkerHeartbeat`) to Redis
every :data:`HEARTBEAT_INTERVAL` seconds: a hash ``crm:workers:<worker id>`` that expires
after :data:`HEARTBEAT_TTL` seconds, so a worker that died without a word disappears on
its own. ``crmstream health`` reads them back (:func:`read_heartbeats`) and
:func:`verdict` turns them into an exit code.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crmstream.streams.settings import redact_url

#: How often a worker writes its heartbeat, seconds.
HEARTBEAT_INTERVAL = 5.0
#: A heartbeat hash expires after this many seconds (three missed beats).
HEARTBEAT_TTL = int(3 * HEARTBEAT_INTERVAL)
#: The longest one reachability question may take, seconds.
PROBE_TIMEOUT = 3.0

#: Set of the ids of workers that have written a heartbeat (pruned when read).
WORKERS_KEY = "crm:workers"

Status = Literal["starting", "ok", "broker_unreachable", "redis_unreachable", "stopping"]
#: Statuses that make ``crmstream health`` fail; ``starting`` and ``stopping`` do not.
UNHEALTHY: frozenset[str] = frozenset({"broker_unreachable", "redis_unreachable"})


class Unreachable(Exception):
    """A configured server does not answer as it should; ``str()`` is a one-line reason."""


def worker_key(worker_id: str) -> str:
    """Redis key of a worker's heartbeat hash.

    >>> worker_key("web-1:4242")
    'crm:workers:web-1:4242'
    """
    return f"{WORKERS_KEY}:{worker_id}"


def judge(*, stopping: bool, ready: bool, redis_problem: bool, broker_problem: bool) -> Status:
    """A worker's status from what it knows about itself, the most urgent first.

    >>> judge(stopping=False, ready=True, redis_problem=False, broker_problem=False)
    'ok'
    >>> judge(stopping=False, ready=True, redis_problem=False, broker_problem=True)
    'broker_unreachable'
    >>> judge(stopping=True, ready=True, redis_problem=True, broker_problem=True)
    'stopping'
    >>> judge(stopping=False, ready=False, redis_problem=False, broker_problem=False)
    'starting'
    """
    if stopping:
        return "stopping"
    if redis_problem:
        return "redis_unreachable"
    if broker_problem:
        return "broker_unreachable"
    return "ok" if ready else "starting"


@dataclass(frozen=True)
class WorkerHeartbeat:
    """What a worker last said about itself (times are Unix seconds)."""

    worker_id: str
    app_id: str
    host: str
    pid: int
    status: str
    since: float
    heartbeat: float
    detail: str = ""

    def to_fields(self) -> dict[str, str]:
        """The Redis hash fields of this heartbeat."""
        return {k: str(v) for k, v in asdict(self).items() if k != "worker_id"}

    @classmethod
    def from_fields(cls, worker_id: str, fields: dict[str, str]) -> WorkerHeartbeat:
        """The inverse of :meth:`to_fields`.

        >>> beat = WorkerHeartbeat("h:1", "crm", "h", 1, "ok", 10.0, 12.5)
        >>> WorkerHeartbeat.from_fields("h:1", beat.to_fields()) == beat
        True
        """
        return cls(
            worker_id=worker_id,
            app_id=fields.get("app_id", ""),
            host=fields.get("host", ""),
            pid=int(fields.get("pid", "0")),
            status=fields.get("status", ""),
            since=float(fields.get("since", "0")),
            heartbeat=float(fields.get("heartbeat", "0")),
            detail=fields.get("detail", ""),
        )


def verdict(workers: Iterable[WorkerHeartbeat]) -> int:
    """Exit code of ``crmstream health``: 0 if a worker is ``ok`` and none is unhealthy.

    >>> def worker(status):
    ...     return WorkerHeartbeat("h:1", "crmstream", "h", 1, status, 0.0, 0.0)
    >>> verdict([worker("ok"), worker("stopping")]), verdict([worker("starting")])
    (0, 1)
    >>> verdict([worker("ok"), worker("broker_unreachable")]), verdict([])
    (1, 1)
    """
    statuses = {worker.status for worker in workers}
    return 0 if "ok" in statuses and not statuses & UNHEALTHY else 1


def redis_client(url: str, timeout: float = PROBE_TIMEOUT) -> redis.Redis:
    """A synchronous Redis client (of a server or a cluster) that gives up after
    ``timeout`` seconds."""
    from crmstream.streams.redis_client import connect_sync

    return connect_sync(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
    )


def check_redis(url: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise :class:`Unreachable` unless a Redis server answers PING at ``url``.

    Selecting the URL's database is part of connecting, so a database the server does not
    have fails here too; a server of another protocol (a Kafka port, say) does not answer.
    """
    client = redis_client(url, timeout)
    try:
        client.ping()
    except RedisError as exc:
        raise Unreachable(redis_reason(url, exc, timeout)) from None
    finally:
        client.close()


def redis_reason(url: str, exc: RedisError, timeout: float = PROBE_TIMEOUT) -> str:
    """A one-line reason for a Redis error met while connecting to ``url``."""
    where = f"Redis at {redact_url(url)} (CRM_REDIS_URL)"
    if isinstance(exc, RedisTimeoutError):
        return f"{where} did not answer within {timeout:g}s: is it a Redis server?"
    if isinstance(exc, ResponseError) and "DB index" in str(exc):
        return f"{where} has no such database: {exc}"
    if isinstance(exc, RedisConnectionError):
        return f"cannot reach {where}: {exc}"
    return f"{where} refused: {exc}"


@contextlib.contextmanager
def _silenced(name: str) -> Iterator[None]:
    """Hold back a library's log records: the caller reports the outcome in one line."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_broker(
    servers: list[str],
    timeout: float = PROBE_TIMEOUT,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`Unreachable` unless a Kafka broker in ``servers`` answers a metadata
    request within ``timeout`` seconds (over TLS/SASL with the ``security`` options)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    timeout_ms = int(timeout * 1000)
    started = time.monotonic()
    try:
        with _silenced("kafka"):
            admin = KafkaAdminClient(
                bootstrap_servers=servers,
                client_id="crmstream-probe",
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
                reconnect_backoff_max_ms=timeout_ms,
                **(security or {}),
            )
            try:
                admin.describe_cluster()
            finally:
                admin.close()
    except KafkaError as exc:
        took = time.monotonic() - started
        why = "" if isinstance(exc, KafkaTimeoutError | KafkaConnectionError) else f": {exc}"
        raise Unreachable(
            f"no Kafka broker answered at {';'.join(servers)} (CRM_KAFKA_URL) "
            f"within {took:.0f}s{why}"
        ) from None


def read_heartbeats(url: str, app_id: str | None = None) -> list[WorkerHeartbeat]:
    """The heartbeats that have not expired, of the workers of ``app_id`` (all if None)."""
    client = redis_client(url)
    try:
        ids = sorted(client.smembers(WORKERS_KEY))
        with client.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(worker_key(worker_id))
            found = pipe.execute()
        expired = [worker_id for worker_id, fields in zip(ids, found, strict=True) if not fields]
        if expired:
            client.srem(WORKERS_KEY, *expired)
    finally:
        client.close()
    beats = [
        WorkerHeartbeat.from_fields(worker_id, fields)
        for worker_id, fields in zip(ids, found, strict=True)
        if fields
    ]
    return [beat for beat in beats if app_id is None or beat.app_id == app_id]
