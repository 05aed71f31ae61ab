"""The embedded stack and the demo start, work, and leave nothing behind."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys

import httpx
import psutil
import pytest
import redis
from kafka import KafkaAdminClient

from crmstream.streams.dev.embedded import EmbeddedStack, ServerExited, free_port

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "crmstream.streams.cli"]


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stack_context_manager_serves_and_frees_ports():
    with EmbeddedStack() as stack:
        pids = stack.pids
        assert len(pids) == 2
        assert redis.Redis.from_url(stack.redis_url).ping()
        admin = KafkaAdminClient(bootstrap_servers=[stack.kafka_url.removeprefix("kafka://")])
        assert admin.describe_cluster()["brokers"]
        admin.close()
        ports = stack.kafka_port, stack.redis_port
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids
    )
    assert not any(accepts(port) for port in ports)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stack_command_prints_urls_and_stops_cleanly_on_signal(signum, tmp_path):
    env_file = tmp_path / "crm.env"
    process = subprocess.Popen(
        [*CLI, "stack", "--kafka-port", "0", "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        kafka_line = process.stdout.readline().strip()
        redis_line = process.stdout.readline().strip()
        kafka = re.fullmatch(r"export CRM_KAFKA_URL=kafka://127\.0\.0\.1:(\d+)", kafka_line)
        store = re.fullmatch(r"export CRM_REDIS_URL=redis://127\.0\.0\.1:(\d+)/0", redis_line)
        assert kafka and store, (kafka_line, redis_line)
        ports = int(kafka[1]), int(store[1])
        assert all(accepts(port) for port in ports)
        # The lines are what a shell evaluates, and the file what dotenv readers load.
        shell = subprocess.run(
            [
                "bash",
                "-c",
                f'eval "{kafka_line}; {redis_line}"; echo $CRM_KAFKA_URL $CRM_REDIS_URL',
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        urls = [line.removeprefix("export ").split("=", 1)[1] for line in (kafka_line, redis_line)]
        assert shell.stdout.split() == urls
        assert env_file.read_text() == "".join(
            line.removeprefix("export ") + "\n" for line in (kafka_line, redis_line)
        )
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) == 2
        process.send_signal(signum)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert not any(child.is_running() and child.status() != "zombie" for child in children)
    assert not any(accepts(port) for port in ports)


def test_demo_runs_for_a_while_then_summarises_and_cleans_up():
    process = subprocess.Popen(
        [*CLI, "demo", "--seconds", "14", "--rate", "300", "--customers", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: dict[int, psutil.Process] = {}
    lines = []
    dashboard = None
    dashboard_answered = False
    for line in process.stdout:
        lines.append(line.rstrip())
        for child in psutil.Process(process.pid).children(recursive=True):
            children[child.pid] = child
        found = re.match(r"demo: dashboard (http://\S+) \(.* the token (\S+);", line)
        dashboard = dashboard or (found and found.groups())
        if dashboard and not dashboard_answered and "checkpointed" in line:
            url, token = dashboard
            with contextlib.suppress(httpx.HTTPError):
                stats = httpx.get(
                    url + "api/stats", headers={"Authorization": f"Bearer {token}"}, timeout=5
                )
                dashboard_answered = stats.status_code == 200 and "customers" in stats.json()
    assert process.wait(60) == 0, "\n".join(lines[-20:])
    assert len(children) >= 4, "expected a broker, a store, a worker and a dashboard"
    assert dashboard_answered, "the demo's dashboard did not answer with its token"
    final = re.fullmatch(
        r"demo: (\d+) events, (\d+) customers, (\d+) tier changes, (\d+) alerts, "
        r"(\d+) dead-lettered",
        lines[-1],
    )
    assert final, lines[-1]
    events, customers, tier_changes, alerts, deadlettered = map(int, final.groups())
    assert events > 1000 and customers > 100, lines[-1]
    assert tier_changes > 0 and alerts > 0 and deadlettered > 0, lines[-1]
    assert not any(c.is_running() and c.status() != "zombie" for c in children.values())


def test_stack_takes_the_standard_port_only_when_it_is_free():
    from crmstream.streams.cli import standard_port

    free = free_port()
    assert standard_port(free) == free
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert standard_port(busy.getsockname()[1]) == 0


def test_a_port_taken_before_the_server_binds_it_is_chosen_again():
    stack = EmbeddedStack()
    taken = stack.redis_port
    with socket.socket() as holder:  # another process got the chosen port first
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with stack:
            assert stack.redis_port != taken
            assert redis.Redis.from_url(stack.redis_url).ping()
        # A port the caller asked for is not changed: the error says which server failed.
        with pytest.raises(ServerExited, match="store"):
            EmbeddedStack(redis_port=taken).start()
