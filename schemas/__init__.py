"""Event contracts: the records crmstream reads and writes, and their strict decoders.

Everything on a topic is JSON. One ``msgspec.Struct`` per event is the source of truth;
:mod:`crmstream.schemas.codec` turns bytes into validated records or raises
:class:`~crmstream.schemas.codec.InvalidEvent` with a machine-readable reason. The JSON
Schema files in ``schemas/json/`` and ``schemas/asyncapi.yaml`` are generated from these
definitions (``make contracts``).
"""

from crmstream.schemas.codec import InvalidEvent, decode, encode
from crmstream.schemas.inputs import (
    CHANNELS,
    CUSTOMER_ID_PATTERN,
    ChatMessage,
    Consent,
    CustomerDetails,
    Feedback,
    InputEvent,
    Item,
    Purchase,
)
from crmstream.schemas.outputs import (
    Alert,
    AudienceChange,
    AuditEvent,
    DeadLetterReason,
    DeadLetterRecord,
    DeadLetterSource,
    Erasure,
    TierChange,
    Trigger,
    deterministic_id,
)

__all__ = [
    "CHANNELS",
    "CUSTOMER_ID_PATTERN",
    "Alert",
    "AudienceChange",
    "AuditEvent",
    "ChatMessage",
    "Consent",
    "CustomerDetails",
    "DeadLetterReason",
    "DeadLetterRecord",
    "DeadLetterSource",
    "Erasure",
    "Feedback",
    "InputEvent",
    "InvalidEvent",
    "Item",
    "Purchase",
    "TierChange",
    "Trigger",
    "decode",
    "deterministic_id",
    "encode",
]
