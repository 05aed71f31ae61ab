"""Where crmstream keeps data of one customer in Redis: the registry erasure works from.

* Keys of their own, all under their hash tag ``crm:{<id>}:...``, listed by feature in
  :data:`CUSTOMER_KEYS`. **A feature that adds a per-customer key registers its builder
  here** (:func:`register_customer_keys`): ``crmstream erase`` removes exactly these, and
  the erasure test fails for a key under a customer's hash tag that no builder names.
* Entries in shared keys, removed by :mod:`crmstream.streams.erasure` one by one: the
  customer's id in :data:`~crmstream.streams.profiles.CUSTOMERS_KEY`, their propensity
  snapshots in the per-partition due indexes (:mod:`crmstream.streams.due`), their alerts'
  acknowledgements in :data:`ACKS_KEY` and :data:`ACKS_LOG_KEY` (found through
  :func:`acks_index_key`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from crmstream.streams.profiles import (
    history_keys,
    items_key,
    lesson_keys,
    profile_key,
    seen_key,
)

#: Acknowledgements of alerts, by alert id (see :mod:`crmstream.streams.web.acks`).
ACKS_KEY = "crm:alerts:acks"
#: The stream of acknowledgements (who, when, which alert).
ACKS_LOG_KEY = "crm:alerts:acks:log"

KeyBuilder = Callable[[str], Iterable[str]]


def acks_index_key(customer_id: str) -> str:
    """Redis key of the set of a customer's acknowledged alerts, as
    ``<alert id>|<acknowledgement log entry id>`` members."""
    return f"crm:{{{customer_id}}}:acks"


#: Every per-customer key, by feature: name → builder of the customer's keys.
CUSTOMER_KEYS: dict[str, KeyBuilder] = {
    "profile": lambda c: [profile_key(c)],
    "dedupe": lambda c: [seen_key(c)],
    "model lessons": lesson_keys,
    "history": history_keys,
    "recommendations": lambda c: [items_key(c)],
    "alert acknowledgements": lambda c: [acks_index_key(c)],
}


def register_customer_keys(name: str, builder: KeyBuilder) -> None:
    """Register a feature's per-customer keys, so that erasure removes them.

    ``builder(customer_id)`` returns the keys; each must be under the customer's hash tag,
    ``crm:{<customer_id>}:...`` (one slot on a cluster: erasure deletes them in one
    command).
    """
    CUSTOMER_KEYS[name] = builder


def customer_keys(customer_id: str) -> list[str]:
    """Every registered key of a customer.

    Examples
    --------
    >>> customer_keys("c1")[:2]
    ['crm:{c1}:profile', 'crm:{c1}:seen']
    >>> all(key.startswith("crm:{c1}:") for key in customer_keys("c1"))
    True
    """
    return [key for builder in CUSTOMER_KEYS.values() for key in builder(customer_id)]
