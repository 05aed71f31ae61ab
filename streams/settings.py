"""One typed configuration object, read from ``CRM_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crmstream.models.money import Currencies
from crmstream.models.tiers import TierPolicy


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
    batch_wait: float = Field(0.05, gt=0)
    """``CRM_BATCH_WAIT``: seconds an agent waits to fill a batch (bounds added latency)."""
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
    web_enabled: bool = False
    """``CRM_WEB_ENABLED``: serve the worker's HTTP endpoints."""
    web_port: int = Field(6066, ge=1, le=65535)
    """``CRM_WEB_PORT``: port of the worker's HTTP endpoints."""
    data_dir: str = ""
    """``CRM_DATA_DIR``: Faust's local data directory (empty: ``crmstream-<app id>`` under the
    system temporary directory). No state lives there: it is all in Redis and Kafka."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """``CRM_LOG_LEVEL``: worker log level."""

    @field_validator("kafka_url")
    @classmethod
    def _kafka_scheme(cls, value: str) -> str:
        if not value.startswith("kafka://"):
            raise ValueError("CRM_KAFKA_URL must look like kafka://host:port")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        """The broker addresses for clients that take ``host:port`` strings."""
        parts = (part.strip() for part in self.kafka_url[len("kafka://") :].split(";"))
        return [part for part in parts if part]

    def tier_policy(self) -> TierPolicy:
        """The value-tier policy these settings describe."""
        return TierPolicy(
            silver=self.tier_silver,
            gold=self.tier_gold,
            platinum=self.tier_platinum,
            hysteresis=self.tier_hysteresis,
        )

    def currencies(self) -> Currencies:
        """Exchange rates into the base currency."""
        return Currencies(self.currency, dict(self.fx_rates))
