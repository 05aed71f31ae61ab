"""Synthetic shop traffic for the demo and benchmarks.

Customers differ in how often they buy and how much they spend (log-normal), so a few
become platinum while most stay bronze. Besides purchases they chat with support and
leave feedback; about one customer in ten is unhappy and writes accordingly, which is
what the alerts are for. A small share of events is malformed or re-sent, to show
dead-lettering and de-duplication at work.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import accumulate

import msgspec

from crmstream.schemas import ChatMessage, Feedback, Purchase
from crmstream.streams import topics

HAPPY_LINES = (
    "Thanks, the delivery was really quick!",
    "Great product, I love it",
    "Does this jacket come in blue?",
    "Is the large size in stock?",
    "Where is my parcel? The tracking has not updated since Monday",
    "Perfect, thank you for the help",
)
UNHAPPY_LINES = (
    "This is the third time my order is late. Terrible service.",
    "The item arrived broken and I am really disappointed",
    "I want a refund, this is awful",
    "Nobody answers my emails, this is unacceptable",
    "Please cancel my subscription",
    "Worst shopping experience ever, I hate it",
)
AGENT_LINES = (
    "Sorry to hear that, let me check your order",
    "Thanks for reaching out! How can I help?",
    "I have escalated this to our logistics team",
)
HAPPY_REVIEWS = ("Fresh and crisp, arrived on time", "Good value, will buy again", "Works well")
UNHAPPY_REVIEWS = ("Arrived smashed, never again", "Stale and overpriced", "Broke after a day")


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
    unusual_share : float
        Fraction of purchases 30 to 100 times the customer's usual basket (the anomaly
        model should flag them).
    """

    def __init__(
        self,
        customers: int = 2000,
        seed: int = 1,
        invalid_share: float = 0.01,
        duplicate_share: float = 0.01,
        chat_share: float = 0.3,
        feedback_share: float = 0.05,
        unhappy_share: float = 0.1,
        unusual_share: float = 0.002,
    ) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"cust-{i:06d}" for i in range(customers)]
        self._indices = range(customers)
        self._cumulative = list(accumulate(self.rng.paretovariate(1.5) for _ in range(customers)))
        self.basket = [self.rng.lognormvariate(3.3, 0.8) for _ in range(customers)]
        self.unhappy = {c for c in self.customers if self.rng.random() < unhappy_share}
        self.invalid_share = invalid_share
        self.duplicate_share = duplicate_share
        self.chat_share = chat_share
        self.feedback_share = feedback_share
        self.unusual_share = unusual_share
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
                kind = self.rng.random()
                if kind < self.chat_share:
                    event = self._chat()
                elif kind < self.chat_share + self.feedback_share:
                    event = self._feedback()
                else:
                    event = self._purchase()
                if len(self._recent) < 1000:
                    self._recent.append(event)
                else:
                    self._recent[self.rng.randrange(1000)] = event
                yield event

    def _customer(self) -> tuple[int, str]:
        index = self.rng.choices(self._indices, cum_weights=self._cumulative)[0]
        return index, self.customers[index]

    def _event_id(self) -> str:
        self._sequence += 1
        return f"demo-{self._sequence}-{self.rng.getrandbits(32):08x}"

    def _chat(self) -> Event:
        _, customer = self._customer()
        unhappy = customer in self.unhappy
        sender = "customer" if self.rng.random() < 0.7 else "agent"
        texts = AGENT_LINES if sender == "agent" else UNHAPPY_LINES if unhappy else HAPPY_LINES
        message = ChatMessage(
            event_id=self._event_id(),
            customer_id=customer,
            occurred_at=datetime.now(UTC),
            conversation_id=f"conv-{customer}",
            sender=sender,
            text=self.rng.choice(texts),
        )
        return Event(topics.CHATS, customer.encode(), msgspec.json.encode(message))

    def _feedback(self) -> Event:
        _, customer = self._customer()
        unhappy = customer in self.unhappy
        rating = self.rng.choice((1, 2, 2, 3)) if unhappy else self.rng.choice((3, 4, 5, 5))
        texts = UNHAPPY_REVIEWS if rating <= 2 else HAPPY_REVIEWS
        feedback = Feedback(
            event_id=self._event_id(),
            customer_id=customer,
            occurred_at=datetime.now(UTC),
            rating=rating,
            nps=min(10, max(0, rating * 2 + self.rng.choice((-1, 0, 0, 1)))),
            text=self.rng.choice(texts),
        )
        return Event(topics.FEEDBACK, customer.encode(), msgspec.json.encode(feedback))

    def _purchase(self) -> Event:
        index, customer = self._customer()
        amount = round(self.basket[index] * self.rng.lognormvariate(0, 0.4), 2)
        if self.rng.random() < self.unusual_share:
            amount = round(amount * self.rng.uniform(30, 100), 2)  # a bulk order, or fraud
        margin = self.rng.uniform(0.15, 0.6)
        purchase = Purchase(
            event_id=self._event_id(),
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
