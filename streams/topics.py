"""The topic catalogue: every topic crmstream reads or writes, by name."""

from __future__ import annotations

PURCHASES = "crm.purchases"
CHATS = "crm.chats"
FEEDBACK = "crm.feedback"
ALERTS = "crm.alerts"
TIER_CHANGES = "crm.tier-changes"
TRIGGERS = "crm.triggers"
DEADLETTER = "crm.deadletter"

#: Topics applications publish to, keyed by ``customer_id``.
INPUTS = (PURCHASES, CHATS, FEEDBACK)
#: Topics crmstream publishes to.
OUTPUTS = (ALERTS, TIER_CHANGES, TRIGGERS, DEADLETTER)
ALL = INPUTS + OUTPUTS
