"""What the customer history (models/history.py) costs per event, in-process.

Prints µs per customer chat message folded by ``apply_event`` with the default history
limits and with history off, and µs to encode and decode a profile (what the worker does
once per customer and batch) with a full history and with none.

    .venv/bin/python bench/history_cost.py
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from crmstream.models.alerts import AlertPolicy
from crmstream.models.conversations import MessageScores
from crmstream.models.customer_state import CHAT, Retention
from crmstream.models.events import Policies, apply_event
from crmstream.models.history import HistoryLimits
from crmstream.models.money import Currencies
from crmstream.models.profile import Profile
from crmstream.models.purchase_models import PurchaseModels
from crmstream.models.tiers import TierPolicy
from crmstream.schemas.inputs import ChatMessage
from crmstream.streams.profiles import profile_from_fields, profile_to_fields

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


def codec_cost(profile: Profile, rounds: int = 20000) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            profile_from_fields(profile_to_fields(profile))
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    events = messages(N)
    on, full = fold_cost(HistoryLimits(), events)
    off, bare = fold_cost(HistoryLimits(messages=0, alerts=0, tiers=0), events)
    size_full = len(profile_to_fields(full)["profile"])
    size_bare = len(profile_to_fields(bare)["profile"])
    print(
        f"fold of a customer chat message: {on:.2f} µs with history, {off:.2f} µs without "
        f"(+{on - off:.2f} µs)"
    )
    full_codec, bare_codec = codec_cost(full), codec_cost(bare)
    print(
        f"profile encode+decode: {full_codec:.2f} µs with a full history ({size_full} bytes), "
        f"{bare_codec:.2f} µs without ({size_bare} bytes) (+{full_codec - bare_codec:.2f} µs "
        f"per customer and batch)"
    )


if __name__ == "__main__":
    main()
