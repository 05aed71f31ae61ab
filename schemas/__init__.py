"""Event contracts: the records crmstream reads and writes, and their strict decoders.

Everything on a topic is JSON. One ``msgspec.Struct`` per event is the source of truth;
:mod:`crmstream.schemas.codec` turns bytes into validated records or raises
:class:`~crmstream.schemas.codec.InvalidEvent` with a machine-readable reason.
"""

from crmstream.schemas.codec import InvalidEvent, decode, encode
from crmstream.schemas.inputs import CUSTOMER_ID_PATTERN, Item, Purchase
from crmstream.schemas.outputs import TierChange, deterministic_id

__all__ = [
    "CUSTOMER_ID_PATTERN",
    "InvalidEvent",
    "Item",
    "Purchase",
    "TierChange",
    "decode",
    "deterministic_id",
    "encode",
]
