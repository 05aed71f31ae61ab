"""A worker's Prometheus metrics and liveness, served on ``CRM_WEB_PORT``.

With ``CRM_WEB_ENABLED=true`` each worker serves, on its Faust web server:

* ``GET /metrics``: the Prometheus text format (``prometheus-client``): input events by
  topic, dead letters by topic and reason, alerts by kind and severity, tier changes,
  batch latency (a histogram), consumer lag per input partition, the age of the last
  model checkpoint, and the partitions' model quality (propensity AUC, anomaly rate, what
  the sentiment and intent models have learned). With ``CRM_API_TOKEN`` set it asks for
  ``Authorization: Bearer <token>``.
* ``GET /health`` (no authentication): 200 while the worker makes progress; 503 once it
  has lag (unprocessed events on its input partitions) but has not finished a batch for
  ``CRM_LIVENESS_TIMEOUT`` seconds, so an orchestrator can restart it. On
  ``CRM_WEB_PORT`` this is answered by the worker's sidecar (:mod:`crmstream.streams.liveness`),
  which also sees a worker frozen as a whole; the worker's own web server, on an internal
  port behind the sidecar, answers it from inside.

Counting costs a few dictionary updates per batch and one per event; everything else is
computed when Prometheus scrapes.
"""

from __future__ import annotations

import hmac
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from crmstream.streams import topics
from crmstream.streams.liveness import write_state
from crmstream.streams.sink import Output


class _AlertFields(msgspec.Struct):
    kind: str
    severity: str


class _TierFields(msgspec.Struct):
    to_tier: str


#: The text format's content type, without its charset parameter.
CONTENT_TYPE = CONTENT_TYPE_LATEST.split("; charset")[0]
_decode_alert = msgspec.json.Decoder(_AlertFields).decode
_decode_tier = msgspec.json.Decoder(_TierFields).decode


def liveness(lag: int, idle: float, timeout: float) -> tuple[bool, str]:
    """Whether a worker with ``lag`` unprocessed events that finished its last batch
    ``idle`` seconds ago is alive.

    Examples
    --------
    >>> liveness(0, 600.0, 60.0)       # nothing to do: idle is fine
    (True, 'ok')
    >>> liveness(40, 5.0, 60.0)
    (True, 'ok')
    >>> liveness(40, 75.0, 60.0)
    (False, '40 events waiting and no batch finished for 75s (CRM_LIVENESS_TIMEOUT=60s)')
    """
    if lag <= 0 or idle < timeout:
        return True, "ok"
    return False, (
        f"{lag} events waiting and no batch finished for {idle:.0f}s "
        f"(CRM_LIVENESS_TIMEOUT={timeout:.0f}s)"
    )


class WorkerMetrics:
    """The counters a worker keeps, and what it computes when scraped."""

    def __init__(self, liveness_timeout: float = 60.0) -> None:
        self.liveness_timeout = liveness_timeout
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "crm_events", "Input events received, by topic", ["topic"], registry=self.registry
        )
        self.deadletters = Counter(
            "crm_deadletters",
            "Input events dead-lettered, by source topic and reason",
            ["topic", "reason"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "crm_alerts",
            "Alerts sent, by kind and severity",
            ["kind", "severity"],
            registry=self.registry,
        )
        self.tier_changes = Counter(
            "crm_tier_changes",
            "Tier changes sent, by new tier",
            ["to_tier"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "crm_batch_seconds",
            "Wall time to process one batch of input events",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_events = Histogram(
            "crm_batch_events",
            "Input events per batch (a batch holds what arrived while the previous one was "
            "processed, up to CRM_BATCH_SIZE)",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        #: Next offset to process per input (topic, partition), after the last batch.
        self.positions: dict[tuple[str, int], int] = {}
        self.last_batch = time.monotonic()
        self.last_checkpoint: float | None = None
        self.app: Any = None
        self.replicas: Any = None
        #: Where the progress is written for the /health sidecar (see streams/liveness.py).
        self.state_path: Path | None = None
        self._progress_dirty = False
        self.registry.register(_Computed(self))

    def batch(
        self,
        messages: Sequence[Any],
        rejected: Sequence[Output],
        outputs: Iterable[Output],
        seconds: float,
    ) -> None:
        """Count one processed batch: its messages, dead letters and outputs."""
        positions = self.positions
        for message in messages:
            positions[(message.topic, message.partition)] = message.offset + 1
        for topic, count in Tally(m.topic for m in messages).items():
            self.events.labels(topic).inc(count)
        for dead in rejected:
            headers = dict(dead.headers)
            source = headers.get("__connect.errors.topic", b"").decode()
            self.deadletters.labels(source, headers.get("crm.error.code", b"").decode()).inc()
        for output in outputs:
            if output.topic == topics.ALERTS and output.value:
                alert = _decode_alert(output.value)
                self.alerts.labels(alert.kind, alert.severity).inc()
            elif output.topic == topics.TIER_CHANGES and output.value:
                self.tier_changes.labels(_decode_tier(output.value).to_tier).inc()
        self.batch_seconds.observe(seconds)
        self.batch_events.observe(len(messages))
        self.last_batch = time.monotonic()
        self._progress_dirty = True

    def write_progress(self, assigned: Iterable[Any] | None = None) -> None:
        """Write the processed offsets for the ``/health`` sidecar, if it runs and they
        changed (called on a timer, and when partitions are assigned)."""
        if self.state_path is None or (assigned is None and not self._progress_dirty):
            return
        if assigned is None:
            try:
                assigned = self.app.consumer.assignment()
            except Exception:  # the consumer is not running
                return
        inputs = sorted((tp.topic, tp.partition) for tp in assigned if tp.topic in topics.INPUTS)
        write_state(self.state_path, inputs, self.positions)
        self._progress_dirty = False

    def checkpointed(self) -> None:
        """Note that the models were checkpointed now."""
        self.last_checkpoint = time.monotonic()

    def lags(self) -> dict[tuple[str, int], int]:
        """Unprocessed events per assigned input partition (from the consumer's highwater
        marks and the last processed offsets)."""
        consumer = getattr(self.app, "consumer", None) if self.app is not None else None
        if consumer is None:
            return {}
        try:
            assigned = consumer.assignment()
        except Exception:  # the consumer is not running
            return {}
        lags = {}
        for tp in assigned:
            if tp.topic not in topics.INPUTS:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            position = self.positions.get((tp.topic, tp.partition))
            if position is None:
                committed = consumer._committed_offset.get(tp)
                position = committed if committed is not None else 0
            lags[(tp.topic, tp.partition)] = max(0, high - position)
        return lags

    def health(self) -> tuple[bool, str]:
        """Liveness now (see :func:`liveness`)."""
        lag = sum(self.lags().values())
        return liveness(lag, time.monotonic() - self.last_batch, self.liveness_timeout)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _Computed(Collector):
    """Gauges computed at scrape time: lag, checkpoint age, model quality."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self.metrics
        lag = GaugeMetricFamily(
            "crm_consumer_lag",
            "Unprocessed events per input partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(metrics.lags().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        age = GaugeMetricFamily(
            "crm_checkpoint_age_seconds", "Seconds since the models were last checkpointed"
        )
        if metrics.last_checkpoint is not None:
            age.add_metric([], time.monotonic() - metrics.last_checkpoint)
        yield age
        yield from _model_quality(metrics.replicas)


def _model_quality(replicas: Any) -> Iterator[GaugeMetricFamily]:
    auc = GaugeMetricFamily(
        "crm_propensity_auc",
        "Prequential AUC of the purchase propensity model (window: period or horizon)",
        labels=["partition", "window"],
    )
    anomaly = GaugeMetricFamily(
        "crm_anomaly_rate", "Share of purchases flagged as unusual", labels=["partition"]
    )
    learned = GaugeMetricFamily(
        "crm_conversation_labels_learned",
        "Labels the conversation models learned (sentiment: ratings; intent: labelled chats)",
        labels=["partition", "model"],
    )
    for partition in getattr(replicas, "partitions", []) if replicas is not None else []:
        models = replicas[partition].models
        quality = models.purchases.propensity.quality()
        for window, name in (("period", "period_auc"), ("horizon", "rolling_auc")):
            value = quality.get(name)
            if isinstance(value, int | float):
                auc.add_metric([str(partition), window], float(value))
        anomaly.add_metric([str(partition)], float(models.purchases.anomaly.rate()))
        conversations = models.conversations
        learned.add_metric([str(partition), "sentiment"], conversations.sentiment.n_learned)
        learned.add_metric([str(partition), "intent"], conversations.intent.n_learned)
    yield auc
    yield anomaly
    yield learned


def expose(app: Any, metrics: WorkerMetrics, token: str) -> None:
    """Add ``/metrics`` and ``/health`` to the Faust app's web server."""
    metrics.app = app

    @app.page("/metrics")
    async def prometheus_metrics(view: Any, request: Any) -> Any:
        if token:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return view.json(
                    {
                        "error": {
                            "code": "unauthenticated",
                            "message": "send Authorization: Bearer <CRM_API_TOKEN>",
                        }
                    },
                    status=401,
                )
        # aiohttp takes the charset apart from the content type (utf-8, its default)
        return view.bytes(metrics.exposition(), content_type=CONTENT_TYPE)

    @app.page("/health")
    async def health(view: Any, request: Any) -> Any:
        alive, detail = metrics.health()
        return view.json(
            {"status": "ok" if alive else "stalled", "detail": detail},
            status=200 if alive else 503,
        )
