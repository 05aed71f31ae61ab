"""The ``crmstream`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from kafka.errors import KafkaError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from crmstream.streams.settings import Settings


def _stack(args: argparse.Namespace) -> int:
    from crmstream.streams.embedded import EmbeddedStack

    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with EmbeddedStack(kafka_port=args.kafka_port, redis_port=args.redis_port) as stack:
        for name, value in stack.env().items():
            print(f"{name}={value}", flush=True)
        stopped.wait()
    return 0


def _worker(args: argparse.Namespace) -> int:
    import faust

    from crmstream.streams.app import create_app

    settings = Settings()
    app, _ = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0


def _publish(args: argparse.Namespace) -> int:
    from crmstream.streams.publisher import Publisher

    settings = Settings()
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    with source, Publisher(settings.bootstrap_servers) as publisher:
        report = publisher.send_lines(args.topic, source)
        publisher.flush()
    for line, error in report.errors:
        print(f"{args.file}:{line}: {error}", file=sys.stderr)
    print(f"published {report.sent} events to {args.topic} ({len(report.errors)} refused)")
    return 1 if report.errors else 0


def _profile(args: argparse.Namespace) -> int:
    import msgspec

    from crmstream.streams.profiles import ProfileStore

    settings = Settings()

    async def fetch() -> dict[str, object] | None:
        store = ProfileStore(settings.redis_url)
        try:
            profile = await store.get(args.customer_id)
        finally:
            await store.close()
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


def _demo(args: argparse.Namespace) -> int:
    from crmstream.streams.demo import run_demo

    return run_demo(seconds=args.seconds, rate=args.rate, customers=args.customers)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``crmstream`` command."""
    parser = argparse.ArgumentParser(
        prog="crmstream",
        description="Real-time customer intelligence: Kafka events to live profiles and alerts.",
        epilog="Configuration comes from CRM_* environment variables (see the README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="run the embedded broker and Redis in the foreground")
    stack.add_argument("--kafka-port", type=int, default=0, help="broker port (default: free)")
    stack.add_argument("--redis-port", type=int, default=0, help="Redis port (default: free)")
    stack.set_defaults(run=_stack)

    worker = commands.add_parser("worker", help="run a Faust worker configured by CRM_* variables")
    worker.set_defaults(run=_worker)

    publish = commands.add_parser("publish", help="publish JSON lines to a topic")
    publish.add_argument("topic", help="e.g. crm.purchases")
    publish.add_argument("file", help="file of JSON lines, or - for standard input")
    publish.set_defaults(run=_publish)

    profile = commands.add_parser("profile", help="print a customer's profile as JSON")
    profile.add_argument("customer_id")
    profile.set_defaults(run=_profile)

    demo = commands.add_parser("demo", help="embedded stack, a worker, traffic and a live summary")
    demo.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: Ctrl-C)")
    demo.add_argument("--rate", type=float, default=500, help="events per second to generate")
    demo.add_argument("--customers", type=int, default=2000, help="synthetic customers")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crmstream`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        print(f"crmstream: invalid configuration (CRM_* variables):\n{exc}", file=sys.stderr)
        return 2
    except RedisConnectionError as exc:
        print(f"crmstream: cannot reach Redis (CRM_REDIS_URL): {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"crmstream: cannot reach Kafka (CRM_KAFKA_URL): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
