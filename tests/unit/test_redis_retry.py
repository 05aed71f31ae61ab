"""Which Redis errors the worker waits out (retry with backoff) and which it raises."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from crmstream.streams.profiles import retry_redis
from crmstream.streams.redis_client import _with_hiredis_packing, guard_topology


def flaky(error: Exception, failures: int):
    calls = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return call, calls


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("refused"),
        BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        ClusterDownError("The cluster is down"),
        MasterDownError("MASTERDOWN Link with MASTER is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    ],
)
async def test_an_unavailable_server_or_cluster_is_waited_out(error):
    call, calls = flaky(error, failures=2)
    assert await retry_redis("testing", call, retry_delay=0.001) == "done"
    assert len(calls) == 3


async def test_other_errors_are_raised_at_once():
    call, calls = flaky(ResponseError("WRONGTYPE Operation against a key"), failures=1)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await retry_redis("testing", call, retry_delay=0.001)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "message",
    [
        "All slots are not covered after query all startup_nodes. 10923 of 16384 covered...",
        "startup_nodes could not agree on a valid slots cache: 127.0.0.1:7001 vs 127.0.0.1:7002",
    ],
)
async def test_a_cluster_whose_slots_are_in_flux_is_waited_out(message):
    """redis-py re-reads the slots after a failover and raises its base cluster error when
    a master is still missing: the guarded client raises CLUSTERDOWN instead."""
    initialize, calls = flaky(RedisClusterException(message), failures=2)
    assert await retry_redis("testing", guard_topology(initialize), retry_delay=0.001) == "done"
    assert len(calls) == 3


async def test_a_command_the_cluster_cannot_route_is_raised_at_once():
    error = RedisClusterException("EVALSHA - all keys must map to the same key slot")
    initialize, calls = flaky(error, failures=1)
    with pytest.raises(RedisClusterException, match="same key slot"):
        await retry_redis("testing", guard_topology(initialize), retry_delay=0.001)
    assert len(calls) == 1


class _ClosedUnderneath:
    """A connection class whose write fails as redis-py's does when the peer closed the
    connection just before it (redis-py issues 3546 and 4287)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.disconnected = False

    async def send_packed_command(self, command, check_health=True) -> None:
        raise self.error

    async def disconnect(self, nowait: bool = False) -> None:
        self.disconnected = True


@pytest.mark.parametrize(
    "error",
    [
        AttributeError("'NoneType' object has no attribute 'writelines'"),
        TypeError("'NoneType' object is not callable"),
    ],
)
async def test_a_write_on_a_closed_connection_is_a_connection_error(error):
    connection = _with_hiredis_packing(_ClosedUnderneath)(error)
    with pytest.raises(ConnectionError, match="closed while writing"):
        await connection.send_packed_command([b"PING"])
    assert connection.disconnected


class _Transport:
    def __init__(self, buffered: int, closing: bool = False) -> None:
        self.buffered, self.closing = buffered, closing

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class _Writer:
    """A stream writer whose socket left ``buffered`` bytes in the transport's buffer, and
    whose drain never ends while any are left (a server that stopped reading)."""

    def __init__(self, buffered: int, closing: bool = False) -> None:
        self.transport = _Transport(buffered, closing)
        self.written: list[bytes] = []
        self.drained = 0

    def writelines(self, data) -> None:
        self.written.extend(data)

    async def drain(self) -> None:
        self.drained += 1
        if self.transport.buffered:
            await asyncio.Event().wait()


class _OpenConnection:
    health_check_interval = 0

    def __init__(self, writer: _Writer, socket_timeout: float = 0.05) -> None:
        self._writer = writer
        self.socket_timeout = socket_timeout
        self.disconnected = False

    @property
    def is_connected(self) -> bool:
        return self._writer is not None

    async def disconnect(self, nowait: bool = False) -> None:
        self.disconnected = True


async def test_a_write_the_socket_takes_whole_does_not_wait():
    writer = _Writer(buffered=0)
    connection = _with_hiredis_packing(_OpenConnection)(writer)
    await connection.send_packed_command([b"PING"])
    assert (writer.written, writer.drained, connection.disconnected) == ([b"PING"], 0, False)


async def test_a_write_the_server_does_not_take_times_out_and_drops_the_connection():
    writer = _Writer(buffered=1 << 20)
    connection = _with_hiredis_packing(_OpenConnection)(writer)
    with pytest.raises(RedisTimeoutError, match="Timeout writing"):
        await connection.send_packed_command([b"SET", b"k", b"v" * (1 << 20)])
    assert writer.drained == 1 and connection.disconnected


async def test_a_write_on_a_closing_connection_is_a_connection_error():
    writer = _Writer(buffered=0, closing=True)
    connection = _with_hiredis_packing(_OpenConnection)(writer)
    with pytest.raises(ConnectionError, match="closing"):
        await connection.send_packed_command([b"PING"])
    assert writer.written == [] and connection.disconnected
