"""The topic catalogue: every topic crmstream reads or writes, by name."""

from __future__ import annotations

from crmstream.schemas import (
    Alert,
    AudienceChange,
    AuditEvent,
    ChatMessage,
    CustomerDetails,
    DeadLetterRecord,
    Erasure,
    Feedback,
    Purchase,
    TierChange,
    Trigger,
)

PURCHASES = "crm.purchases"
CHATS = "crm.chats"
FEEDBACK = "crm.feedback"
CUSTOMERS = "crm.customers"
ALERTS = "crm.alerts"
TIER_CHANGES = "crm.tier-changes"
TRIGGERS = "crm.triggers"
AUDIENCES = "crm.audiences"
DEADLETTER = "crm.deadletter"
ERASURES = "crm.erasures"
AUDIT = "crm.audit"

#: Topics applications publish to, keyed by ``customer_id``.
INPUTS = (PURCHASES, CHATS, FEEDBACK, CUSTOMERS)
#: Topics crmstream publishes to.
OUTPUTS = (ALERTS, TIER_CHANGES, TRIGGERS, AUDIENCES, DEADLETTER, ERASURES, AUDIT)
ALL = INPUTS + OUTPUTS

#: The record type each input topic carries (what the worker decodes and validates).
INPUT_TYPES = {
    PURCHASES: Purchase,
    CHATS: ChatMessage,
    FEEDBACK: Feedback,
    CUSTOMERS: CustomerDetails,
}
#: The record type each output topic carries. Dead letters carry the original bytes, with
#: the reason in headers; :class:`DeadLetterRecord` is how tools present them.
OUTPUT_TYPES = {
    ALERTS: Alert,
    TIER_CHANGES: TierChange,
    TRIGGERS: Trigger,
    AUDIENCES: AudienceChange,
    DEADLETTER: DeadLetterRecord,
    ERASURES: Erasure,
    AUDIT: AuditEvent,
}
