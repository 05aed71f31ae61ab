"""Which Redis errors the worker waits out (retry with backoff) and which it raises."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    ResponseError,
    TryAgainError,
)

from crmstream.streams.profiles import retry_redis
from crmstream.streams.redis_client import _with_hiredis_packing


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
