"""Lua scripts whose arguments are sent packed, against a real Redis server."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from crmstream.streams.dev.embedded import EmbeddedStack
from crmstream.streams.redis_client import LuaScript, connect, run_pipeline

pytestmark = pytest.mark.integration

# What the script sees of each argument: its Lua type and the value Redis stores from it.
_ECHO = """
local out = {}
for i = 1, #ARGV do
  redis.call('HSET', KEYS[1], i, ARGV[i])
  out[#out + 1] = type(ARGV[i])
end
out[#out + 1] = #ARGV
return out
"""


async def test_packed_arguments_reach_the_script_as_they_would_unpacked(stack: EmbeddedStack):
    """Strings (empty, long, non-ASCII, JSON), integers up to 2**53 and floats arrive as
    one argument each, and Redis stores from each the same text as from the same argument
    sent unpacked."""
    client = connect(stack.redis_url, decode_responses=True)
    args = ["", "x" * 70_000, "café ☕", '{"a": [1, 2]}', 0, -7, 2**53, 1733097600123, 0.1, 2.5e-7]
    packed, plain = LuaScript(_ECHO, packed=True), LuaScript(_ECHO)

    def build(pipe):
        packed.queue(pipe, ["t:packed"], args)
        plain.queue(pipe, ["t:plain"], args)

    kinds, _ = await run_pipeline(client, build, (packed, plain))
    assert kinds == ["string"] * 4 + ["number"] * 6 + [len(args)]
    stored, sent = await client.hgetall("t:packed"), await client.hgetall("t:plain")
    assert [float(stored[str(i)]) for i in range(5, 11)] == [float(a) for a in args[4:]]
    assert [stored[str(i)] for i in range(1, 5)] == args[:4]
    assert {k: v for k, v in stored.items() if int(k) <= 8} == {
        k: v for k, v in sent.items() if int(k) <= 8
    }
    await client.aclose()


async def test_a_packed_script_with_no_arguments_sees_none(stack: EmbeddedStack):
    client = connect(stack.redis_url, decode_responses=True)
    script = LuaScript("return #ARGV", packed=True)
    assert await run_pipeline(client, lambda pipe: script.queue(pipe, [], []), (script,)) == [0]
    await client.aclose()


async def test_bytes_are_refused_by_the_server_not_mangled(stack: EmbeddedStack):
    """cmsgpack reads no MessagePack bin: a packed call with bytes fails as a whole."""
    client = connect(stack.redis_url, decode_responses=True)
    script = LuaScript("redis.call('SET', KEYS[1], ARGV[1]) return 1", packed=True)
    with pytest.raises(ResponseError, match="Bad data format"):
        await run_pipeline(client, lambda pipe: script.queue(pipe, ["t:b"], [b"raw"]), (script,))
    assert await client.exists("t:b") == 0
    await client.aclose()
