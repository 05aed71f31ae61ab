"""Model replicas: restored from Redis checkpoints, learning every event exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from crmstream.streams.profiles import ApplyResult, Delivery, ProfileStore
from crmstream.streams.replicas import ModelReplicas, checkpoint_key

pytestmark = pytest.mark.integration

NAME = "counting"


def counting_models() -> dict[str, Counter]:
    return {"seen": Counter()}


def teach(models, delivery) -> bool:
    models["seen"][delivery.event_id] += 1
    return True


def result(*deliveries) -> ApplyResult:
    return ApplyResult(learnable=list(deliveries))


def chat(partition: int, offset: int, event_id: str) -> Delivery:
    return Delivery("crm.chats", partition, offset, "c1", event_id, None)


async def test_each_event_is_learned_once_across_restarts(stack):
    store = ProfileStore(stack.redis_url)
    replicas = ModelReplicas(store, counting_models, NAME)
    first = [chat(0, 0, "a"), chat(0, 1, "b"), chat(1, 0, "x")]
    await replicas.prepare(first)
    await replicas.learn(result(*first), teach)
    assert dict(replicas[0].models["seen"]) == {"a": 1, "b": 1}
    assert await store.raw_client.exists(checkpoint_key(NAME, 0), checkpoint_key(NAME, 1)) == 2

    # A new worker (or the same after a restart) restores the checkpoint...
    restored = ModelReplicas(store, counting_models, NAME)
    await restored.load([0, 1])
    assert restored[0].models == replicas[0].models
    assert restored[0].learned == 2 and restored[0].offsets == {"crm.chats:0": 1}
    # ...and skips redeliveries and re-sent copies, learning only what is new.
    redelivered = [chat(0, 1, "b"), chat(0, 2, "a"), chat(0, 3, "c"), chat(1, 0, "x")]
    await restored.learn(result(*redelivered), teach)
    assert dict(restored[0].models["seen"]) == {"a": 1, "b": 1, "c": 1}
    assert dict(restored[1].models["seen"]) == {"x": 1}
    await store.close()


async def test_a_dropped_partition_is_reloaded_from_its_checkpoint(stack):
    store = ProfileStore(stack.redis_url)
    mine, theirs = (
        ModelReplicas(store, counting_models, NAME),
        ModelReplicas(store, counting_models, NAME),
    )
    await mine.prepare([chat(0, 0, "a")])
    await mine.learn(result(chat(0, 0, "a")), teach)
    # The partition moves to another worker, which learns more...
    mine.drop([0])
    await theirs.prepare([chat(0, 1, "b")])
    await theirs.learn(result(chat(0, 1, "b")), teach)
    # ...and comes back: the first worker sees everything learned meanwhile.
    await mine.prepare([chat(0, 2, "c")])
    assert dict(mine[0].models["seen"]) == {"a": 1, "b": 1}
    await store.close()


async def test_nothing_is_written_when_nothing_was_learned(stack):
    store = ProfileStore(stack.redis_url)
    replicas = ModelReplicas(store, counting_models, NAME)
    await replicas.prepare([chat(3, 0, "a")])
    await replicas.learn(result(), teach)
    assert await store.raw_client.exists(checkpoint_key(NAME, 3)) == 0
    await store.close()


async def test_events_that_teach_nothing_do_not_cost_a_checkpoint(stack):
    store = ProfileStore(stack.redis_url)
    replicas = ModelReplicas(store, counting_models, NAME)
    chit_chat = [chat(4, 0, "a"), chat(4, 1, "b")]
    await replicas.prepare(chit_chat)
    await replicas.learn(result(*chit_chat), lambda models, delivery: False)
    assert await store.raw_client.exists(checkpoint_key(NAME, 4)) == 0
    assert replicas[4].offsets == {"crm.chats:4": 1}
    # The next event that does teach something checkpoints the offsets considered so far.
    await replicas.learn(result(chat(4, 2, "c")), teach)
    restored = ModelReplicas(store, counting_models, NAME)
    await restored.load([4])
    assert restored[4].offsets == {"crm.chats:4": 2}
    assert dict(restored[4].models["seen"]) == {"c": 1}
    await store.close()
