"""Natural batching of an agent's stream (streams/batching.py), on Faust's own in-memory
channel and stream: no broker is contacted."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import Message

from crmstream.streams.batching import gather


def _app() -> faust.App:
    app = faust.App("batching-test", broker="kafka://localhost:1", web_enabled=False)
    app.flow_control.resume()  # a worker resumes it once partitions are assigned
    return app


def _event(app: faust.App, offset: int) -> faust.EventT:
    message = Message(
        "t", 0, offset, 0.0, 0, [], b"k", b"v", None, generation_id=app.consumer_generation_id
    )
    return app.create_event(b"k", b"v", [], message)


def _agent_stream(app: faust.App) -> tuple[faust.ChannelT, faust.StreamT]:
    # What an agent reads: a stream over an iterator clone of its channel.
    channel = app.channel().clone(is_iterator=True)
    return channel, app.stream(channel)


async def _offsets(batches, count: int) -> list[list[int]]:
    out: list[list[int]] = []
    async for batch in batches:
        out.append([event.message.offset for event in batch])
        if sum(map(len, out)) >= count:
            break
    return out


def test_events_already_waiting_go_in_full_batches_in_order():
    async def run() -> list[list[int]]:
        app = _app()
        channel, stream = _agent_stream(app)
        for offset in range(1000):
            await channel.put(_event(app, offset))
        return await _offsets(gather(stream, 300, max_wait=60.0), 1000)

    batches = asyncio.run(run())
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    assert [o for b in batches for o in b] == list(range(1000))


def test_a_lone_event_is_handed_over_at_once():
    async def run() -> tuple[list[list[int]], float]:
        app = _app()
        channel, stream = _agent_stream(app)
        batches = gather(stream, 500, max_wait=60.0)
        await channel.put(_event(app, 0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await asyncio.wait_for(batches.__anext__(), 5.0)
        waited = loop.time() - started
        return [[e.message.offset for e in first]], waited

    batches, waited = asyncio.run(run())
    assert batches == [[0]]
    assert waited < 5.0  # not the 60 s of max_wait


def test_a_batch_gets_what_arrived_while_the_previous_one_was_handled():
    async def run() -> list[list[int]]:
        app = _app()
        channel, stream = _agent_stream(app)
        seen: list[list[int]] = []
        await channel.put(_event(app, 0))
        async for batch in gather(stream, 500, max_wait=60.0):
            seen.append([e.message.offset for e in batch])
            if len(seen) == 1:  # while the first batch is being applied, 50 more arrive
                for offset in range(1, 51):
                    await channel.put(_event(app, offset))
            if sum(map(len, seen)) == 51:
                return seen
        return seen

    assert asyncio.run(run()) == [[0], list(range(1, 51))]


def test_max_wait_ends_gathering_while_events_keep_waiting():
    async def run() -> list[list[int]]:
        app = _app()
        channel, stream = _agent_stream(app)

        async def slow(value):  # moving an event into the batch takes 5 ms
            await asyncio.sleep(0.005)
            return value

        stream.add_processor(slow)
        for offset in range(100):
            await channel.put(_event(app, offset))
        return await _offsets(gather(stream, 500, max_wait=0.05), 100)

    batches = asyncio.run(run())
    # 100 events at 5 ms each: without the bound, one batch of 100 after half a second.
    assert len(batches) >= 3
    assert max(map(len, batches)) < 60
    assert [o for b in batches for o in b] == list(range(100))


def test_a_batch_is_handed_over_when_the_events_behind_it_are_dropped():
    # After a rebalance (or at a stop) Faust drops the events still queued from the old
    # assignment: they never reach the batch, and the batch must not wait for them.
    async def run() -> list[int]:
        app = _app()
        channel, stream = _agent_stream(app)
        for offset in range(3):
            await channel.put(_event(app, offset))
        for offset in range(3, 6):
            stale = _event(app, offset)
            stale.message.generation_id = app.consumer_generation_id - 1
            await channel.put(stale)
        batches = gather(stream, 500, max_wait=0.2)
        first = await asyncio.wait_for(batches.__anext__(), 5.0)
        return [event.message.offset for event in first]

    assert asyncio.run(run()) == [0, 1, 2]


def test_events_are_acknowledged_after_their_batch_not_before():
    async def run() -> tuple[list[bool], list[bool]]:
        app = _app()
        channel, stream = _agent_stream(app)
        for offset in range(10):
            await channel.put(_event(app, offset))
        batches = gather(stream, 4, max_wait=60.0)
        first = await batches.__anext__()
        during = [event.message.acked for event in first]
        await batches.__anext__()  # the consumer is done with the first batch
        return during, [event.message.acked for event in first]

    during, after = asyncio.run(run())
    assert during == [False] * 4
    assert after == [True] * 4


def test_a_stream_over_something_else_than_a_channel_is_refused():
    async def numbers():
        yield 1

    async def run() -> None:
        stream = _app().stream(numbers())
        await gather(stream, 10, 1.0).__anext__()

    with pytest.raises(ValueError, match="over a channel"):
        asyncio.run(run())
