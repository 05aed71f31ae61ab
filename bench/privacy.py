"""What privacy costs per event, in process (nothing is asserted; figures are printed).

* ``redact``: :func:`crmstream.models.redaction.redact` per chat text: the synthetic
  traffic's lines (no PII, the common case) and the same lines with an e-mail address, a
  phone and a card number appended; and per 4,000-character text (the longest allowed);
* ``protect``: :func:`crmstream.models.contact.protect` per ``crm.customers`` record with
  name, e-mail and phone, with and without an encryption key (HMACs, AES-GCM);
* ``screen``: the erased-ids check of a batch (``CRM_ERASURE_POLICY=deadletter``): one
  keyed hash per distinct customer (computed once, then remembered), measured in
  process, plus one ``SMISMEMBER`` round trip per batch against the embedded Valkey
  (``--redis``).

Medians of R interleaved repeats, garbage collector off.

    .venv/bin/python bench/privacy.py [--repeats 7] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from crmstream.models.contact import ContactKeys, protect
from crmstream.models.redaction import redact
from crmstream.schemas.inputs import CustomerDetails
from crmstream.streams.dev.traffic import HAPPY_LINES, HAPPY_REVIEWS, UNHAPPY_LINES
from crmstream.streams.erasure import ErasedIds

AT = datetime(2026, 5, 1, tzinfo=UTC)
PLAIN = [*HAPPY_LINES, *UNHAPPY_LINES, *HAPPY_REVIEWS]
WITH_PII = [
    f"{line} Mail ann.lee@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111"
    for line in PLAIN
]
LONG = [("Where is my order? It was due last week and nobody answers. " * 70)[:4000]]


def per_call(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def texts_cost(texts: list[str], rounds: int) -> float:
    def run() -> None:
        for text in texts:
            redact(text)

    return per_call(run, rounds) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--redis", action="store_true", help="time SMISMEMBER on Valkey too")
    args = parser.parse_args()
    record = CustomerDetails(
        event_id="u1",
        customer_id="c1",
        occurred_at=AT,
        name="Ann Lee",
        email="ann.lee@example.com",
        phone="+44 20 7946 0958",
    )
    hashes_only = ContactKeys(b"pepper")
    sealing = ContactKeys(b"pepper", bytes(32))
    batch = [f"customer-{n}" for n in range(500)]
    screen = ErasedIds(lambda: None, hashes_only)  # type: ignore[arg-type,return-value]
    keys = [c.encode() for c in batch]
    cases: dict[str, Callable[[], float]] = {
        "redact, chat without PII (µs/text)": lambda: texts_cost(PLAIN, 2000),
        "redact, chat with e-mail+phone+card (µs/text)": lambda: texts_cost(WITH_PII, 2000),
        "redact, 4000-character text (µs/text)": lambda: texts_cost(LONG, 200),
        "protect, hashes only (µs/record)": lambda: per_call(
            lambda: protect(record, hashes_only), 5000
        ),
        "protect, hashes + AES-GCM (µs/record)": lambda: per_call(
            lambda: protect(record, sealing), 5000
        ),
        "screen, keyed hash per distinct customer (µs)": lambda: (
            per_call(lambda: [hashes_only.digest("id", c) for c in batch], 40) / len(batch)
        ),
        "screen, keyed hash of a customer seen before (µs)": lambda: (
            per_call(lambda: [screen.marker(k) for k in keys], 400) / len(keys)
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    gc.disable()
    try:
        for _ in range(args.repeats):
            for name, case in cases.items():
                results[name].append(case())
    finally:
        gc.enable()
    width = max(map(len, results))
    for name, values in results.items():
        print(f"{name:<{width}}  median {statistics.median(values):7.2f}  min {min(values):7.2f}")
    if args.redis:
        print(f"{'screen, SMISMEMBER of 500 ids (µs/batch)':<{width}}  {smismember(batch):.0f}")


def smismember(batch: list[str]) -> float:
    from crmstream.streams.dev.embedded import EmbeddedStack
    from crmstream.streams.redis_client import connect

    keys = ContactKeys(b"pepper")
    markers = [keys.digest("id", c) for c in batch]

    async def run(url: str) -> float:
        client = connect(url, decode_responses=True)
        await client.sadd("crm:erased", *markers[:5])
        times = []
        for _ in range(200):
            start = time.perf_counter()
            await client.smismember("crm:erased", markers)
            times.append(time.perf_counter() - start)
        await client.aclose()
        return statistics.median(times) * 1e6

    with EmbeddedStack() as stack:
        return asyncio.run(run(stack.redis_url))


if __name__ == "__main__":
    main()
