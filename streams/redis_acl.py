"""The least a Redis ACL user needs to run crmstream: its keys, channels and commands.

Every key and channel crmstream uses begins with ``crm:`` (per-customer keys carry a hash
tag after it: ``crm:{<customer id>}:profile``). The commands are those the workers, the
dashboard and the command-line tools send, including those the Lua scripts call (Redis
checks a script's calls against the user's ACL too). Nothing of ``@dangerous`` is granted:
no ``FLUSHALL``, ``FLUSHDB``, ``CONFIG``, ``KEYS``, ``DEBUG``, ``SHUTDOWN``, ``ACL``.

The README's "Security" section shows the rule that :func:`acl_rule` builds, and
``docker-compose.yml`` gives it to its Redis; tests check both against this module.
"""

from __future__ import annotations

import hashlib

#: Keys the user may touch.
KEY_PATTERN = "crm:*"
#: Pub/sub channels the user may use (the dashboards' acknowledgement events).
CHANNEL_PATTERN = "crm:*"

#: Every command crmstream sends, by family.
COMMANDS: dict[str, tuple[str, ...]] = {
    "connection": ("ping", "select", "client|setinfo"),
    "strings and keys": ("get", "set", "del", "exists", "expire", "pexpire", "scan"),
    "hashes": ("hget", "hgetall", "hmget", "hset", "hdel", "hincrby", "hincrbyfloat", "hlen"),
    "sets": ("sadd", "srem", "smembers", "smismember", "scard", "sscan", "srandmember"),
    "sorted sets": (
        "zadd",
        "zrange",
        "zrangebyscore",
        "zrem",
        "zremrangebyscore",
        "zmscore",
        "zscan",
        # the shared item statistics of recommendations (streams/items.py)
        "zincrby",
        "zscore",
        "zrevrange",
        "zcard",
        "zremrangebyrank",
    ),
    "lists": ("rpush", "ltrim", "lrange"),
    "streams": ("xadd", "xdel"),
    "scripts": ("evalsha", "eval", "script|load", "script|exists"),
    "pub/sub": ("publish", "subscribe", "unsubscribe"),
}


def acl_rule(password_rule: str) -> list[str]:
    """The ACL rule of crmstream's user, after its name, as ``ACL SETUSER`` words.

    ``password_rule`` is ``>password`` or, in an ACL file, ``#<sha256 of the password>``.

    Examples
    --------
    >>> rule = acl_rule(">secret")
    >>> rule[:7]
    ['on', '>secret', 'resetkeys', '~crm:*', 'resetchannels', '&crm:*', '-@all']
    >>> "+flushall" in rule or "+keys" in rule or "+config" in rule
    False
    """
    commands = [f"+{command}" for family in COMMANDS.values() for command in family]
    return [
        "on",
        password_rule,
        "resetkeys",
        f"~{KEY_PATTERN}",
        "resetchannels",
        f"&{CHANNEL_PATTERN}",
        "-@all",
        *commands,
    ]


def acl_file(password: str, user: str = "crmstream") -> str:
    """An ACL file (``--aclfile``) with ``default`` disabled and ``user`` allowed what
    crmstream needs; the password is stored as its SHA-256, never in clear.

    Examples
    --------
    >>> print(acl_file("secret").splitlines()[0])
    user default off
    >>> acl_file("secret").splitlines()[1].split()[:4]
    ['user', 'crmstream', 'on', '#2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b']
    """
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user default off\nuser {user} {' '.join(acl_rule(f'#{digest}'))}\n"
