"""Model quality as the workers measure it: read from the models' checkpoints in Redis.

Each partition's models are measured prequentially (every prediction is made before the
model learns from the event it predicts) and checkpointed with the models, so what this
module reports is what the workers last checkpointed: no worker needs to be asked, and a
stopped deployment can still be inspected. ``crmstream models`` prints it. Checkpoints
are authenticated (``CRM_CHECKPOINT_SECRET``) before they are read.
"""

from __future__ import annotations

from typing import Any

from crmstream.streams.checkpoints import CheckpointStore
from crmstream.streams.replicas import PartitionModels

#: Names of the model sets of a partition, as reported.
PURCHASES, CONVERSATIONS = "purchases", "conversations"


def purchase_quality(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint says about its purchase models."""
    models: PartitionModels = state["models"]
    purchases = models.purchases
    anomaly = purchases.anomaly
    segments = purchases.segments.describe()
    return {
        "learned": state["learned"],
        "propensity": {
            "horizon_days": purchases.propensity.horizon_days,
            **purchases.propensity.quality(),
            "customers": int(sum(s["customers"] for s in segments.values())),
        },
        "segments": segments,
        "anomaly": {
            "purchases": anomaly.seen,
            "flagged": anomaly.flagged,
            "rate": round(anomaly.rate(), 4),
            "threshold": anomaly.threshold,
            "warming_up": anomaly.seen < anomaly.warmup,
        },
    }


def conversation_quality(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint says about its conversation models."""
    models: PartitionModels = state["models"]
    return {
        "learned": state["learned"],
        "sentiment_ratings_learned": models.conversations.sentiment.n_learned,
        "sentiment_weight": models.conversations.sentiment.weight,
        "intent_labels_learned": models.conversations.intent.n_learned,
    }


async def read_quality(store: CheckpointStore, partitions: int) -> dict[str, dict[int, Any]]:
    """The quality of every checkpointed partition ``0 .. partitions - 1``."""
    states = await store.load(list(range(partitions)))
    return {
        PURCHASES: {p: purchase_quality(state) for p, state in sorted(states.items())},
        CONVERSATIONS: {p: conversation_quality(state) for p, state in sorted(states.items())},
    }
