"""What the customer history (models/history.py) costs per event, in-process.

Prints µs per customer chat message folded by ``apply_event`` with the default history
limits and with history off; the size of a full history and what encoding and decoding it
costs, which the worker no longer pays per customer and batch (it appends the entries a
batch adds to lists and never reads them back, see streams/profiles.py); and the cost of
the entries' encoding for the commit script, per message.

    .venv/bin/python bench/history_cost.py
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec

from crmstream.models.alerts import AlertPolicy
from crmstream.models.conversations import MessageScores
from crmstream.models.customer_state import CHAT, Retention
from crmstream.models.events import Policies, apply_event
from crmstream.models.history import History, HistoryLimits
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.tiers import TierPolicy
from crmstream.schemas.inputs import ChatMessage
from crmstream.streams.profiles import DEFAULT_HISTORY, _history_args

T0 = datetime(2026, 6, 1, tzinfo=UTC)
N = 20000
TEXT = "The parcel arrived late and the box was damaged, can you help me with a refund?"


def messages(n: int) -> list[ChatMessage]:
    return [
        ChatMessage(
            event_id=f"m{i}",
            customer_id="c1",
            occurred_at=T0 + timedelta(minutes=i),
            conversation_id="k",
            sender="customer",
            text=TEXT,
        )
        for i in range(n)
    ]


def fold_cost(limits: HistoryLimits, events: list[ChatMessage]) -> tuple[float, Profile]:
    rules = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}), history=limits)
    models = PurchaseModels.create()
    scores = MessageScores(sentiment=0.2, intent="refund")
    # As after a checkpoint: the customer's chat marks are forgotten, so only the fold counts.
    retention = Retention(learned={CHAT: 2**62})
    best = float("inf")
    for _ in range(3):
        profile = Profile(customer_id="c1")
        start = time.perf_counter()
        for offset, event in enumerate(events):
            profile, _ = apply_event(profile, event, offset, rules, models, scores, retention)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6, profile


def best_of(call, rounds: int = 20000) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    events = messages(N)
    on, full = fold_cost(HistoryLimits(), events)
    off, bare = fold_cost(HistoryLimits(messages=0, alerts=0, tiers=0), events)
    del bare
    print(
        f"fold of a customer chat message: {on:.2f} µs with history, {off:.2f} µs without "
        f"(+{on - off:.2f} µs)"
    )
    encode, decode = msgspec.json.encode, msgspec.json.Decoder(History).decode
    raw = encode(full.history)
    codec = best_of(lambda: decode(encode(full.history)))
    print(
        f"a full history: {len(raw)} bytes of JSON, {codec:.2f} µs to encode and decode "
        "(no longer paid by the worker per customer and batch)"
    )
    one = History(messages=full.history.messages[-1:])
    append = best_of(lambda: _history_args(one, DEFAULT_HISTORY))
    print(f"encoding one new message for the commit script: {append:.2f} µs")


if __name__ == "__main__":
    main()
