"""CPU cost of publishing one output record: the worker's sink against Faust's ``Topic.send``.

Against the embedded broker (Tansu, started here), a Faust app's producer publishes
``--records`` alert-sized records in groups of 30, each group awaited until the broker
acknowledged it (as the worker does before it commits a batch's profiles), two ways,
interleaved ``--repeats`` times so drift on a shared machine hits them alike:

* ``Topic.send``: Faust's topic API (pending and future messages, send sensors, callbacks);
* ``FaustSink``: :class:`crmstream.streams.sink.FaustSink`, straight to the app's producer.

It prints the process CPU time per record of each (median and minimum) and their ratio.

    python bench/sink.py [--records 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import faust

from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.sink import FaustSink, Output
from crmstream.streams.topics import ALERTS

GROUP = 30
VALUE = b'{"alert_id":"0123456789abcdef","kind":"sentiment","severity":"warning"}' * 3


async def measure(kafka_url: str, records: int, repeats: int) -> dict[str, list[float]]:
    app = faust.App("crmstream-bench-sink", broker=kafka_url, producer_acks=-1)
    topic = app.topic(ALERTS, key_serializer="raw", value_serializer="raw")
    sink = FaustSink(app)
    outputs = [Output(ALERTS, b"c1", VALUE)] * GROUP
    await app.maybe_start_producer()

    async def via_topic() -> None:
        futures = [await topic.send(key=o.key, value=o.value, headers=[]) for o in outputs]
        await asyncio.gather(*futures)

    async def via_sink() -> None:
        await sink.send(outputs)

    cpu: dict[str, list[float]] = {"Topic.send": [], "FaustSink": []}
    try:
        for _ in range(repeats):
            for name, send in (("Topic.send", via_topic), ("FaustSink", via_sink)):
                start = time.process_time()
                for _ in range(records // GROUP):
                    await send()
                cpu[name].append((time.process_time() - start) / records * 1e6)
    finally:
        await app.producer.stop()
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with EmbeddedStack() as stack:
        cpu = asyncio.run(measure(stack.kafka_url, args.records, args.repeats))
    for name, values in cpu.items():
        print(
            f"{name:>10}: {statistics.median(values):6.1f} µs CPU per record "
            f"(min {min(values):.1f}, {args.repeats} runs of {args.records})"
        )
    ratio = statistics.median(cpu["Topic.send"]) / statistics.median(cpu["FaustSink"])
    print(f"Topic.send / FaustSink: {ratio:.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
