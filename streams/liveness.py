"""A worker's liveness, judged from outside its process: the sidecar behind ``/health``.

A worker cannot report its own stall: one frozen as a whole (SIGSTOP, a stuck event loop)
answers nothing at all. So with ``CRM_WEB_ENABLED=true`` the worker starts this small
process, which listens on ``CRM_WEB_PORT`` in its place:

* ``GET /health`` is answered here: 200 while the worker makes progress, 503 once its
  input partitions have had unprocessed events (their end offsets on the broker are past
  the offsets the worker last processed) and its processed offsets have not moved for
  ``CRM_LIVENESS_TIMEOUT`` seconds; an orchestrator can then restart it;
* every other path (``/metrics``) is passed to the worker's own web server on an internal
  port (a frozen worker's metrics time out: they cannot be had).

The worker tells the sidecar what it has processed through a small JSON file (its
assigned input partitions and the next offset to process on each), rewritten at most
twice a second. The sidecar exits with the worker (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """``preexec_fn`` of the sidecar: Linux sends it SIGTERM when the worker dies, even by
    SIGKILL, so no sidecar outlives its worker."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def internal_port() -> int:
    """A free TCP port on 127.0.0.1 for the worker's own web server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Judge:
    """Decides liveness from successive observations of lag and processed offsets.

    Examples
    --------
    >>> judge = Judge(timeout=10.0)
    >>> judge.observe({("t", 0): 5}, lag=0, now=0.0)      # nothing waiting
    (True, 'ok')
    >>> judge.observe({("t", 0): 5}, lag=3, now=1.0)      # events arrive
    (True, 'ok')
    >>> judge.observe({("t", 0): 8}, lag=2, now=5.0)      # it progresses
    (True, 'ok')
    >>> judge.observe({("t", 0): 8}, lag=2, now=16.0)     # stuck for 11 s with lag
    (False, '2 events waiting and no progress for 11s (CRM_LIVENESS_TIMEOUT=10s)')
    >>> judge.observe({("t", 0): 10}, lag=0, now=17.0)    # caught up
    (True, 'ok')
    """

    timeout: float
    stalled_since: float | None = None
    positions: dict[Any, int] | None = None

    def observe(self, positions: dict[Any, int], lag: int, now: float) -> tuple[bool, str]:
        moved = positions != self.positions
        self.positions = dict(positions)
        if lag <= 0:
            self.stalled_since = None
        elif moved or self.stalled_since is None:
            self.stalled_since = now
        if self.stalled_since is None or now - self.stalled_since < self.timeout:
            return True, "ok"
        return False, (
            f"{lag} events waiting and no progress for {now - self.stalled_since:.0f}s "
            f"(CRM_LIVENESS_TIMEOUT={self.timeout:.0f}s)"
        )


def write_state(path: Path, assigned: list[tuple[str, int]], positions: dict) -> None:
    """Write the worker's progress for the sidecar (atomically: readers never see half)."""
    data = {
        "assigned": [list(tp) for tp in assigned],
        "positions": [[t, p, o] for (t, p), o in positions.items()],
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


class Sidecar:
    """Watches the worker's progress against the broker and serves ``/health``."""

    def __init__(
        self,
        state: Path,
        bootstrap: list[str],
        group: str,
        timeout: float,
        upstream: int,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.state = state
        self.bootstrap = bootstrap
        self.security = security or {}
        self.group = group
        self.upstream = upstream
        self.judge = Judge(timeout)
        self.verdict: tuple[bool, str] = (True, "starting")
        self._consumer: Any = None

    def check(self) -> None:
        """One observation: the worker's offsets against the partitions' end offsets."""
        try:
            data = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return  # the worker has not written it yet
        from kafka import TopicPartition

        assigned = [TopicPartition(t, p) for t, p in data["assigned"]]
        positions = {(t, p): o for t, p, o in data["positions"]}
        if not assigned:
            self.verdict = self.judge.observe(positions, 0, time.monotonic())
            return
        consumer = self._client()
        ends = consumer.end_offsets(assigned)
        lag = 0
        for tp in assigned:
            position = positions.get((tp.topic, tp.partition))
            if position is None:
                position = consumer.committed(tp) or 0
            lag += max(0, ends.get(tp, 0) - position)
        self.verdict = self.judge.observe(positions, lag, time.monotonic())

    def _client(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            # the group only to read its committed offsets: this consumer never joins it
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,
                **self.security,
            )
        return self._consumer

    def watch(self) -> None:
        while True:
            try:
                self.check()
            except Exception as exc:  # the broker is away: keep the last verdict
                log.warning("liveness: check failed (%s)", exc)
                self._consumer = None
            time.sleep(CHECK_SECONDS)

    def serve(self, host: str, port: int) -> None:
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    alive, detail = sidecar.verdict
                    body = json.dumps({"status": "ok" if alive else "stalled", "detail": detail})
                    self._answer(200 if alive else 503, "application/json", body.encode())
                    return
                self._proxy()

            def _proxy(self) -> None:
                url = f"http://127.0.0.1:{sidecar.upstream}{self.path}"
                request = urllib.request.Request(url)
                if self.headers.get("Authorization"):
                    request.add_header("Authorization", self.headers["Authorization"])
                try:
                    with urllib.request.urlopen(request, timeout=3) as response:
                        self._answer(
                            response.status,
                            response.headers.get("Content-Type", "text/plain"),
                            response.read(),
                        )
                except urllib.error.HTTPError as error:
                    self._answer(
                        error.code, error.headers.get("Content-Type", "text/plain"), error.read()
                    )
                except (urllib.error.URLError, TimeoutError, OSError):
                    problem = {
                        "code": "worker_unavailable",
                        "message": "the worker does not answer",
                    }
                    body = json.dumps({"error": problem}).encode()
                    self._answer(503, "application/json", body)

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no access log

        threading.Thread(target=self.watch, name="liveness", daemon=True).start()
        ThreadingHTTPServer((host, port), Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="a worker's /health sidecar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s liveness: %(message)s")
    from crmstream.streams.credentials import kafka_python_options
    from crmstream.streams.settings import Settings

    # TLS/SASL of the worker, given through CRM_KAFKA_* variables (never on the command line)
    security = kafka_python_options(Settings())
    sidecar = Sidecar(
        Path(args.state),
        args.bootstrap.split(","),
        args.group,
        args.timeout,
        args.upstream,
        security,
    )
    sidecar.serve(args.host, args.port)


if __name__ == "__main__":
    main()
