"""One typed configuration object, read from ``CRM_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The models are imported where they are built: importing them loads River (about a
# second), which commands that only read settings (and fail fast on bad ones) skip.
if TYPE_CHECKING:
    from crmstream.models.alerts import AlertPolicy
    from crmstream.models.events import Policies
    from crmstream.models.money import Currencies
    from crmstream.models.purchase_models import PurchaseModels
    from crmstream.models.tiers import TierPolicy

#: The checkpoint key when ``CRM_CHECKPOINT_SECRET`` is not set (development only).
DEVELOPMENT_CHECKPOINT_SECRET = "crmstream-development-checkpoint-key"


class Settings(BaseSettings):
    """Everything a crmstream process can be told; build once and pass it on."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore", frozen=True)

    kafka_url: str = "kafka://127.0.0.1:9092"
    """``CRM_KAFKA_URL``: Kafka bootstrap servers, ``kafka://host:port[;host:port]``."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """``CRM_REDIS_URL``: Redis or Valkey URL (``rediss://`` for TLS, user:password for ACL)."""
    app_id: str = "crmstream"
    """``CRM_APP_ID``: Kafka consumer group of the workers; workers with one id share work."""
    partitions: int = Field(8, ge=1, le=1024)
    """``CRM_PARTITIONS``: partitions of each declared topic (the most workers that share work)."""
    replication_factor: int = Field(1, ge=1)
    """``CRM_REPLICATION_FACTOR``: replication of declared topics (3 on a production cluster)."""
    session_timeout: float = Field(10.0, gt=0)
    """``CRM_SESSION_TIMEOUT``: consumer session timeout in seconds (a dead worker's partitions
    move after this long)."""
    batch_size: int = Field(500, ge=1)
    """``CRM_BATCH_SIZE``: most events an agent handles in one Redis round trip."""
    fetch_max_wait: float = Field(0.02, gt=0, le=5)
    """``CRM_FETCH_MAX_WAIT``: longest a consumer fetch waits for data, seconds (bounds the
    latency on brokers that hold fetches; Apache Kafka answers as soon as data arrives)."""
    batch_wait: float = Field(0.01, gt=0)
    """``CRM_BATCH_WAIT``: seconds an agent waits to fill a batch (bounds added latency;
    under load batches fill to ``CRM_BATCH_SIZE`` before it passes)."""
    dedupe_window: float = Field(7 * 24 * 3600.0, gt=0)
    """``CRM_DEDUPE_WINDOW``: seconds an event id is remembered to drop re-sent duplicates."""
    currency: str = Field("USD", pattern="^[A-Z]{3}$")
    """``CRM_CURRENCY``: base currency of profile money fields."""
    fx_rates: dict[str, float] = Field(default_factory=dict)
    """``CRM_FX_RATES``: JSON object of rates into the base currency, e.g. ``{"EUR": 1.08}``;
    purchases in other currencies are dead-lettered."""
    tier_silver: float = Field(100.0, gt=0)
    """``CRM_TIER_SILVER``: CLV at which a customer becomes silver."""
    tier_gold: float = Field(500.0, gt=0)
    """``CRM_TIER_GOLD``: CLV at which a customer becomes gold."""
    tier_platinum: float = Field(2000.0, gt=0)
    """``CRM_TIER_PLATINUM``: CLV at which a customer becomes platinum."""
    tier_hysteresis: float = Field(0.1, ge=0, lt=1)
    """``CRM_TIER_HYSTERESIS``: fraction below a threshold CLV must fall before a demotion."""
    alert_strongly_negative: float = Field(-0.6, ge=-1, le=1)
    """``CRM_ALERT_STRONGLY_NEGATIVE``: a message scoring at or below this raises
    ``strongly_negative``."""
    alert_negative: float = Field(-0.3, ge=-1, le=1)
    """``CRM_ALERT_NEGATIVE``: a message scoring at or below this counts toward a streak."""
    alert_streak: int = Field(3, ge=2)
    """``CRM_ALERT_STREAK``: negative messages in a row that raise ``negative_streak``."""
    alert_drop: float = Field(0.5, gt=0, le=2)
    """``CRM_ALERT_DROP``: fall of the moving average that raises ``sentiment_drop``."""
    alert_smoothing: float = Field(0.3, gt=0, le=1)
    """``CRM_ALERT_SMOOTHING``: weight of the newest message in the moving average."""
    alert_cooldown: float = Field(3600.0, ge=0)
    """``CRM_ALERT_COOLDOWN``: seconds (event time) before the same kind alerts again for
    the same customer."""
    alert_low_rating: int = Field(2, ge=1, le=5)
    """``CRM_ALERT_LOW_RATING``: ratings at or below this raise ``low_rating``."""
    alert_low_nps: int = Field(4, ge=0, le=10)
    """``CRM_ALERT_LOW_NPS``: NPS answers at or below this raise ``low_rating``."""
    alert_critical_tiers: list[str] = Field(default_factory=lambda: ["gold", "platinum"])
    """``CRM_ALERT_CRITICAL_TIERS``: JSON list of tiers whose alerts are ``critical``."""
    propensity_horizon_days: float = Field(90.0, gt=0, le=3650)
    """``CRM_PROPENSITY_HORIZON_DAYS``: horizon of ``purchase_propensity``, the probability
    that a customer buys again within this many days."""
    propensity_period_days: float = Field(30.0, gt=0, le=365)
    """``CRM_PROPENSITY_PERIOD_DAYS``: length of the periods the propensity model learns
    from (one delayed label per period; shorter periods learn sooner and cost more)."""
    segments: int = Field(4, ge=2, le=32)
    """``CRM_SEGMENTS``: number of customer segments (online k-means clusters)."""
    anomaly_threshold: float = Field(0.95, gt=0, le=1)
    """``CRM_ANOMALY_THRESHOLD``: Half-Space Trees score (0..1) at or above which a purchase
    raises an ``anomaly`` alert."""
    anomaly_warmup: int = Field(500, ge=0)
    """``CRM_ANOMALY_WARMUP``: purchases a partition's anomaly model learns from before it
    may alert."""
    history_messages: int = Field(20, ge=0, le=500)
    """``CRM_HISTORY_MESSAGES``: a customer's recent messages (with sentiment and intent)
    kept in their profile for the support page (0: none)."""
    history_alerts: int = Field(20, ge=0, le=500)
    """``CRM_HISTORY_ALERTS``: a customer's recent alerts kept in their profile."""
    history_tiers: int = Field(10, ge=0, le=500)
    """``CRM_HISTORY_TIERS``: a customer's recent tier changes kept in their profile."""
    history_days: float = Field(90.0, gt=0, le=3650)
    """``CRM_HISTORY_DAYS``: history entries older than this (event time, before the
    customer's newest event) are dropped."""
    history_excerpt: int = Field(120, ge=0, le=280)
    """``CRM_HISTORY_EXCERPT``: characters of each message kept in the history."""
    checkpoint_interval: float = Field(10.0, gt=0, le=3600)
    """``CRM_CHECKPOINT_INTERVAL``: seconds between checkpoints of the models' shared weights
    (also written on revocation and shutdown). Kafka offsets are committed only as far as a
    checkpoint includes, so a crash replays at most about this much of the stream."""
    checkpoint_secret: SecretStr = SecretStr("")
    """``CRM_CHECKPOINT_SECRET``: key of the HMAC that authenticates model checkpoints
    before they are unpickled. Set it in production (any long random string, the same for
    every worker); empty means a fixed development key, with a warning at start."""
    web_enabled: bool = False
    """``CRM_WEB_ENABLED``: serve the worker's HTTP endpoints (``/metrics``, ``/health``)."""
    web_port: int = Field(6066, ge=1, le=65535)
    """``CRM_WEB_PORT``: port of the worker's HTTP endpoints."""
    web_host: str = "127.0.0.1"
    """``CRM_WEB_HOST``: address of the worker's HTTP endpoints (``0.0.0.0`` in a container
    that Prometheus scrapes from outside)."""
    api_token: SecretStr = SecretStr("")
    """``CRM_API_TOKEN``: bearer token of the dashboard's JSON API and password of its login
    form (any long random string; ``crmstream dashboard`` refuses to start without one)."""
    dashboard_alert_buffer: int = Field(20000, ge=100, le=1_000_000)
    """``CRM_DASHBOARD_ALERT_BUFFER``: recent alerts a dashboard keeps in memory (read from
    ``crm.alerts``) for the feed, reconnects and ``GET /api/alerts``."""
    dashboard_session_hours: float = Field(12.0, gt=0, le=24 * 30)
    """``CRM_DASHBOARD_SESSION_HOURS``: how long a dashboard login lasts."""
    dashboard_secure_cookie: bool = False
    """``CRM_DASHBOARD_SECURE_COOKIE``: mark the session cookie ``Secure`` (set it when the
    dashboard is served over HTTPS, e.g. behind a TLS proxy)."""
    liveness_timeout: float = Field(60.0, gt=0, le=3600)
    """``CRM_LIVENESS_TIMEOUT``: a worker's ``/health`` answers 503 once it has unprocessed
    events but has not finished a batch for this many seconds."""
    data_dir: str = ""
    """``CRM_DATA_DIR``: Faust's local data directory (empty: ``crmstream-<app id>`` under the
    system temporary directory). No state lives there: it is all in Redis and Kafka."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """``CRM_LOG_LEVEL``: worker log level."""
    recommendations: bool = True
    """``CRM_RECOMMENDATIONS``: learn product recommendations from purchases' items (shared
    item statistics in Redis, the profile's ``recommendations``); false: items are ignored
    and a purchase costs what it did without them."""
    rules_file: str = ""
    """``CRM_RULES_FILE``: the marketing rules (YAML, see ``examples/rules.yaml``); empty: no
    rules. Workers load it at start (an invalid file stops them) and reload it when it
    changes (an invalid change is logged and the previous rules keep running)."""
    rules_reload_interval: float = Field(5.0, gt=0, le=3600)
    """``CRM_RULES_RELOAD_INTERVAL``: seconds between two checks of ``CRM_RULES_FILE``."""
    shutdown_timeout: float = Field(15.0, gt=0, le=3600)
    """``CRM_SHUTDOWN_TIMEOUT``: seconds a worker may take to stop after SIGTERM or Ctrl-C
    before it exits anyway (exit code 3), whatever it is waiting for."""

    @field_validator("kafka_url")
    @classmethod
    def _kafka_scheme(cls, value: str) -> str:
        parts = (part.strip() for part in value.removeprefix("kafka://").split(";"))
        servers = [part for part in parts if part]
        if not value.startswith("kafka://") or not servers or not all(map(_is_host_port, servers)):
            raise ValueError(f"must look like kafka://host:port[;host:port], got {value!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        problem = redis_url_problem(value)
        if problem:
            raise ValueError(f"{problem}, got {redact_url(value)!r}")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker addresses for clients that take ``host:port`` strings."""
        parts = (part.strip() for part in self.kafka_url[len("kafka://") :].split(";"))
        return [part for part in parts if part]

    def tier_policy(self) -> TierPolicy:
        """The value-tier policy these settings describe."""
        from crmstream.models.tiers import TierPolicy

        return TierPolicy(
            silver=self.tier_silver,
            gold=self.tier_gold,
            platinum=self.tier_platinum,
            hysteresis=self.tier_hysteresis,
        )

    def alert_policy(self) -> AlertPolicy:
        """The alert policy these settings describe."""
        from crmstream.models.alerts import AlertPolicy

        return AlertPolicy(
            strongly_negative=self.alert_strongly_negative,
            negative=self.alert_negative,
            streak=self.alert_streak,
            drop=self.alert_drop,
            smoothing=self.alert_smoothing,
            cooldown=timedelta(seconds=self.alert_cooldown),
            low_rating=self.alert_low_rating,
            low_nps=self.alert_low_nps,
            critical_tiers=tuple(self.alert_critical_tiers),
        )

    def purchase_models(self) -> PurchaseModels:
        """Fresh purchase models for one partition."""
        from crmstream.models.purchase_models import PurchaseModels

        return PurchaseModels.create(
            horizon_days=self.propensity_horizon_days,
            period_days=self.propensity_period_days,
            n_segments=self.segments,
            anomaly_threshold=self.anomaly_threshold,
            anomaly_warmup=self.anomaly_warmup,
        )

    def policies(self) -> Policies:
        """The business rules events are applied with."""
        from crmstream.models.events import Policies
        from crmstream.models.history import HistoryLimits

        history = HistoryLimits(
            messages=self.history_messages,
            alerts=self.history_alerts,
            tiers=self.history_tiers,
            max_age=timedelta(days=self.history_days),
            excerpt=self.history_excerpt,
        )
        from crmstream.models.recommend import DEFAULT_PARAMS

        return Policies(
            self.tier_policy(),
            self.alert_policy(),
            self.currencies(),
            history=history,
            recommend=DEFAULT_PARAMS if self.recommendations else None,
        )

    def checkpoint_hmac_key(self) -> bytes:
        """The HMAC key of model checkpoints (a development key when none is set)."""
        secret = self.checkpoint_secret.get_secret_value()
        return (secret or DEVELOPMENT_CHECKPOINT_SECRET).encode()

    def currencies(self) -> Currencies:
        """Exchange rates into the base currency."""
        from crmstream.models.money import Currencies

        return Currencies(self.currency, dict(self.fx_rates))


def _is_host_port(server: str) -> bool:
    host, colon, port = server.rpartition(":")
    if not colon:
        return bool(server)  # the port defaults to 9092
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL, or ``None`` if a Redis client can use it.

    Whether the database exists is for the server to say (it has 16 unless configured).

    >>> redis_url_problem("redis://user:secret@cache:6380/2") is None
    True
    >>> redis_url_problem("http://cache:6379/0")
    'must start with redis://, rediss://, unix:// or, for a cluster, redis+cluster://'
    >>> redis_url_problem("redis://cache:6379/first")
    'the database must be a number (redis://host:port/0)'
    >>> redis_url_problem("redis+cluster://cache-0:7000") is None
    True
    >>> redis_url_problem("redis+cluster://cache-0:7000/3")
    'a cluster has only database 0'
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        return "must start with redis://, rediss://, unix:// or, for a cluster, redis+cluster://"
    if parts.scheme.endswith("+cluster") and parts.path.strip("/") not in ("", "0"):
        return "a cluster has only database 0"
    if parts.scheme == "unix":
        if not parts.path:
            return "needs the socket path (unix:///path/to/redis.sock)"
        if not parse_qs(parts.query).get("db", ["0"])[0].isdigit():
            return "the database must be a number (unix:///path/to/redis.sock?db=0)"
        return None
    if not parts.hostname:
        return "needs a host (redis://host:port/0)"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if parts.path not in ("", "/") and not parts.path.strip("/").isdigit():
        return "the database must be a number (redis://host:port/0)"
    return None


def redact_url(url: str) -> str:
    """``url`` with its password replaced, fit for messages and logs.

    >>> redact_url("rediss://app:s3cret@cache:6380/0")
    'rediss://app:***@cache:6380/0'
    >>> redact_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}@{host}").geturl()
