"""The mapping of the transport settings onto each Kafka and Redis client library."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError
from redis.connection import parse_url

from crmstream.streams.app import create_app
from crmstream.streams.cli import configuration_problem
from crmstream.streams.credentials import (
    aiokafka_options,
    faust_credentials,
    kafka_environment,
    kafka_python_options,
    redis_client_url,
    ssl_context,
)
from crmstream.streams.settings import Settings

SASL = {"kafka_sasl_username": "crm", "kafka_sasl_password": "pw"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    client = ca.issue_cert("crmstream")
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return {name: str(path) for name, path in files.items()}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_gives_every_library_the_same_user_mechanism_and_tls(mechanism, pem):
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_ssl_cafile=pem["ca"],
        **SASL,
    )
    python = kafka_python_options(settings)
    aio = aiokafka_options(settings)
    faust = credentials_to_aiokafka_auth(faust_credentials(settings))  # what Faust passes on
    for options in (python, aio, faust):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == "crm"
        assert options["sasl_plain_password"] == "pw"
        context = options["ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.get_ca_certs(), "the configured CA is trusted"


def test_mtls_loads_the_client_certificate_and_faust_gets_ssl_credentials(pem):
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pem["ca"],
        kafka_ssl_certfile=pem["cert"],
        kafka_ssl_keyfile=pem["key"],
    )
    credentials = faust_credentials(settings)
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"
    options = kafka_python_options(settings)
    assert set(options) == {"security_protocol", "ssl_context"}
    bad_key = settings.model_copy(update={"kafka_ssl_keyfile": pem["ca"]})
    with pytest.raises(ssl.SSLError):  # a certificate is not a key: refused at once
        ssl_context(bad_key)


def test_hostname_check_can_be_turned_off_but_verification_stays():
    context = ssl_context(Settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False))
    assert context is not None
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_plaintext_passes_nothing_and_faust_gets_no_credentials():
    settings = Settings()
    assert kafka_python_options(settings) == {}
    assert aiokafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_over_plaintext_is_refused_unless_allowed():
    with pytest.raises(ValidationError) as refused:
        Settings(kafka_security_protocol="SASL_PLAINTEXT", **SASL)
    reason = configuration_problem(refused.value, None)
    assert reason is not None
    assert "CRM_KAFKA_ALLOW_SASL_PLAINTEXT" in reason and "unencrypted" in reason
    allowed = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_allow_sasl_plaintext=True, **SASL
    )
    options = kafka_python_options(allowed)
    assert options["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in options
    credentials = faust_credentials(allowed)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "CRM_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "crm"}, "does not use SASL"),
        ({"kafka_ssl_cafile": "ca"}, "has no TLS"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "c"}, "go together"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such.pem"}, "no readable"),
        ({"redis_ssl_cafile": "ca"}, "not rediss://"),
        ({"redis_url": "rediss://r:6380/0", "redis_ssl_keyfile": "k"}, "go together"),
    ],
)
def test_inconsistent_transport_settings_are_refused_by_name(fields, named):
    with pytest.raises(ValidationError) as refused:
        Settings(**fields)
    assert named in configuration_problem(refused.value, None)


def test_redis_url_gets_the_acl_user_and_verified_tls(pem):
    settings = Settings(
        redis_url="rediss://cache:6380/2",
        redis_username="crm",
        redis_password="p@ss:word/&",
        redis_ssl_cafile=pem["ca"],
        redis_ssl_certfile=pem["cert"],
        redis_ssl_keyfile=pem["key"],
    )
    options = parse_url(redis_client_url(settings))  # what redis-py makes of it
    assert options["username"] == "crm" and options["password"] == "p@ss:word/&"
    assert options["db"] == 2 and options["host"] == "cache" and options["port"] == 6380
    assert options["ssl_cert_reqs"] == "required"
    assert options["ssl_ca_certs"] == pem["ca"]
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == (pem["cert"], pem["key"])


def test_redis_password_setting_replaces_only_the_password():
    settings = Settings(redis_url="redis://crm:old@cache:6379/0", redis_password="new")
    assert redis_client_url(settings) == "redis://crm:new@cache:6379/0"


def test_secrets_are_read_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "crm_kafka_sasl_password").write_text("from-a-file\n")
    (tmp_path / "crm_redis_password").write_text("redis-secret")
    monkeypatch.setenv("CRM_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CRM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CRM_KAFKA_SASL_USERNAME", "crm")
    settings = Settings()
    assert settings.kafka_sasl_password.get_secret_value() == "from-a-file"
    assert settings.redis_password.get_secret_value() == "redis-secret"
    monkeypatch.setenv("CRM_REDIS_PASSWORD", "the-variable-wins")
    assert Settings().redis_password.get_secret_value() == "the-variable-wins"


def test_the_faust_app_is_built_with_the_broker_credentials(pem):
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=pem["ca"], **SASL)
    app, _ = create_app(settings, agents=None)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert credentials.username == "crm" and credentials.ssl_context is not None


def test_the_health_sidecar_gets_the_same_kafka_settings(monkeypatch, pem):
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pem["ca"],
        kafka_ssl_certfile=pem["cert"],
        kafka_ssl_keyfile=pem["key"],
        kafka_ssl_check_hostname=False,
    )
    for name, value in kafka_environment(settings).items():
        monkeypatch.setenv(name, value)
    again = Settings()
    fields = [name for name in Settings.model_fields if name.startswith("kafka_")]
    assert {f: getattr(again, f) for f in fields} == {f: getattr(settings, f) for f in fields}
