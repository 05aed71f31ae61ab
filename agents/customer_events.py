"""Reads ``crm.purchases``, ``crm.chats``, ``crm.feedback`` and ``crm.customers``: one agent.

A customer's purchases, messages and feedback of a batch are folded together, in offset
order per partition, by :func:`crmstream.models.events.apply_event`: profiles, value
tiers (``crm.tier-changes``), propensity, segments, unusual purchases, sentiment, intent
and alerts (``crm.alerts``). The partition's models then learn each event once (see
:mod:`crmstream.streams.replicas`).
"""

from __future__ import annotations

import faust

from crmstream.streams.ingest import input_agent
from crmstream.streams.runtime import Runtime


def register(app: faust.App, runtime: Runtime) -> None:
    """Define the customer-events agent on ``app``."""
    input_agent(app, runtime)
