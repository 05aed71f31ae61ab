"""A worker records on ``crm.audit`` the rule-file changes it loads or refuses (its Faust
producer replaced by a recording sink, a real Redis for the rules status)."""

from __future__ import annotations

import msgspec
import pytest

from crmstream.schemas import AuditEvent
from crmstream.streams import topics
from tests.integration.conftest import make_app

pytestmark = pytest.mark.integration

FIRST = """
rules:
  - id: big
    on: purchase
    when: event.amount > 100.0
"""


async def test_rule_file_changes_are_audited(stack, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(FIRST)
    _, runtime, sink = make_app(stack, rules_file=str(path))
    runtime.worker_id = "w-1"
    assert await runtime.reload_rules() is False  # unchanged: nothing recorded
    path.write_text(FIRST.replace("100.0", "200.0"))
    assert await runtime.reload_rules() is True
    path.write_text(FIRST.replace("event.amount", "event.amout"))
    assert await runtime.reload_rules() is False
    assert await runtime.reload_rules() is False  # the same problem: recorded once
    audit = [msgspec.json.decode(o.value, type=AuditEvent) for o in sink.on(topics.AUDIT)]
    assert [(a.actor, a.action, a.target, a.details["outcome"]) for a in audit] == [
        ("worker:w-1", "rules.change", str(path), "loaded"),
        ("worker:w-1", "rules.change", str(path), "refused"),
    ]
    assert audit[0].details["rules"] == 1 and audit[0].details["version"]
    assert "amout" in str(audit[1].details["problem"])
    await runtime.profiles.close()
