"""A partition's conversation models: sentiment and intent of what customers write.

The sentiment model (:mod:`crmstream.models.sentiment`) learns from rated feedback texts,
the intent model (:mod:`crmstream.models.intent`) from chats whose intent a person
confirmed. Both learn from the event alone, so a replay of an event teaches exactly what
the first pass did; they learn the text redacted (:mod:`crmstream.models.redaction`), so
their checkpoints keep no e-mail address, phone or card number.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from crmstream.models.intent import IntentModel
from crmstream.models.redaction import redact
from crmstream.models.sentiment import SentimentModel, rating_label
from crmstream.schemas.inputs import ChatMessage, Feedback, Intent


class MessageScores(msgspec.Struct, frozen=True):
    """What the models make of one customer message."""

    sentiment: float
    intent: Intent


@dataclass
class ConversationModels:
    """The conversation models of one partition.

    Examples
    --------
    >>> models = ConversationModels.create()
    >>> models.score("Please cancel my subscription, this is terrible")
    MessageScores(sentiment=-0.4215, intent='cancel')
    """

    sentiment: SentimentModel
    intent: IntentModel

    @classmethod
    def create(cls) -> ConversationModels:
        """Fresh models."""
        return cls(SentimentModel(), IntentModel())

    def score(self, text: str) -> MessageScores:
        """Sentiment and intent of a customer message (the models learn nothing)."""
        return MessageScores(self.sentiment.score(text), self.intent.predict(text))

    def learn_chat(self, message: ChatMessage) -> bool:
        """Learn a customer chat's confirmed intent; returns whether it taught anything."""
        if message.intent is None or message.sender != "customer":
            return False
        self.intent.learn(redact(message.text), message.intent)
        return True

    def learn_feedback(self, feedback: Feedback) -> bool:
        """Learn the sentiment of a rated feedback text; returns whether it taught anything."""
        label = rating_label(feedback.rating) if feedback.rating is not None else None
        if label is None or not feedback.text:
            return False
        self.sentiment.learn(redact(feedback.text), label)
        return True
