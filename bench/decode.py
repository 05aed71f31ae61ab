"""CPU cost of ``crmstream.schemas.decode`` per event, against plain JSON parsing.

For each kind of record (a purchase with 3 items, a chat message of about 25 words, a
feedback with a rating and a short text, and three kinds of rejected input: invalid JSON,
a negative amount, a bad customer id) it builds N distinct encoded events from a seeded
RNG, so no two payloads are byte-identical, then times decoding all of them with
``time.perf_counter_ns``. Each repeat times, in the same run and interleaved so drift on a
shared machine hits them alike:

* ``decode(raw, T)``: size and nesting guards, typed msgspec decoding with every
  constraint, the customer-id check, and for rejected inputs building the
  :class:`~crmstream.schemas.codec.InvalidEvent` (the ``try`` is part of the cost);
* ``msgspec.json.decode(raw)``: untyped parsing to dicts and lists, no validation;
* ``json.loads(raw)``: the standard library, as the familiar reference point.

The garbage collector is off while a loop is timed (as ``timeit`` does). It prints, per
kind, the median and minimum µs per event over R repeats, events per second at the
median, the two references, and ``decode / json.loads`` (ratio of medians; below 1 means
validated decoding is cheaper than the standard library's untyped parsing).

    python bench/decode.py [--events 10000] [--repeats 7] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from crmstream.schemas import ChatMessage, Feedback, InvalidEvent, Purchase, decode

PHRASES = (
    "the order arrived late and the box was damaged but support was quick to help me "
    "with a refund I want to cancel my subscription because the price went up again "
    "thanks for the fast delivery great quality shoes size fits well would buy again "
    "where is my parcel tracking has not changed for days please call me back today"
)
WORDS = PHRASES.split()
SKUS = [f"sku-{n:05d}" for n in range(500)]
CATEGORIES = ["footwear", "apparel", "accessories", "home", "beauty", None]
CURRENCIES = ["USD", "EUR", "GBP"]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Kind:
    """One kind of input: how to build a payload, what it decodes to, what it should do."""

    name: str
    type_: type
    build: Callable[[random.Random], bytes]
    expect: str  # "accepted" or the rejection code


def dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def common(rng: random.Random) -> dict[str, Any]:
    moment = EPOCH + timedelta(
        seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(10**6)
    )
    return {
        "event_id": f"{rng.getrandbits(128):032x}",
        "customer_id": f"c{rng.randrange(1_000_000)}",
        "occurred_at": moment.isoformat().replace("+00:00", "Z"),
    }


def purchase(rng: random.Random, amount_sign: int = 1) -> dict[str, Any]:
    items = [
        {
            "sku": rng.choice(SKUS),
            "quantity": rng.randint(1, 4),
            "unit_price": round(rng.uniform(1, 200), 2),
            "category": rng.choice(CATEGORIES),
        }
        for _ in range(3)
    ]
    amount = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
    return {
        **common(rng),
        "amount": amount_sign * amount,
        "currency": rng.choice(CURRENCIES),
        "cost": round(amount * rng.uniform(0.3, 0.8), 2),
        "order_id": f"o-{rng.randrange(10**9)}",
        "items": items,
    }


def chat(rng: random.Random) -> bytes:
    return dumps(
        {
            **common(rng),
            "conversation_id": f"conv-{rng.randrange(10**6)}",
            "sender": rng.choice(["customer", "customer", "agent", "bot"]),
            "text": " ".join(rng.choices(WORDS, k=rng.randint(20, 30))),
            "channel": rng.choice(["chat", "email"]),
        }
    )


def feedback(rng: random.Random) -> bytes:
    return dumps(
        {
            **common(rng),
            "rating": rng.randint(1, 5),
            "text": " ".join(rng.choices(WORDS, k=rng.randint(3, 10))),
        }
    )


def invalid_json(rng: random.Random) -> bytes:
    raw = dumps(purchase(rng))
    return raw[: rng.randrange(len(raw) // 2, len(raw) - 1)]  # cut short: truncated JSON


def bad_customer_id(rng: random.Random) -> bytes:
    record = purchase(rng)
    record["customer_id"] = f"c{rng.randrange(1_000_000)}:{rng.choice(['x', ' y', '/z'])}"
    return dumps(record)


KINDS = [
    Kind("purchase, 3 items", Purchase, lambda rng: dumps(purchase(rng)), "accepted"),
    Kind("chat, ~25 words", ChatMessage, chat, "accepted"),
    Kind("feedback, rating+text", Feedback, feedback, "accepted"),
    Kind("rejected: invalid JSON", Purchase, invalid_json, "invalid_json"),
    Kind(
        "rejected: negative amount",
        Purchase,
        lambda rng: dumps(purchase(rng, amount_sign=-1)),
        "schema_violation",
    ),
    Kind("rejected: bad customer id", Purchase, bad_customer_id, "bad_customer_id"),
]


def outcome(raw: bytes, type_: type) -> str:
    try:
        decode(raw, type_)
    except InvalidEvent as error:
        return error.code
    return "accepted"


def build(kind: Kind, events: int, seed: int) -> list[bytes]:
    """``events`` distinct payloads of ``kind``, each checked to give the expected outcome."""
    rng = random.Random(f"{seed}:{kind.name}")
    payloads = list(dict.fromkeys(kind.build(rng) for _ in range(events)))
    wrong = [raw for raw in payloads if outcome(raw, kind.type_) != kind.expect]
    if wrong:
        got = outcome(wrong[0], kind.type_)
        raise SystemExit(f"{kind.name}: expected {kind.expect}, got {got} for {wrong[0]!r}")
    return payloads


def time_codec(payloads: list[bytes], type_: type) -> int:
    start = time.perf_counter_ns()
    for raw in payloads:
        try:  # noqa: SIM105 - contextlib.suppress would add its own cost to every event
            decode(raw, type_)
        except InvalidEvent:
            pass
    return time.perf_counter_ns() - start


def time_parser(payloads: list[bytes], parse: Callable[[bytes], Any]) -> int:
    # Both parsers raise a ValueError subclass on malformed input.
    start = time.perf_counter_ns()
    for raw in payloads:
        try:  # noqa: SIM105 - as above
            parse(raw)
        except ValueError:
            pass
    return time.perf_counter_ns() - start


METHODS: dict[str, Callable[[list[bytes], type], int]] = {
    "decode": time_codec,
    "msgspec": lambda payloads, _: time_parser(payloads, msgspec.json.decode),
    "json.loads": lambda payloads, _: time_parser(payloads, json.loads),
}


def measure(corpus: dict[str, list[bytes]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """µs per event for every kind and method, one value per repeat."""
    types = {kind.name: kind.type_ for kind in KINDS}
    results = {name: {method: [] for method in METHODS} for name in corpus}
    for name, payloads in corpus.items():  # warm up: decoder caches, allocator
        for method in METHODS.values():
            method(payloads[:1000], types[name])
    for _ in range(repeats):
        for name, payloads in corpus.items():
            for method, run in METHODS.items():
                gc.collect()
                gc.disable()
                try:
                    elapsed_ns = run(payloads, types[name])
                finally:
                    gc.enable()
                results[name][method].append(elapsed_ns / len(payloads) / 1000)
    return results


def report(corpus: dict[str, list[bytes]], results: dict[str, dict[str, list[float]]]) -> None:
    header = (
        f"{'kind':26s} {'events':>6s} {'bytes':>6s}"
        f" │ {'decode µs/event':>15s} {'min':>6s} {'events/s':>10s}"
        f" │ {'msgspec µs':>10s} {'json.loads µs':>13s} │ {'decode/json.loads':>17s}"
    )
    print(header)
    print("─" * len(header))
    for name, payloads in corpus.items():
        size = statistics.mean(len(raw) for raw in payloads)
        codec = statistics.median(results[name]["decode"])
        fastest = min(results[name]["decode"])
        untyped = statistics.median(results[name]["msgspec"])
        stdlib = statistics.median(results[name]["json.loads"])
        print(
            f"{name:26s} {len(payloads):6d} {size:6.0f}"
            f" │ {codec:15.2f} {fastest:6.2f} {1e6 / codec:10,.0f}"
            f" │ {untyped:10.2f} {stdlib:13.2f} │ {codec / stdlib:16.2f}x"
        )
    print(
        "\nmsgspec µs: msgspec.json.decode(raw), untyped; json.loads µs: the standard library;"
        "\nboth medians on the same bytes. decode/json.loads: ratio of the medians."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="distinct payloads per kind")
    parser.add_argument("--repeats", type=int, default=7, help="timed passes over each kind")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.events < 1 or args.repeats < 1:
        parser.error("--events and --repeats must be at least 1")
    corpus = {kind.name: build(kind, args.events, args.seed) for kind in KINDS}
    results = measure(corpus, args.repeats)
    print(
        f"crmstream.schemas.decode, µs per event: median (and min) of {args.repeats} passes "
        f"over each kind's distinct payloads; Python {platform.python_version()}, "
        f"msgspec {msgspec.__version__}\n"
    )
    report(corpus, results)


if __name__ == "__main__":
    main()
