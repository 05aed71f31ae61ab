"""Settings: CRM_* environment variables, their validation, and derived objects."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from crmstream.models.money import UnsupportedCurrency
from crmstream.models.tiers import TierPolicy
from crmstream.streams.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Start every test without any CRM_* variable from the surrounding environment."""
    for name in list(os.environ):
        if name.startswith("CRM_"):
            monkeypatch.delenv(name)


def test_defaults_without_environment():
    settings = Settings()
    assert settings.kafka_url == "kafka://127.0.0.1:9092"
    assert settings.bootstrap_servers == ["127.0.0.1:9092"]
    assert settings.currency == "USD"
    assert settings.fx_rates == {}
    assert settings.tier_policy() == TierPolicy()


def test_reads_crm_variables(monkeypatch):
    env = {
        "CRM_KAFKA_URL": "kafka://broker:19092",
        "CRM_REDIS_URL": "rediss://user:secret@cache:6380/2",
        "CRM_APP_ID": "crm-test",
        "CRM_PARTITIONS": "16",
        "CRM_REPLICATION_FACTOR": "3",
        "CRM_SESSION_TIMEOUT": "6.5",
        "CRM_BATCH_SIZE": "50",
        "CRM_BATCH_WAIT": "0.2",
        "CRM_DEDUPE_WINDOW": "3600",
        "CRM_CURRENCY": "EUR",
        "CRM_WEB_ENABLED": "true",
        "CRM_WEB_PORT": "8080",
        "CRM_LOG_LEVEL": "debug",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka_url == "kafka://broker:19092"
    assert settings.redis_url == "rediss://user:secret@cache:6380/2"
    assert settings.app_id == "crm-test"
    assert settings.partitions == 16
    assert settings.replication_factor == 3
    assert settings.session_timeout == 6.5
    assert settings.batch_size == 50
    assert settings.batch_wait == 0.2
    assert settings.dedupe_window == 3600.0
    assert settings.currency == "EUR"
    assert settings.web_enabled is True
    assert settings.web_port == 8080
    assert settings.log_level == "debug"


def test_variables_without_the_prefix_are_not_read(monkeypatch):
    monkeypatch.setenv("APP_ID", "not-ours")
    monkeypatch.setenv("KAFKA_URL", "kafka://elsewhere:1")
    settings = Settings()
    assert settings.app_id == "crmstream"
    assert settings.kafka_url == "kafka://127.0.0.1:9092"


def test_unknown_crm_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("CRM_NOT_A_SETTING", "1")
    assert Settings().app_id == "crmstream"


def test_fx_rates_are_read_as_json(monkeypatch):
    monkeypatch.setenv("CRM_FX_RATES", '{"EUR": 1.08, "GBP": 1.27}')
    settings = Settings()
    assert settings.fx_rates == {"EUR": 1.08, "GBP": 1.27}
    currencies = settings.currencies()
    assert currencies.base == "USD"
    assert currencies.to_base(100.0, "EUR") == pytest.approx(108.0)
    assert currencies.to_base(100.0, "USD") == 100.0
    with pytest.raises(UnsupportedCurrency):
        currencies.to_base(1.0, "JPY")


@pytest.mark.parametrize("value", ["not json", '["EUR", 1.08]', '{"EUR": "lots"}'])
def test_fx_rates_that_are_not_a_json_object_of_numbers_are_rejected(monkeypatch, value):
    monkeypatch.setenv("CRM_FX_RATES", value)
    with pytest.raises(ValueError):
        Settings()


@pytest.mark.parametrize(
    "url", ["127.0.0.1:9092", "redis://127.0.0.1:6379", "http://broker:9092", "kafka:/b:1"]
)
def test_rejects_a_kafka_url_without_the_kafka_scheme(monkeypatch, url):
    monkeypatch.setenv("CRM_KAFKA_URL", url)
    with pytest.raises(ValidationError, match="kafka_url"):
        Settings()


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        ("kafka://a:9092", ["a:9092"]),
        ("kafka://a:9092;b:9093", ["a:9092", "b:9093"]),
        ("kafka://a:9092; b:9093 ;c:9094", ["a:9092", "b:9093", "c:9094"]),
        ("kafka://a:9092;", ["a:9092"]),
        ("kafka://a:9092;;b:9093", ["a:9092", "b:9093"]),
    ],
)
def test_bootstrap_servers_split_on_semicolons(monkeypatch, url, servers):
    monkeypatch.setenv("CRM_KAFKA_URL", url)
    assert Settings().bootstrap_servers == servers


def test_bootstrap_servers_drop_whitespace_only_entries(monkeypatch):
    # Entries are stripped, so an entry of only spaces is empty and must not become a
    # broker address "" (e.g. a trailing "; " pasted into the variable).
    monkeypatch.setenv("CRM_KAFKA_URL", "kafka://a:9092; b:9093; ")
    assert Settings().bootstrap_servers == ["a:9092", "b:9093"]


@pytest.mark.parametrize("value", ["1", "1.0", "1.5", "-0.1"])
def test_rejects_tier_hysteresis_outside_zero_to_one(monkeypatch, value):
    monkeypatch.setenv("CRM_TIER_HYSTERESIS", value)
    with pytest.raises(ValidationError, match="tier_hysteresis"):
        Settings()


@pytest.mark.parametrize("value", ["0", "0.5", "0.99"])
def test_accepts_tier_hysteresis_in_zero_to_one(monkeypatch, value):
    monkeypatch.setenv("CRM_TIER_HYSTERESIS", value)
    assert Settings().tier_policy().hysteresis == float(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRM_PARTITIONS", "0"),
        ("CRM_PARTITIONS", "1025"),
        ("CRM_BATCH_SIZE", "0"),
        ("CRM_BATCH_WAIT", "0"),
        ("CRM_TIER_SILVER", "0"),
        ("CRM_CURRENCY", "usd"),
        ("CRM_WEB_PORT", "70000"),
        ("CRM_LOG_LEVEL", "verbose"),
    ],
)
def test_rejects_out_of_range_values(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.app_id = "changed"


def test_tier_policy_uses_the_tier_variables(monkeypatch):
    monkeypatch.setenv("CRM_TIER_SILVER", "50")
    monkeypatch.setenv("CRM_TIER_GOLD", "250")
    monkeypatch.setenv("CRM_TIER_PLATINUM", "1000")
    monkeypatch.setenv("CRM_TIER_HYSTERESIS", "0.2")
    policy = Settings().tier_policy()
    assert policy == TierPolicy(silver=50.0, gold=250.0, platinum=1000.0, hysteresis=0.2)
    assert policy.decide("bronze", 250.0) == "gold"


@pytest.mark.parametrize(
    ("silver", "gold", "platinum"),
    [
        ("600", "500", "2000"),  # silver above gold
        ("100", "3000", "2000"),  # gold above platinum
        ("100", "100", "2000"),  # equal thresholds
        ("100", "500", "500"),
    ],
)
def test_tier_policy_rejects_thresholds_out_of_order(monkeypatch, silver, gold, platinum):
    monkeypatch.setenv("CRM_TIER_SILVER", silver)
    monkeypatch.setenv("CRM_TIER_GOLD", gold)
    monkeypatch.setenv("CRM_TIER_PLATINUM", platinum)
    settings = Settings()  # each threshold is valid on its own
    with pytest.raises(ValueError, match="silver < gold < platinum"):
        settings.tier_policy()


def test_the_partition_fetch_size_reaches_the_kafka_consumer():
    from crmstream.streams.app import create_app

    app, _ = create_app(Settings(fetch_partition_bytes=65536), agents=None)
    assert app.conf.consumer_max_fetch_size == 65536
    app, _ = create_app(Settings(), agents=None)
    assert app.conf.consumer_max_fetch_size == 128 * 1024
