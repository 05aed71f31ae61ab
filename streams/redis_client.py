"""The worker's Redis clients: one server or a Redis Cluster, redis-py's asyncio client
with a C command packer, and Lua scripts called without a round trip of their own.

``CRM_REDIS_URL`` names one server (``redis://``, ``rediss://``, ``unix://``) or a
cluster (``redis+cluster://host:port`` or ``rediss+cluster://``: any node; the client
discovers the others). On a cluster every key of one customer shares a slot (their hash
tag ``{<customer id>}``), so the per-customer scripts run on one node; the per-partition
structures (``crm:models:<p>``, ``crm:due:<p>``) are spread over the nodes by partition.
No command crmstream sends names keys of two slots.

Two costs of redis-py's asyncio client matter on the worker's path, where every event
sends a compare-and-set script with a dozen or more arguments:

* it packs commands in Python (``Connection.pack_command``): about a third of the Redis
  stage's CPU. The synchronous client packs with hiredis when it is installed; the
  asyncio one never does. :func:`connect` gives the asyncio connections hiredis's packer.
* a pipeline holding a :class:`redis.commands.core.Script` checks with ``SCRIPT EXISTS``
  before every execution: one more round trip per pipeline. :class:`LuaScript` sends
  ``EVALSHA`` directly and loads the script only when the server answers ``NOSCRIPT``
  (a restarted or flushed server); :func:`run_pipeline` retries a pipeline once then.

A script over a whole batch takes thousands of arguments, and each costs the client its
packing and the server its parsing, whichever packer packs it. A :class:`LuaScript` made
with ``packed=True`` is sent its arguments as one MessagePack array (msgspec's encoder),
which the script unpacks into its ``ARGV`` with the server's own ``cmsgpack`` (part of
Redis's and Valkey's Lua since Redis 2.6). Integers and floats arrive as Lua numbers
(``tonumber`` of one is itself; a number passed to ``redis.call`` is sent as its shortest
exact decimal), strings as strings. ``cmsgpack`` reads no MessagePack ``bin``: pass
text, not bytes (the server refuses a call with bytes: ``Bad data format in input``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
import msgspec
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import NodesManager, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ClusterDownError, DataError, NoScriptError, RedisClusterException

#: URL schemes that name a Redis Cluster (the rest of the URL as for ``redis://``).
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """The plain ``redis://`` URL of a node if ``url`` names a cluster, else ``None``.

    Examples
    --------
    >>> cluster_url("redis+cluster://cache-0:7000"), cluster_url("redis://cache:6379/0")
    ('redis://cache-0:7000', None)
    """
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme)
    return f"{plain}{sep}{rest}" if plain and sep else None


class _HiredisPacking:
    """Mix-in for an asyncio connection class: pack commands with hiredis (C), and report
    a write on a connection the server closed as the ``ConnectionError`` it is.

    redis-py lets the transport's own error escape when the peer closed the connection
    just before a write (``AttributeError: 'NoneType' object has no attribute
    'writelines'``, or a ``TypeError``: redis-py issues 3546 and 4287), which no retry
    recognises; it happens when a Redis server or a cluster master restarts.

    A write on an open connection also skips redis-py's ``asyncio.wait_for`` around it (a
    task and two more turns of the event loop per round trip, about a fifth of a
    pipeline's CPU): the bytes go to the transport's buffer, and only when the socket did
    not take them all does it wait for the buffer to drain, within ``socket_timeout`` as
    redis-py would.
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        writer = getattr(self, "_writer", None)
        if (
            writer is not None
            and self.is_connected  # type: ignore[attr-defined]
            and isinstance(command, list)
            and not (check_health and self.health_check_interval)  # type: ignore[attr-defined]
        ):
            await self._write(writer, command)
            return
        try:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except (AttributeError, TypeError) as exc:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise redis.exceptions.ConnectionError(
                f"the connection was closed while writing to it ({exc})"
            ) from exc

    async def _write(self, writer: asyncio.StreamWriter, command: list[bytes]) -> None:
        timeout = self.socket_timeout  # type: ignore[attr-defined]
        try:
            if writer.transport.is_closing():
                raise ConnectionResetError("the connection is closing")
            writer.writelines(command)
            if writer.transport.get_write_buffer_size():
                await asyncio.wait_for(writer.drain(), timeout) if timeout else await writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise redis.exceptions.ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            # Part of the command may have been sent: the connection cannot be reused.
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # the same error redis-py raises for an unsupported value
            raise DataError(str(exc)) from None


_packing_classes: dict[type, type] = {}


def _with_hiredis_packing(cls: type) -> type:
    if cls not in _packing_classes:
        _packing_classes[cls] = type(f"Hiredis{cls.__name__}", (_HiredisPacking, cls), {})
    return _packing_classes[cls]


#: How redis-py's cluster client begins the errors it raises while it re-reads the
#: cluster's slots and finds them in flux (a master restarting or failing over): the
#: moment passes, as a ``CLUSTERDOWN`` does.
SLOTS_IN_FLUX = ("All slots are not covered", "startup_nodes could not agree")


def guard_topology(initialize: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``initialize`` (a cluster client's ``NodesManager.initialize``) raising the
    :data:`SLOTS_IN_FLUX` errors as :class:`~redis.exceptions.ClusterDownError`, which the
    worker retries with backoff (``streams.profiles.UNAVAILABLE``); redis-py raises them
    as the base ``RedisClusterException``, as it raises mistakes in a command.

    Examples
    --------
    >>> async def flux():
    ...     raise RedisClusterException("All slots are not covered after query all ...")
    >>> try:
    ...     asyncio.run(guard_topology(flux)())
    ... except ClusterDownError as error:
    ...     print(error)
    the cluster's slots are in flux: All slots are not covered after query all ...
    """

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return await initialize(*args, **kwargs)
        except RedisClusterException as exc:
            if str(exc).startswith(SLOTS_IN_FLUX):
                raise ClusterDownError(f"the cluster's slots are in flux: {exc}") from exc
            raise

    return guarded


class _GuardedNodesManager(NodesManager):
    """redis-py's cluster topology, re-read through :func:`guard_topology` (given to a
    client's ``nodes_manager`` by :func:`connect`; it has ``__slots__``, so its method
    cannot be replaced on the instance)."""

    __slots__ = ()

    async def initialize(self, *args: Any, **kwargs: Any) -> None:
        await guard_topology(super().initialize)(*args, **kwargs)


def connect(url: str, **options: Any) -> aioredis.Redis | RedisCluster:
    """An asyncio client for ``url`` (``redis://``, ``rediss://``, ``unix://``, or a
    cluster: ``redis+cluster://``) whose connections pack commands with hiredis;
    ``options`` as for ``Redis.from_url``.

    Examples
    --------
    >>> client = connect("redis://127.0.0.1:1/0", decode_responses=True)
    >>> client.connection_pool.connection_class.__name__
    'HiredisConnection'
    >>> client.connection_pool.connection_class(host="h").pack_command("SET", "k", 1.5, b"v")
    [b'*4\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$3\\r\\n1.5\\r\\n$1\\r\\nv\\r\\n']
    >>> cluster = connect("redis+cluster://127.0.0.1:1")
    >>> [node.connection_class.__name__ for node in cluster.nodes_manager.startup_nodes.values()]
    ['HiredisConnection']
    >>> type(cluster.nodes_manager).__name__
    '_GuardedNodesManager'
    """
    node = cluster_url(url)
    if node is not None:
        cluster = RedisCluster.from_url(node, **options)
        # The nodes' connections are made from the client's shared keyword arguments:
        # the nodes it discovers later get the class from there, the start-up node has
        # its own (no connection is open yet).
        kwargs = cluster.nodes_manager.connection_kwargs
        kwargs["connection_class"] = _with_hiredis_packing(kwargs["connection_class"])
        for startup in cluster.nodes_manager.startup_nodes.values():
            startup.connection_class = kwargs["connection_class"]
        cluster.nodes_manager.__class__ = _GuardedNodesManager
        return cluster
    pool = ConnectionPool.from_url(url, **options)
    pool.connection_class = _with_hiredis_packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


def connect_sync(url: str, **options: Any) -> redis.Redis | redis.RedisCluster:
    """A blocking client for ``url``, a single server or a cluster (command-line tools)."""
    node = cluster_url(url)
    if node is not None:
        return redis.RedisCluster.from_url(node, **options)
    return redis.Redis.from_url(url, **options)


#: The first line of a packed script (:class:`LuaScript`): its arguments from the one it
#: is sent.
_UNPACK_ARGV = "local ARGV = cmsgpack.unpack(ARGV[1])"
_pack_args = msgspec.msgpack.Encoder().encode


class LuaScript:
    """A Lua script called by its SHA1 (``EVALSHA``), in a pipeline or directly.

    With ``packed``, the script's arguments are sent as one MessagePack array and unpacked
    into ``ARGV`` before the script's own code runs (see the module): for scripts that take
    many arguments. The script must then compare a number argument as a number
    (``tonumber``), not as the string Redis would otherwise give it.

    Examples
    --------
    >>> LuaScript("return 1").sha
    'e0e1f9fabfc9d4800c877a703b823ac0578ff8db'
    >>> LuaScript("return ARGV[2]", packed=True).source.splitlines()[0]
    'local ARGV = cmsgpack.unpack(ARGV[1])'
    >>> LuaScript("return 1", packed=True).args([1, "a", 2.5])
    [b'\\x93\\x01\\xa1a\\xcb@\\x04\\x00\\x00\\x00\\x00\\x00\\x00']
    """

    def __init__(self, source: str, packed: bool = False) -> None:
        self.packed = packed
        self.source = f"{_UNPACK_ARGV}\n{source}" if packed else source
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def args(self, args: Sequence[Any]) -> Sequence[Any]:
        """The arguments as sent: ``args`` itself, or one MessagePack array of them."""
        return [_pack_args(args)] if self.packed else args

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call to ``pipe`` (a pipeline, not yet executed)."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *self.args(args))

    async def load(self, client: aioredis.Redis | RedisCluster) -> None:
        """Load the script into the server's script cache (a cluster client sends it to
        every primary)."""
        await client.script_load(self.source)


async def run_pipeline(
    client: aioredis.Redis | RedisCluster,
    build: Callable[[Any], None],
    scripts: Sequence[LuaScript],
) -> list[Any]:
    """Queue commands with ``build(pipe)`` on a new pipeline and execute it; if a server
    has lost a script (``NOSCRIPT``: restarted or flushed), load ``scripts`` and do it once
    more.

    Only for commands that are safe to repeat (the profile store's reads, and its
    compare-and-set writes: a write that did happen fails its version check the second
    time and is read and folded again).
    """
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        build(pipe)
        try:
            return await pipe.execute()
        except NoScriptError:
            if attempt == 2:
                raise
            for script in scripts:
                await script.load(client)
    raise AssertionError("unreachable")
