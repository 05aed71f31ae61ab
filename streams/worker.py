"""The worker process: the Faust worker around ``create_app(settings)``, and what a
process needs besides the app.

* **Bounded logs.** When the broker goes away, aiokafka retries about ten times a second
  and logs every failure (measured: ~80 lines a second). :class:`RepeatFilter` lets each
  distinct warning or error of ``aiokafka``, ``faust``, ``mode`` and ``kafka`` through
  once per :data:`LOG_REPEAT_INTERVAL` seconds and says how many it held back.
* **Health.** :class:`Heartbeat` asks the broker and Redis a cheap question every
  :data:`~crmstream.streams.health.HEARTBEAT_INTERVAL` seconds and writes the worker's
  status to Redis (see :mod:`crmstream.streams.health`), for ``crmstream health``.
* **A bounded stop.** A Faust worker whose broker is gone waits a minute for its consumer
  thread before it exits. On SIGTERM or Ctrl-C, :class:`ShutdownWatchdog` gives the
  graceful stop ``CRM_SHUTDOWN_TIMEOUT`` seconds, then logs what it was still waiting
  for and ends the process with :data:`EXIT_SHUTDOWN_TIMEOUT`. Signals are handled in
  the signal handler itself, not on the event loop, so a busy loop cannot delay them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import faust
import mode
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from crmstream.streams.credentials import (
    kafka_environment,
    kafka_python_options,
    redis_client_url,
)
from crmstream.streams.health import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL,
    PROBE_TIMEOUT,
    UNHEALTHY,
    WORKERS_KEY,
    Status,
    Unreachable,
    WorkerHeartbeat,
    check_broker,
    judge,
    redis_reason,
    worker_key,
)
from crmstream.streams.redis_client import connect
from crmstream.streams.settings import Settings

log = logging.getLogger(__name__)

#: Exit code of a worker that did not stop within ``CRM_SHUTDOWN_TIMEOUT``.
EXIT_SHUTDOWN_TIMEOUT = 3
#: A repeated warning or error is logged at most once per this many seconds.
LOG_REPEAT_INTERVAL = 30.0
#: Loggers whose repeated warnings and errors are held back.
RATE_LIMITED = ("aiokafka", "faust", "mode", "kafka")
#: The cyclic garbage collector's thresholds once the worker has started. With Python's
#: defaults (700, 10, 10) collections cost the worker 15–20% of its CPU per event: every
#: event allocates a few hundred short-lived objects, and each older-generation collection
#: walks the River models' many small dicts. Reference counting frees almost everything
#: anyway; cycles wait a little longer.
GC_THRESHOLDS = (50_000, 50, 100)


class RepeatFilter(logging.Filter):
    """Let each distinct warning or error through once per ``interval`` seconds.

    Records are the same when their logger, level and formatted message are. The first
    one passes; the same one again within ``interval`` seconds is dropped and counted;
    the next one that passes says how many were dropped. Records below WARNING, and of
    loggers outside ``prefixes``, always pass. Install it on handlers, so that it sees
    the records of child loggers too.

    >>> clock = iter([0.0, 1.0, 2.0, 31.0]).__next__
    >>> repeats = RepeatFilter(interval=30.0, clock=clock)
    >>> def record(message):
    ...     return logging.LogRecord("aiokafka", logging.ERROR, "", 0, message, None, None)
    >>> [repeats.filter(record("broker down")) for _ in range(3)]
    [True, False, False]
    >>> last = record("broker down")
    >>> repeats.filter(last), last.getMessage()
    (True, 'broker down [2 more like this in the last 31s]')
    """

    def __init__(
        self,
        interval: float = LOG_REPEAT_INTERVAL,
        prefixes: tuple[str, ...] = RATE_LIMITED,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.prefixes = prefixes
        self.clock = clock
        self.max_keys = max_keys
        self.suppressed = 0
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [passed at, held]
        self._lock = threading.Lock()  # aiokafka also logs from Faust's consumer thread

    def _limited(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not self._limited(record.name):
            return True
        key = (record.name, record.levelno, record.getMessage())
        with self._lock:
            now = self.clock()
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                self.suppressed += 1
                return False
            if len(self._seen) >= self.max_keys:
                self._forget_older_than(now - self.interval)
            self._seen[key] = [now, 0]
        if seen is not None and seen[1]:
            record.msg = f"{key[2]} [{seen[1]:.0f} more like this in the last {now - seen[0]:.0f}s]"
            record.args = None
        return True

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [key for key, (at, _) in self._seen.items() if at < cutoff]:
            del self._seen[key]
        while len(self._seen) >= self.max_keys:  # all recent: forget the oldest
            del self._seen[next(iter(self._seen))]


class ShutdownWatchdog:
    """Ends the process if a stop takes longer than ``timeout`` seconds.

    :meth:`arm` starts the countdown (the first call only); if the process is still
    there when it ends, the watchdog logs ``describe()`` (what the stop is waiting for)
    and calls ``exit(EXIT_SHUTDOWN_TIMEOUT)``: ``os._exit`` by default, because a hung
    thread would keep a normal exit waiting forever.
    """

    def __init__(
        self,
        timeout: float,
        describe: Callable[[], str],
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.timeout = timeout
        self.describe = describe
        self.exit = exit
        self._armed = threading.Event()
        self._disarmed = threading.Event()
        self.thread: threading.Thread | None = None

    def arm(self, why: str) -> None:
        if self._armed.is_set():
            return
        self._armed.set()
        self.thread = threading.Thread(
            target=self._countdown, args=(why,), name="shutdown-watchdog", daemon=True
        )
        self.thread.start()

    def disarm(self) -> None:
        self._disarmed.set()

    def _countdown(self, why: str) -> None:
        if self._disarmed.wait(self.timeout):
            return
        try:
            waiting = self.describe()
        except Exception as exc:  # a report, never a reason to keep the process alive
            waiting = f"unknown ({exc!r})"
        log.critical(
            "still running %.0fs after %s (CRM_SHUTDOWN_TIMEOUT); exiting with code %d. "
            "Waiting for: %s",
            self.timeout,
            why,
            EXIT_SHUTDOWN_TIMEOUT,
            waiting,
        )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        self.exit(EXIT_SHUTDOWN_TIMEOUT)


class Heartbeat(mode.Service):
    """Judges this worker's health and writes it to Redis every few seconds.

    The broker is judged by a metadata request of its own (:func:`check_broker`, in a
    thread), Redis by PING on this service's own client. The heartbeat hash expires by
    itself if the process dies; a clean stop deletes it.
    """

    def __init__(
        self, settings: Settings, *, interval: float = HEARTBEAT_INTERVAL, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._security = kafka_python_options(settings)
        self.interval = interval
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.ready = False
        self.stopping = False
        self.broker_problem = ""
        self.redis_problem = ""
        self.status: Status = "starting"
        self.since = time.time()
        self._client: aioredis.Redis | None = None
        self._wake = asyncio.Event()
        self._forgotten = False

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client of the heartbeat (created on first use)."""
        if self._client is None:
            self._client = connect(
                redis_client_url(self.settings),
                socket_timeout=PROBE_TIMEOUT,
                socket_connect_timeout=PROBE_TIMEOUT,
                decode_responses=True,
            )
        return self._client

    def beat_soon(self) -> None:
        """Write the heartbeat now rather than at the next interval (loop thread only)."""
        self._wake.set()

    def stop_soon(self) -> None:
        """Say ``stopping`` at once, without waiting for a probe (loop thread only)."""
        self.stopping = True
        self._judge()
        self.add_future(self._write_quietly())

    async def _write_quietly(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._write()

    @mode.Service.task
    async def _beating(self) -> None:
        while not self.should_stop:
            started = time.monotonic()
            await self.beat()
            pause = max(0.0, self.interval - (time.monotonic() - started))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def beat(self) -> None:
        """Judge the servers, update the status and write the heartbeat."""
        if not self.stopping:
            try:
                await asyncio.to_thread(
                    check_broker, self.settings.bootstrap_servers, PROBE_TIMEOUT, self._security
                )
                self.broker_problem = ""
            except Unreachable as exc:
                self.broker_problem = str(exc)
        try:
            await self.client.ping()
            self.redis_problem = ""
        except (RedisError, OSError) as exc:
            self.redis_problem = _redis_reason(self.settings.redis_url, exc)
        self._judge()
        if self.redis_problem:
            return  # nowhere to write it: the hash expires and the log says why
        try:
            await self._write()
        except (RedisError, OSError) as exc:
            self.redis_problem = _redis_reason(self.settings.redis_url, exc)
            self._judge()

    def _judge(self) -> None:
        status = judge(
            stopping=self.stopping,
            ready=self.ready,
            redis_problem=bool(self.redis_problem),
            broker_problem=bool(self.broker_problem),
        )
        if status == self.status:
            return
        was, self.status, self.since = self.status, status, time.time()
        level = logging.WARNING if status in UNHEALTHY else logging.INFO
        detail = f": {self.detail}" if self.detail else ""
        log.log(level, "worker status %s (was %s)%s", status, was, detail)

    @property
    def detail(self) -> str:
        """Why the worker is unhealthy (empty when it is not)."""
        if self.status == "redis_unreachable":
            return self.redis_problem
        if self.status == "broker_unreachable":
            return self.broker_problem
        return ""

    def record(self) -> WorkerHeartbeat:
        """What this worker says about itself now."""
        return WorkerHeartbeat(
            worker_id=self.worker_id,
            app_id=self.settings.app_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            status=self.status,
            since=self.since,
            heartbeat=time.time(),
            detail=self.detail,
        )

    async def _write(self) -> None:
        if self._forgotten:
            return  # stopped cleanly: a beat still in flight must not bring the hash back
        key = worker_key(self.worker_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=self.record().to_fields())
            pipe.expire(key, HEARTBEAT_TTL)
            pipe.sadd(WORKERS_KEY, self.worker_id)
            await pipe.execute()

    async def on_stop(self) -> None:
        self._forgotten = True
        if self._client is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(worker_key(self.worker_id))
            await self._client.srem(WORKERS_KEY, self.worker_id)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


def _redis_reason(url: str, exc: BaseException) -> str:
    if isinstance(exc, RedisError):
        return redis_reason(url, exc)
    return f"cannot reach Redis (CRM_REDIS_URL): {exc}"


class Worker(faust.Worker):
    """Faust's worker with bounded logs, a heartbeat and a bounded stop."""

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        self.heartbeat = Heartbeat(settings)
        self.repeats = RepeatFilter()
        self.watchdog = ShutdownWatchdog(settings.shutdown_timeout, self.still_stopping)
        kwargs.setdefault("loglevel", settings.log_level.upper())
        kwargs.setdefault("quiet", True)
        super().__init__(app, self.heartbeat, **kwargs)

    async def on_first_start(self) -> None:
        await super().on_first_start()  # sets up logging
        # Topics must exist with CRM_PARTITIONS partitions before the consumer subscribes,
        # or the broker creates the input topics with its own default count.
        from crmstream.streams.declare import declare_topics

        if not self.settings.checkpoint_secret.get_secret_value():
            log.warning(
                "CRM_CHECKPOINT_SECRET is not set: model checkpoints are authenticated with a "
                "development key; set a secret in production"
            )
        if not self.settings.pii_secret.get_secret_value():
            log.warning(
                "CRM_PII_SECRET is not set: contact details are hashed with a development "
                "key; set a secret in production"
            )
        await asyncio.to_thread(declare_topics, self.settings)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:
            handler.addFilter(self.repeats)

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        # The loop runs a signal callback only when it gets to it; a plain handler runs
        # between two bytecodes of the main thread, so the watchdog starts even when the
        # loop is stuck. Faust's own stop still runs on the loop.
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.remove_signal_handler(signum)
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.watchdog.arm(name)
        stop = self._on_sigterm if signum == signal.SIGTERM else self._on_sigint
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self.heartbeat.stop_soon)
            self.loop.call_soon_threadsafe(stop)

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        tune_gc()
        self.heartbeat.ready = True
        self.heartbeat.beat_soon()

    def on_worker_shutdown(self) -> None:
        # Also reached without a signal (an agent crashed): the stop is bounded as well.
        self.watchdog.arm("the worker began to stop")
        self.heartbeat.stopping = True
        super().on_worker_shutdown()

    def still_stopping(self) -> str:
        """Where the stop is stuck: the innermost service still stopping, the services not
        yet told to stop, and the threads that keep the process alive."""
        stuck: list[str] = []
        waiting: list[str] = []

        def visit(service: mode.Service, path: str) -> None:
            if service.state == "stopping":
                stuck.append(path)
            elif service.state == "running":
                waiting.append(service.shortlabel)
            for child in getattr(service, "_children", ()):
                if isinstance(child, mode.Service):
                    visit(child, f"{path}/{child.shortlabel}")

        visit(self, self.shortlabel)
        # Services stop one after the other, children first, so the deepest one whose stop
        # has begun is the one being waited for (mode marks few services as fully shut down).
        described = max(stuck, key=lambda path: path.count("/"), default="no service")
        if waiting:
            more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
            described += f"; not yet stopped: {', '.join(waiting[:5])}{more}"
        threads = [t.name for t in threading.enumerate() if not t.daemon and t.name != "MainThread"]
        if threads:
            described += f"; threads: {', '.join(threads)}"
        return described


def tune_gc() -> None:
    """Move what start-up allocated out of the collector's sight (``gc.freeze``) and make
    collections rarer (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: Settings) -> int:
    """Run a worker in this process until it stops; return its exit code."""
    from crmstream.streams.app import create_app

    sidecar = None
    if settings.web_enabled:
        # The sidecar answers /health on CRM_WEB_PORT even when this process is frozen and
        # passes the rest to the worker's own web server, on an internal port.
        from crmstream.streams.liveness import end_with_parent, internal_port

        public_port = settings.web_port
        settings = settings.model_copy(update={"web_port": internal_port()})
        progress = Path(tempfile.mkdtemp(prefix="crmstream-progress-")) / "progress.json"
        sidecar = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "crmstream.streams.liveness",
                "--host",
                settings.web_host,
                "--port",
                str(public_port),
                "--upstream",
                str(settings.web_port),
                "--state",
                str(progress),
                "--bootstrap",
                ",".join(settings.bootstrap_servers),
                "--group",
                settings.app_id,
                "--timeout",
                str(settings.liveness_timeout),
            ],
            stdin=subprocess.DEVNULL,
            env={**os.environ, **kafka_environment(settings)},
            preexec_fn=end_with_parent,
        )
    app, runtime = create_app(settings)
    if sidecar is not None:
        runtime.metrics.state_path = progress
    try:
        Worker(app, settings).execute_from_commandline()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        if sidecar is not None:
            sidecar.terminate()
            sidecar.wait(5)
            shutil.rmtree(progress.parent, ignore_errors=True)
    return 0
