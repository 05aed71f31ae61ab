"""Synthetic shop traffic for the demo and benchmarks.

Customers differ in how often they buy and how much they spend (log-normal), so a few
become platinum while most stay bronze; a small share of events is malformed or re-sent,
to show dead-lettering and de-duplication at work.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import accumulate

import msgspec

from crmstream.schemas import Purchase
from crmstream.streams import topics


class Event(msgspec.Struct, frozen=True):
    """One record to publish."""

    topic: str
    key: bytes | None
    value: bytes


class SyntheticShop:
    """An endless, reproducible stream of purchase events.

    Parameters
    ----------
    customers : int
        Number of distinct customers.
    seed : int
        Seed of the random generator (same seed, same stream).
    invalid_share, duplicate_share : float
        Fractions of events that are malformed, or re-sent copies of an earlier event.
    """

    def __init__(
        self,
        customers: int = 2000,
        seed: int = 1,
        invalid_share: float = 0.01,
        duplicate_share: float = 0.01,
    ) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"cust-{i:06d}" for i in range(customers)]
        self._indices = range(customers)
        self._cumulative = list(accumulate(self.rng.paretovariate(1.5) for _ in range(customers)))
        self.basket = [self.rng.lognormvariate(3.3, 0.8) for _ in range(customers)]
        self.invalid_share = invalid_share
        self.duplicate_share = duplicate_share
        self._recent: list[Event] = []
        self._sequence = 0

    def events(self) -> Iterator[Event]:
        """Yield events forever."""
        while True:
            roll = self.rng.random()
            if roll < self.invalid_share:
                yield self._invalid()
            elif roll < self.invalid_share + self.duplicate_share and self._recent:
                yield self.rng.choice(self._recent)
            else:
                event = self._purchase()
                if len(self._recent) < 1000:
                    self._recent.append(event)
                else:
                    self._recent[self.rng.randrange(1000)] = event
                yield event

    def _purchase(self) -> Event:
        index = self.rng.choices(self._indices, cum_weights=self._cumulative)[0]
        customer = self.customers[index]
        amount = round(self.basket[index] * self.rng.lognormvariate(0, 0.4), 2)
        margin = self.rng.uniform(0.15, 0.6)
        self._sequence += 1
        purchase = Purchase(
            event_id=f"demo-{self._sequence}-{self.rng.getrandbits(32):08x}",
            customer_id=customer,
            occurred_at=datetime.now(UTC),
            amount=amount,
            cost=round(amount * (1 - margin), 2),
            currency="USD",
            order_id=f"order-{self._sequence}",
        )
        return Event(topics.PURCHASES, customer.encode(), msgspec.json.encode(purchase))

    def _invalid(self) -> Event:
        customer = self.rng.choice(self.customers)
        now = datetime.now(UTC).isoformat()
        kind = self.rng.randrange(3)
        if kind == 0:
            value = b'{"event_id": "broken", "customer_id": "' + customer.encode() + b'", "amo'
        elif kind == 1:
            value = msgspec.json.encode(
                {"event_id": "neg", "customer_id": customer, "occurred_at": now, "amount": -5}
            )
        else:
            value = msgspec.json.encode(
                {"event_id": "bad-id", "customer_id": "not valid!", "occurred_at": now, "amount": 5}
            )
        return Event(topics.PURCHASES, customer.encode(), value)
