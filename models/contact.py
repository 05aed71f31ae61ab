"""Customers' names and contact details, kept so that they can be matched but not read.

A :class:`~crmstream.schemas.inputs.CustomerDetails` record (``crm.customers``) is turned
into :class:`ProtectedDetails` as soon as it is decoded, before anything is stored:

* ``name``, ``email`` and ``phone`` become keyed hashes (HMAC-SHA256 of the normalised
  value, hex): the same e-mail address always gives the same hash, so records can be
  matched, but the address cannot be recovered without the key;
* when an encryption key is configured, each is also sealed with AES-GCM (a random
  96-bit nonce per value; the customer id and the field are the associated data, so a
  sealed value cannot be moved to another customer or field): only a holder of the key
  (the dashboard, for an authenticated user) can read it;
* consent and external ids are kept as given.

:func:`apply_details` folds the protected record into the customer's profile: contact
fields of a newer record replace older ones; consent is kept per channel, the latest
answer winning.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crmstream.schemas.inputs import Consent, CustomerDetails

#: The contact fields that are hashed (and sealed when a key is configured).
CONTACT_FIELDS = ("name", "email", "phone")


def normalise(kind: str, value: str) -> str:
    """The form of a contact value that is hashed: e-mail addresses lowercased, phone
    numbers reduced to their digits (and a leading ``+``), names case-folded with single
    spaces.

    Examples
    --------
    >>> normalise("email", " Ann.Lee@Example.COM "), normalise("phone", "+44 (20) 7946-0958")
    ('ann.lee@example.com', '+442079460958')
    >>> normalise("name", "  Ann   LEE ")
    'ann lee'
    """
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        digits = "".join(c for c in value if c.isdigit())
        return f"+{digits}" if value.startswith("+") else digits
    return " ".join(value.casefold().split())


@dataclass(frozen=True)
class ContactKeys:
    """The keys that protect contact details: ``hmac_key`` for the hashes, and the AES key
    (16, 24 or 32 bytes) for sealed copies, if any.

    Examples
    --------
    >>> keys = ContactKeys(b"secret", bytes(32))
    >>> keys.digest("email", "Ann.Lee@example.com") == keys.digest("email", "ann.lee@example.com")
    True
    >>> sealed = keys.seal("c1", "email", "ann.lee@example.com")
    >>> "ann" in sealed, keys.open("c1", "email", sealed)
    (False, 'ann.lee@example.com')
    >>> ContactKeys(b"secret").seal("c1", "email", "ann.lee@example.com") is None
    True
    """

    hmac_key: bytes
    encryption_key: bytes | None = None
    _aead: AESGCM | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.encryption_key is not None:
            object.__setattr__(self, "_aead", AESGCM(self.encryption_key))

    @property
    def can_seal(self) -> bool:
        """Whether an encryption key is configured."""
        return self._aead is not None

    def digest(self, kind: str, value: str) -> str:
        """The keyed hash of a contact value of ``kind`` (name, email, phone, or ``id``)."""
        message = f"{kind}:{normalise(kind, value) if kind != 'id' else value}".encode()
        return hmac.digest(self.hmac_key, message, hashlib.sha256).hex()

    def seal(self, customer_id: str, kind: str, value: str) -> str | None:
        """``value`` encrypted for ``customer_id``'s ``kind`` field (URL-safe base64 of the
        nonce and the ciphertext), or ``None`` without an encryption key."""
        if self._aead is None:
            return None
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), _associated(customer_id, kind))
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, customer_id: str, kind: str, sealed: str) -> str:
        """The value :meth:`seal` sealed; raises ``ValueError`` without the key that sealed
        it, or if it was altered or moved."""
        if self._aead is None:
            raise ValueError("no encryption key is configured")
        raw = base64.urlsafe_b64decode(sealed)
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], _associated(customer_id, kind))
        except Exception as exc:  # cryptography's InvalidTag: wrong key, altered or moved
            raise ValueError("the sealed value does not open with this key") from exc
        return plain.decode()


def _associated(customer_id: str, kind: str) -> bytes:
    return f"crmstream:{customer_id}:{kind}".encode()


class ProtectedDetails(msgspec.Struct, frozen=True, kw_only=True):
    """A ``crm.customers`` record as the worker keeps it: hashes and sealed copies in
    place of the name, e-mail address and phone number (see the module)."""

    event_id: str
    customer_id: str
    occurred_at: datetime
    hashes: dict[str, str] = {}
    sealed: dict[str, str] = {}
    country: str | None = None
    consent: dict[str, Consent] = {}
    external_ids: dict[str, str] = {}


class Contact(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a profile keeps of a customer's identity: per contact field its keyed hash
    and, when an encryption key was configured, its sealed copy; country and external ids
    as given; ``updated_at``, the time of the record they come from."""

    hashes: dict[str, str] = {}
    sealed: dict[str, str] = {}
    country: str | None = None
    external_ids: dict[str, str] = {}
    updated_at: datetime | None = None


def protect(details: CustomerDetails, keys: ContactKeys) -> ProtectedDetails:
    """Hash (and seal, with a key) the contact fields of a record; nothing else of them
    is kept.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    >>> record = CustomerDetails(event_id="u1", customer_id="c1", occurred_at=at,
    ...                          email="ann.lee@example.com", country="GB")
    >>> protected = protect(record, ContactKeys(b"secret"))
    >>> sorted(protected.hashes), protected.sealed, protected.country
    (['email'], {}, 'GB')
    >>> "ann" in msgspec.json.encode(protected).decode()
    False
    """
    hashes = {}
    sealed = {}
    for kind in CONTACT_FIELDS:
        value = getattr(details, kind)
        if value is None:
            continue
        hashes[kind] = keys.digest(kind, value)
        copy = keys.seal(details.customer_id, kind, value)
        if copy is not None:
            sealed[kind] = copy
    return ProtectedDetails(
        event_id=details.event_id,
        customer_id=details.customer_id,
        occurred_at=details.occurred_at,
        hashes=hashes,
        sealed=sealed,
        country=details.country,
        consent=dict(details.consent or {}),
        external_ids=dict(details.external_ids or {}),
    )


def merge_consent(current: dict[str, Consent], given: dict[str, Consent]) -> dict[str, Consent]:
    """Each channel's latest answer (an answer older than the one kept is ignored).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> day = lambda d: datetime(2026, 5, d, tzinfo=timezone.utc)
    >>> kept = {"email": Consent(granted=True, at=day(2), source="form")}
    >>> older = {"email": Consent(granted=False, at=day(1), source="import")}
    >>> merge_consent(kept, older)["email"].granted
    True
    >>> newer = {"email": Consent(granted=False, at=day(3), source="unsubscribe")}
    >>> merge_consent(kept, newer)["email"].source
    'unsubscribe'
    """
    merged = dict(current)
    for channel, answer in given.items():
        known = merged.get(channel)
        if known is None or answer.at >= known.at:
            merged[channel] = answer
    return merged


def apply_details(contact: Contact | None, details: ProtectedDetails) -> Contact:
    """A customer's contact after a ``crm.customers`` record: the fields it carries
    replace those of older records (a record older than the kept contact changes
    nothing); a field's sealed copy goes with its hash (none when the record had none).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    >>> first = ProtectedDetails(event_id="u1", customer_id="c1", occurred_at=at,
    ...                          hashes={"email": "aa", "phone": "bb"}, country="GB")
    >>> second = msgspec.structs.replace(first, event_id="u2", hashes={"email": "cc"},
    ...                                  country=None)
    >>> contact = apply_details(apply_details(None, first), second)
    >>> contact.hashes, contact.country
    ({'email': 'cc', 'phone': 'bb'}, 'GB')
    """
    contact = contact or Contact()
    if contact.updated_at is not None and details.occurred_at < contact.updated_at:
        return contact
    hashes = {**contact.hashes, **details.hashes}
    sealed = {k: v for k, v in contact.sealed.items() if k not in details.hashes}
    sealed.update(details.sealed)
    return Contact(
        hashes=hashes,
        sealed=sealed,
        country=details.country if details.country is not None else contact.country,
        external_ids={**contact.external_ids, **details.external_ids},
        updated_at=details.occurred_at,
    )
