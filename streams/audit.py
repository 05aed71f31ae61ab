"""The audit trail: who read a profile, erased a customer, acknowledged an alert, changed
the rules or replayed dead letters, and when, as JSON records on ``crm.audit``.

Every process that acts on someone's behalf records what it did: the dashboard (profile
reads, erasures, acknowledgements, as ``dashboard:<user>`` or ``api``), the command line
(``crmstream erase``, ``crmstream deadletter replay``, as ``cli:<user>``) and the workers
(a rule file that changed, loaded or refused, as ``worker:<id>``). A record is sent, and
acknowledged by the broker, before the action's answer is given: an action that cannot be
audited fails.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from crmstream.schemas.outputs import AuditAction, AuditEvent, Scalar, deterministic_id
from crmstream.streams import topics
from crmstream.streams.sink import Output


def audit_event(
    actor: str,
    action: AuditAction,
    target: str | None = None,
    at: datetime | None = None,
    **details: Scalar,
) -> AuditEvent:
    """An audit record of ``actor`` doing ``action`` to ``target`` (now, by default).

    Examples
    --------
    >>> at = datetime(2026, 5, 1, tzinfo=UTC)
    >>> event = audit_event("dashboard:ana", "customer.erase", "c1", at, keys_removed=4)
    >>> event.actor, event.action, event.target, event.details
    ('dashboard:ana', 'customer.erase', 'c1', {'keys_removed': 4})
    >>> len(event.audit_id)
    32
    """
    at = at or datetime.now(UTC)
    nonce = os.urandom(8).hex()  # two identical actions in one microsecond are two records
    return AuditEvent(
        audit_id=deterministic_id("audit", actor, action, target or "", at.isoformat(), nonce),
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=details,
    )


def audit_output(event: AuditEvent) -> Output:
    """The ``crm.audit`` record of an audit event, keyed by its target (or action)."""
    from crmstream.schemas import encode

    key = (event.target or event.action).encode()
    return Output(topics.AUDIT, key, encode(event))


def cli_actor() -> str:
    """Who runs a command: ``cli:<login name>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


class KafkaOutputs:
    """Sends outputs with a kafka-python producer, created on first use (tools and the
    dashboard, which have no Faust producer). :meth:`send` returns once the broker has
    acknowledged every record."""

    def __init__(self, bootstrap: list[str], **config: Any) -> None:
        self.bootstrap = bootstrap
        self.config = config  # kafka-python options: security (see credentials)
        self._publisher = None

    def _send(self, outputs: Sequence[Output]) -> None:
        from crmstream.streams.tools.publisher import Publisher

        if self._publisher is None:
            self._publisher = Publisher(self.bootstrap, **self.config)
        for output in outputs:
            self._publisher.send(output.topic, output.value or b"", output.key, output.headers)
        self._publisher.flush()

    async def send(self, outputs: Sequence[Output]) -> None:
        await asyncio.to_thread(self._send, outputs)

    def send_now(self, outputs: Sequence[Output]) -> None:
        """:meth:`send`, blocking (for commands)."""
        self._send(outputs)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
