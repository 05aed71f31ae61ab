"""One typed configuration object, read from ``CRM_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

# The models are imported where they are built: importing them loads River (about a
# second), which commands that only read settings (and fail fast on bad ones) skip.
if TYPE_CHECKING:
    from crmstream.models.alerts import AlertPolicy
    from crmstream.models.contact import ContactKeys
    from crmstream.models.events import Policies
    from crmstream.models.history import HistoryLimits
    from crmstream.models.money import Currencies
    from crmstream.models.purchase_models import PurchaseModels
    from crmstream.models.recommend import RecommendParams
    from crmstream.models.tiers import TierPolicy

#: Whether recommendations learn item co-occurrence unless ``CRM_RECOMMEND_CO_OCCURRENCE``
#: says otherwise (see the README, Recommendations, for what it buys and costs).
CO_OCCURRENCE_DEFAULT = True

#: The checkpoint key when ``CRM_CHECKPOINT_SECRET`` is not set (development only).
DEVELOPMENT_CHECKPOINT_SECRET = "crmstream-development-checkpoint-key"
#: The key of contact hashes when ``CRM_PII_SECRET`` is not set (development only).
DEVELOPMENT_PII_SECRET = "crmstream-development-pii-key"

#: Where secret files are read from when it exists (``CRM_SECRETS_DIR`` names another):
#: a file named like a variable, e.g. ``/run/secrets/crm_kafka_sasl_password``, gives that
#: setting (Docker and Compose mount secrets there). Variables win over files.
DEFAULT_SECRETS_DIR = "/run/secrets"


class Settings(BaseSettings):
    """Everything a crmstream process can be told; build once and pass it on."""

    model_config = SettingsConfigDict(
        env_prefix="CRM_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    kafka_url: str = "kafka://127.0.0.1:9092"
    """``CRM_KAFKA_URL``: Kafka bootstrap servers, ``kafka://host:port[;host:port]``."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """``CRM_KAFKA_SECURITY_PROTOCOL``: how every Kafka client of crmstream connects:
    ``PLAINTEXT``, ``SSL`` (TLS, with a client certificate for mTLS), ``SASL_SSL`` (SASL
    over TLS) or ``SASL_PLAINTEXT`` (refused unless ``CRM_KAFKA_ALLOW_SASL_PLAINTEXT``)."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    """``CRM_KAFKA_SASL_MECHANISM``: SASL mechanism with ``SASL_SSL``/``SASL_PLAINTEXT``."""
    kafka_sasl_username: str = ""
    """``CRM_KAFKA_SASL_USERNAME``: SASL user name (required with SASL)."""
    kafka_sasl_password: SecretStr = SecretStr("")
    """``CRM_KAFKA_SASL_PASSWORD``: SASL password (required with SASL)."""
    kafka_ssl_cafile: str = ""
    """``CRM_KAFKA_SSL_CAFILE``: PEM file of the CA(s) that sign the brokers' certificates
    (empty: the system's trusted CAs)."""
    kafka_ssl_certfile: str = ""
    """``CRM_KAFKA_SSL_CERTFILE``: PEM client certificate for mTLS (with
    ``CRM_KAFKA_SSL_KEYFILE``)."""
    kafka_ssl_keyfile: str = ""
    """``CRM_KAFKA_SSL_KEYFILE``: PEM private key of the client certificate."""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    """``CRM_KAFKA_SSL_KEY_PASSWORD``: password of ``CRM_KAFKA_SSL_KEYFILE`` if encrypted."""
    kafka_ssl_check_hostname: bool = True
    """``CRM_KAFKA_SSL_CHECK_HOSTNAME``: check that a broker's certificate names the host
    connected to (turn off only for brokers reached by an address their certificate lacks)."""
    kafka_allow_sasl_plaintext: bool = False
    """``CRM_KAFKA_ALLOW_SASL_PLAINTEXT``: allow ``SASL_PLAINTEXT``, which sends the
    credentials (with ``PLAIN``, the password itself) unencrypted."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """``CRM_REDIS_URL``: Redis or Valkey URL: ``redis://host:port/db``, ``rediss://`` for TLS,
    ``user:password@`` for an ACL user, a Redis Cluster as ``redis+cluster://host:port`` (any
    node; ``rediss+cluster://`` for TLS)."""
    redis_username: str = ""
    """``CRM_REDIS_USERNAME``: ACL user (instead of the one in ``CRM_REDIS_URL``)."""
    redis_password: SecretStr = SecretStr("")
    """``CRM_REDIS_PASSWORD``: password of the ACL user (instead of the one in
    ``CRM_REDIS_URL``, e.g. read from a secret file)."""
    redis_ssl_cafile: str = ""
    """``CRM_REDIS_SSL_CAFILE``: PEM file of the CA(s) that sign the server's certificate, with
    ``rediss://`` (empty: the system's trusted CAs)."""
    redis_ssl_certfile: str = ""
    """``CRM_REDIS_SSL_CERTFILE``: PEM client certificate, with ``rediss://`` when the server
    requires one (with ``CRM_REDIS_SSL_KEYFILE``)."""
    redis_ssl_keyfile: str = ""
    """``CRM_REDIS_SSL_KEYFILE``: PEM private key of the Redis client certificate."""
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
    """``CRM_BATCH_SIZE``: most events in one batch (one Redis round trip per step)."""
    fetch_max_wait: float = Field(0.02, gt=0, le=5)
    """``CRM_FETCH_MAX_WAIT``: longest a consumer fetch waits for data, seconds (bounds the
    latency on brokers that hold fetches; Apache Kafka answers as soon as data arrives)."""
    fetch_partition_bytes: int = Field(128 * 1024, ge=1024)
    """``CRM_FETCH_PARTITION_BYTES``: most bytes one consumer fetch takes of one partition
    (Kafka's ``max.partition.fetch.bytes``; a larger record batch still comes whole). Fetched
    records wait in the worker's memory until it processes them, so this bounds what a worker
    that is behind its input holds: about this much per input partition it owns."""
    batch_wait: float = Field(0.1, gt=0)
    """``CRM_BATCH_WAIT``: longest the worker waits for a batch, in seconds, before it takes
    the events there are. A batch is handed over as soon as it holds every event that has
    arrived (a lone event goes at once), or ``CRM_BATCH_SIZE`` of them; see
    ``streams/batching.py``."""
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
    allowed_lateness: float = Field(3600.0, ge=0, le=365 * 86400.0)
    """``CRM_ALLOWED_LATENESS``: seconds a purchase may be dated before the newest one seen
    on its partition and still count for the propensity model's delayed labels (the
    watermark is the newest ``occurred_at`` minus this). Later ones update the profile but
    teach the propensity model only the periods still open."""
    max_future: float = Field(86400.0, gt=0)
    """``CRM_MAX_FUTURE``: seconds an event's ``occurred_at`` may be ahead of the worker's
    wall clock; events dated further ahead are dead-lettered (``future_timestamp``)."""
    value_horizon_days: float = Field(365.0, gt=0, le=3650)
    """``CRM_VALUE_HORIZON_DAYS``: horizon of the profile's ``predicted_revenue`` and
    ``predicted_clv``, the revenue (and CLV) expected from a customer in this many days."""
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
    recommend_co_occurrence: bool = CO_OCCURRENCE_DEFAULT
    """``CRM_RECOMMEND_CO_OCCURRENCE``: also learn which items are bought together (shared
    co-occurrence counts: about nine ``ZINCRBY`` per item of a purchase) and recommend "bought
    with X". Switched on later, the counts start from then."""
    rules_file: str = ""
    """``CRM_RULES_FILE``: the marketing rules (YAML, see ``examples/rules.yaml``); empty: no
    rules. Workers load it at start (an invalid file stops them) and reload it when it
    changes (an invalid change is logged and the previous rules keep running)."""
    rules_reload_interval: float = Field(5.0, gt=0, le=3600)
    """``CRM_RULES_RELOAD_INTERVAL``: seconds between two checks of ``CRM_RULES_FILE``."""
    pii_secret: SecretStr = SecretStr("")
    """``CRM_PII_SECRET``: key of the HMAC-SHA256 hashes kept of customers' names, e-mail
    addresses and phone numbers, and of the markers of erased customer ids. Set it in
    production (a long random string, the same for every process, never changed: hashes
    made with another key do not match); empty means a fixed development key."""
    pii_encryption_key: SecretStr = SecretStr("")
    """``CRM_PII_ENCRYPTION_KEY``: base64 of a 16-, 24- or 32-byte AES key. When set, an
    AES-GCM encrypted copy of each name, e-mail address and phone number is kept, and the
    dashboard shows them to logged-in users; empty: only keyed hashes are kept."""
    erasure_policy: Literal["deadletter", "allow"] = "deadletter"
    """``CRM_ERASURE_POLICY``: what happens to events that arrive for a customer after
    ``crmstream erase``: ``deadletter`` (reason ``erased``) or ``allow`` (a fresh profile)."""
    shutdown_timeout: float = Field(15.0, gt=0, le=3600)
    """``CRM_SHUTDOWN_TIMEOUT``: seconds a worker may take to stop after SIGTERM or Ctrl-C
    before it exits anyway (exit code 3), whatever it is waiting for."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Files only where the directory exists (pydantic-settings warns about a missing one).
        folder = Path(os.environ.get("CRM_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
        files = (
            (SecretsSettingsSource(settings_cls, secrets_dir=folder),) if folder.is_dir() else ()
        )
        return (init_settings, env_settings, *files)

    @model_validator(mode="after")
    def _transport_security(self) -> Settings:
        problems = transport_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

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

    @field_validator("pii_encryption_key")
    @classmethod
    def _aes_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            _aes_key_bytes(value.get_secret_value())
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
            lateness_days=self.allowed_lateness / 86400.0,
            value_horizon_days=self.value_horizon_days,
        )

    def history_limits(self) -> HistoryLimits:
        """How much of a customer's recent history profiles keep."""
        from crmstream.models.history import HistoryLimits

        return HistoryLimits(
            messages=self.history_messages,
            alerts=self.history_alerts,
            tiers=self.history_tiers,
            max_age=timedelta(days=self.history_days),
            excerpt=self.history_excerpt,
        )

    def recommend_params(self) -> RecommendParams | None:
        """How recommendations are learned and scored (``None``: they are off)."""
        import msgspec

        from crmstream.models.recommend import DEFAULT_PARAMS

        if not self.recommendations:
            return None
        if self.recommend_co_occurrence:
            return DEFAULT_PARAMS
        return msgspec.structs.replace(DEFAULT_PARAMS, co_weight=0.0)

    def policies(self) -> Policies:
        """The business rules events are applied with."""
        from crmstream.models.events import Policies

        return Policies(
            self.tier_policy(),
            self.alert_policy(),
            self.currencies(),
            history=self.history_limits(),
            recommend=self.recommend_params(),
        )

    def checkpoint_hmac_key(self) -> bytes:
        """The HMAC key of model checkpoints (a development key when none is set)."""
        secret = self.checkpoint_secret.get_secret_value()
        return (secret or DEVELOPMENT_CHECKPOINT_SECRET).encode()

    def contact_keys(self) -> ContactKeys:
        """The keys that protect customers' contact details (see ``CRM_PII_*``)."""
        from crmstream.models.contact import ContactKeys

        secret = self.pii_secret.get_secret_value() or DEVELOPMENT_PII_SECRET
        text = self.pii_encryption_key.get_secret_value()
        return ContactKeys(secret.encode(), _aes_key_bytes(text) if text else None)

    def currencies(self) -> Currencies:
        """Exchange rates into the base currency."""
        from crmstream.models.money import Currencies

        return Currencies(self.currency, dict(self.fx_rates))


def transport_problems(settings: Settings) -> list[str]:
    """What is inconsistent or unsafe in the Kafka and Redis transport settings.

    Each problem names its variables. SASL over plaintext is refused unless explicitly
    allowed; TLS files are refused where TLS is off (they would be silently unused), and
    must be readable files.
    """
    problems: list[str] = []
    protocol = settings.kafka_security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if protocol == "SASL_PLAINTEXT" and not settings.kafka_allow_sasl_plaintext:
        problems.append(
            "CRM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT sends the Kafka credentials unencrypted:"
            " use SASL_SSL, or set CRM_KAFKA_ALLOW_SASL_PLAINTEXT=true to accept that"
        )
    if sasl and not (
        settings.kafka_sasl_username and settings.kafka_sasl_password.get_secret_value()
    ):
        problems.append(
            f"CRM_KAFKA_SECURITY_PROTOCOL={protocol} needs CRM_KAFKA_SASL_USERNAME and"
            " CRM_KAFKA_SASL_PASSWORD"
        )
    if not sasl and (
        settings.kafka_sasl_username or settings.kafka_sasl_password.get_secret_value()
    ):
        problems.append(
            f"CRM_KAFKA_SASL_USERNAME/PASSWORD are set but CRM_KAFKA_SECURITY_PROTOCOL={protocol}"
            " does not use SASL (SASL_SSL does)"
        )
    kafka_files = {
        "CRM_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "CRM_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "CRM_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    given = [name for name, path in kafka_files.items() if path]
    if given and not tls:
        problems.append(
            f"{', '.join(given)} set but CRM_KAFKA_SECURITY_PROTOCOL={protocol} has no TLS"
            " (SSL or SASL_SSL)"
        )
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        problems.append("CRM_KAFKA_SSL_CERTFILE and CRM_KAFKA_SSL_KEYFILE go together (mTLS)")
    redis_files = {
        "CRM_REDIS_SSL_CAFILE": settings.redis_ssl_cafile,
        "CRM_REDIS_SSL_CERTFILE": settings.redis_ssl_certfile,
        "CRM_REDIS_SSL_KEYFILE": settings.redis_ssl_keyfile,
    }
    given = [name for name, path in redis_files.items() if path]
    if given and not urlsplit(settings.redis_url).scheme.startswith("rediss"):
        problems.append(f"{', '.join(given)} set but CRM_REDIS_URL is not rediss:// (TLS)")
    if bool(settings.redis_ssl_certfile) != bool(settings.redis_ssl_keyfile):
        problems.append("CRM_REDIS_SSL_CERTFILE and CRM_REDIS_SSL_KEYFILE go together")
    for name, path in {**kafka_files, **redis_files}.items():
        if path and not os.access(path, os.R_OK):
            problems.append(f"{name}={path}: no readable file there")
    return problems


def _aes_key_bytes(text: str) -> bytes:
    """The AES key a ``CRM_PII_ENCRYPTION_KEY`` value holds (standard or URL-safe base64)."""
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (e.g. from `openssl rand -base64 32`)") from None
    if len(key) not in (16, 24, 32):
        raise ValueError(f"must hold a 16-, 24- or 32-byte AES key, not {len(key)} bytes")
    return key


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
