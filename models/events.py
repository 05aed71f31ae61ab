"""One input event applied to a customer: the pure fold the worker calls for every event.

``apply_event(profile, event, ...)`` returns the customer's new profile and the records
the event causes (tier changes and alerts). It is a function of its arguments only, so an
output is a pure function of its event and of the state the event was applied to: a
retry on the same state sends the same record under the same id.

Scoring with the partition's shared models happens here, before they learn (prequential);
learning happens after the batch's profiles are written (see
:mod:`crmstream.models.purchase_models` and :mod:`crmstream.models.conversations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from crmstream.models import recommend, traits
from crmstream.models.alerts import AlertPolicy, on_feedback, on_message, on_unusual_purchase
from crmstream.models.contact import ProtectedDetails
from crmstream.models.conversations import MessageScores
from crmstream.models.customer_state import CHAT, FEEDBACK, Retention, marked
from crmstream.models.history import HistoryLimits, MessageEntry, remember
from crmstream.models.money import Currencies
from crmstream.models.profile import (
    Profile,
    apply_chat,
    apply_customer,
    apply_feedback,
    apply_purchase,
)
from crmstream.models.purchase_models import PurchaseModels, score_purchase
from crmstream.models.recommend import DEFAULT_PARAMS, EMPTY_VIEW, ItemView, RecommendParams
from crmstream.models.redaction import redact
from crmstream.models.rules import RuleSet, event_view, fire
from crmstream.models.tiers import TierPolicy
from crmstream.schemas.inputs import ChatMessage, Feedback, Purchase
from crmstream.schemas.outputs import Alert, AudienceChange, TierChange, Trigger

Event = Purchase | ChatMessage | Feedback | ProtectedDetails
#: Forget nothing of a customer's model state (offline use and tests).
KEEP_ALL = Retention()
Output = TierChange | Alert | Trigger | AudienceChange
#: The default history limits (see :class:`HistoryLimits`).
DEFAULT_HISTORY = HistoryLimits()


@dataclass(frozen=True)
class Policies:
    """The configured business rules an event is applied with; ``rules`` are the
    marketing rules (:mod:`crmstream.models.rules`), if a rule file is configured;
    ``recommend`` how recommendations are learned and scored (None: not at all)."""

    tiers: TierPolicy
    alerts: AlertPolicy
    currencies: Currencies
    rules: RuleSet | None = None
    history: HistoryLimits = DEFAULT_HISTORY
    recommend: RecommendParams | None = DEFAULT_PARAMS

    @property
    def scores_recommendations(self) -> bool:
        """Whether the fold scores recommendations at each purchase with items: only when
        a rule reads ``next_best_offer``. Otherwise readers score them when asked
        (:meth:`crmstream.streams.items.ItemStore.recommend`), which costs the worker
        nothing per purchase."""
        rules = self.rules
        return self.recommend is not None and rules is not None and rules.reads_recommendations


def apply_event(
    profile: Profile,
    event: Event,
    offset: int,
    policies: Policies,
    purchase_models: PurchaseModels,
    scores: MessageScores | None = None,
    retention: Retention = KEEP_ALL,
    items: ItemView = EMPTY_VIEW,
) -> tuple[Profile, list[Output]]:
    """Apply one event to a customer's profile; return the new profile and its outputs.

    ``offset`` is the event's position in its partition; ``purchase_models`` are the
    partition's (a purchase is scored with them); ``scores`` are a customer chat
    message's sentiment and intent (scored once per message, before the batch is folded);
    ``retention`` says what the customer's model state may forget; ``items`` is what the
    shared item statistics say of the batch's purchased items (a purchase with items is
    remembered and the customer's recommendations scored with it).

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> from crmstream.models.tiers import TierPolicy
    >>> at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    >>> policies = Policies(TierPolicy(), AlertPolicy(), Currencies("USD", {}))
    >>> buy = Purchase(event_id="p1", customer_id="c1", occurred_at=at, amount=150.0)
    >>> profile, outputs = apply_event(Profile(customer_id="c1"), buy, 0, policies,
    ...                                PurchaseModels.create())
    >>> profile.tier, [o.to_tier for o in outputs], len(profile.model_state.snapshots)
    ('silver', ['silver'], 1)
    """
    if isinstance(event, ProtectedDetails):  # who the customer is: no scores, no outputs
        return apply_customer(profile, event), []
    if isinstance(event, Purchase):
        after, outputs, view = _purchase(
            profile, event, offset, policies, purchase_models, retention, items
        )
        said = None
    elif isinstance(event, ChatMessage):
        after = _mark(apply_chat(profile, event), CHAT, offset, retention)
        if event.sender != "customer":
            return after, []
        if scores is None:
            raise ValueError(f"chat message {event.event_id} was not scored")
        after, alerts = on_message(after, event, scores.sentiment, scores.intent, policies.alerts)
        negative = int(scores.sentiment <= policies.alerts.negative)
        after.activity = traits.record(
            after.activity, event.occurred_at, messages=1, negative_messages=negative
        )
        outputs = list(alerts)
        view = event_view(event, sentiment=scores.sentiment, intent=scores.intent)
        said = MessageEntry(
            at=event.occurred_at,
            event_id=event.event_id,
            sentiment=round(scores.sentiment, 3),
            intent=scores.intent,
            excerpt=redact(event.text)[: policies.history.excerpt]
            if policies.history.excerpt and policies.history.messages
            else "",
        )
    else:
        after = _mark(apply_feedback(profile, event), FEEDBACK, offset, retention)
        after, alerts = on_feedback(after, event, policies.alerts)
        low = int(event.rating is not None and event.rating <= policies.alerts.low_rating)
        after.activity = traits.record(
            after.activity, event.occurred_at, feedback=1, low_ratings=low
        )
        outputs = list(alerts)
        view = None
        said = None
    if said is not None or outputs:  # the customer's history: messages, alerts, tiers
        after = _remember(after, event, policies.history, said, outputs)
    if policies.rules is not None:
        after, triggers = fire(policies.rules, profile, after, event, view)
        outputs.extend(triggers)
    return after, outputs


def _remember(
    profile: Profile,
    event: Event,
    limits: HistoryLimits,
    message: MessageEntry | None,
    outputs: Sequence[Output],
) -> Profile:
    history = remember(profile.history, limits, event.occurred_at, message, outputs)
    return msgspec.structs.replace(profile, history=history)


def _mark(profile: Profile, kind: str, offset: int, retention: Retention) -> Profile:
    state = marked(profile.model_state, kind, offset, retention)
    return msgspec.structs.replace(profile, model_state=state)


def _purchase(
    before: Profile,
    purchase: Purchase,
    offset: int,
    policies: Policies,
    models: PurchaseModels,
    retention: Retention,
    items: ItemView,
) -> tuple[Profile, list[Output], dict[str, object] | None]:
    fx = policies.currencies
    amount = fx.to_base(purchase.amount, purchase.currency)
    cost = fx.to_base(purchase.cost or 0.0, purchase.currency)
    after, change = apply_purchase(before, purchase, policies.tiers, amount=amount, cost=cost)
    scored = score_purchase(models, before, after, purchase, amount, offset, retention)
    outputs: list[Output] = [change] if change is not None else []
    if scored.flagged:
        outputs.extend(
            on_unusual_purchase(
                before, purchase, amount, scored.anomaly, models.anomaly.threshold, policies.alerts
            )
        )
    new = scored.profile
    new.activity = traits.record(new.activity, purchase.occurred_at, orders=1, revenue=amount)
    params = policies.recommend
    if purchase.items and params is not None:
        at = purchase.occurred_at.timestamp()
        new.items = recommend.remember(new.items, [x.sku for x in purchase.items], at, params)
        scored = policies.scores_recommendations
        new.recommendations = recommend.recommend(new.items, items, at, params) if scored else []
    view = event_view(purchase, amount=amount, cost=cost) if policies.rules is not None else None
    return new, outputs, view
