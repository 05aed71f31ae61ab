"""crmstream on a Redis Cluster of three Valkey masters started by the test
(``CRM_REDIS_URL=redis+cluster://...``): stores, scripts, checkpoints and the due index
work across slots, and workers apply a mixed stream exactly once while a master restarts
(C3, reduced; ``make chaos`` runs it longer)."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial

import pytest

from crmstream.models.profile import Profile
from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.dev.embedded import EmbeddedCluster, EmbeddedStack
from crmstream.streams.profiles import _SCRIPTS, Delivery, ProfileStore, retry_redis
from crmstream.streams.redis_client import connect, connect_sync
from crmstream.streams.sink import Output
from tests.chaos.harness import ChaosRun, chunks, expected, full_runs, make_stream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    with EmbeddedCluster() as running:
        yield running


def add(profile: Profile, d: Delivery) -> tuple[Profile, list[Output]]:
    profile = Profile(customer_id=profile.customer_id, orders=profile.orders + 1)
    return profile, [Output("crm.alerts", d.customer_id.encode(), d.event_id.encode())]


async def test_profiles_apply_once_across_the_cluster(cluster):
    store = ProfileStore(cluster.redis_url)
    customers = [f"cl-{n}" for n in range(60)]
    batch = [
        Delivery("crm.purchases", 0, offset, customer, f"{customer}-e{offset}", None)
        for offset, customer in enumerate(customers * 2)
    ]
    first = await store.apply(batch, add)
    again = await store.apply(batch, add)
    assert (first.applied, again.applied, again.duplicates) == (120, 0, 120)
    found = await store.get_many(customers)
    assert {p.orders for p in found.values()} == {2}
    # The customers' keys are spread over the three masters.
    nodes = Counter(store.client.get_node_from_key(f"crm:{{{c}}}:profile").port for c in customers)
    assert len(nodes) == 3
    # Every master forgets the scripts: they are loaded again, on every master.
    await store.client.script_flush()

    def loaded() -> list[list[bool]]:  # asked of each master in turn
        answers = []
        for port in cluster.ports:
            node = connect_sync(f"redis://127.0.0.1:{port}")
            answers.append(node.script_exists(*(s.sha for s in _SCRIPTS)))
            node.close()
        return answers

    assert loaded() == [[False] * len(_SCRIPTS)] * 3
    more = [
        Delivery("crm.purchases", 0, 500 + n, c, f"{c}-late", None) for n, c in enumerate(customers)
    ]
    assert (await store.apply(more, add)).applied == 60
    assert loaded() == [[True] * len(_SCRIPTS)] * 3
    await store.close()


async def test_checkpoints_of_partitions_in_different_slots(cluster):
    store = CheckpointStore(cluster.redis_url, b"k" * 32)
    states = {p: {"partition": p, "weights": list(range(p))} for p in range(8)}
    assert await store.save(states) > 0
    assert await store.load(list(range(10))) == states
    await store.close()


async def test_after_a_master_restart_only_errors_the_worker_waits_out_surface():
    """A restarted master closes the client's connections to it, and a client that sees
    ``CLUSTERDOWN`` closes all of its connections, also those other tasks are writing on:
    such a write must fail as a connection error, which :func:`retry_redis` waits out,
    never as redis-py's internal ``AttributeError`` (which stopped a worker). The worker
    runs Redis calls concurrently (profiles, items, checkpoints, heartbeats) as here."""
    with EmbeddedCluster() as own:
        client = connect(own.redis_url)
        await client.ping()
        nodes = client.get_nodes()
        assert len(nodes) == 3
        assert {node.connection_class.__name__ for node in nodes} == {"HiredisConnection"}
        stop = asyncio.Event()
        escaped: list[BaseException] = []

        async def pipeline(task: int, step: int) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for n in range(12):
                    pipe.set(f"crm:{{restart-{task}-{n}}}:probe", step)
                await pipe.execute()

        async def busy(task: int) -> int:
            step = 0
            while not stop.is_set():
                step += 1
                try:
                    await retry_redis("testing", partial(pipeline, task, step), retry_delay=0.01)
                    key = f"crm:{{restart-{task}-{step % 12}}}:single"
                    await retry_redis("testing", partial(client.set, key, step), retry_delay=0.01)
                except Exception as exc:  # what escapes is the finding
                    escaped.append(exc)
                    await asyncio.sleep(0.01)
            return step

        tasks = [asyncio.create_task(busy(task)) for task in range(8)]
        for round_ in range(4):
            await asyncio.sleep(0.3)
            await asyncio.to_thread(own.restart_node, round_ % 3)
        await asyncio.sleep(0.3)
        stop.set()
        steps = await asyncio.gather(*tasks)
        await client.aclose()
    assert escaped == []
    assert min(steps) > 0


def test_a_sync_client_for_the_command_line_tools(cluster):
    client = connect_sync(cluster.redis_url, decode_responses=True)
    client.set("crm:{cli}:probe", "1")
    assert client.get("crm:{cli}:probe") == "1"
    client.close()


class ClusterStack:
    """The embedded broker with the cluster as its Redis, as the chaos harness uses it."""

    def __init__(self, broker: EmbeddedStack, cluster: EmbeddedCluster) -> None:
        self.broker = broker
        self.cluster = cluster
        self.kafka_url = broker.kafka_url
        self.redis_url = cluster.redis_url
        self.restarts = 0

    def env(self) -> dict[str, str]:
        return {"CRM_KAFKA_URL": self.kafka_url, "CRM_REDIS_URL": self.redis_url}

    def restart_store(self) -> None:
        self.cluster.restart_node(self.restarts % len(self.cluster.ports))
        self.restarts += 1


@pytest.mark.chaos
def test_c3_workers_on_a_cluster_with_a_master_restarted(stack, tmp_path):
    events, customers, restarts = (20_000, 1000, 3) if full_runs() else (1500, 150, 1)
    with EmbeddedCluster() as cluster:
        stream = make_stream(events, customers, seed=13)
        want = expected(stream)
        run = ChaosRun(ClusterStack(stack, cluster), tmp_path, partitions=4, seed=5)
        parts = chunks(stream, 5)
        try:
            run.start_worker()
            run.start_worker()
            for index, part in enumerate(parts):
                run.publish(part)
                run.wait_progress()
                if 1 <= index <= restarts:
                    run.restart_store()
            run.catch_up(want.per_topic, timeout=240)
        finally:
            run.stop_all()
        figures = run.check(want)
    assert figures.problems == []
    assert (figures.lost, figures.double_applied, figures.conflicting_outputs) == (0, 0, 0)
    assert (figures.missing_outputs, figures.unexpected_outputs, figures.broken_chains) == (0, 0, 0)
    assert figures.learned == want.events
