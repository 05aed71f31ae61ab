"""Model quality as the workers measure it: read from the models' checkpoints in Redis.

Each partition's models are measured prequentially (every prediction is made before the
model learns from the event it predicts) and checkpointed with the models, so what this
module reports is exactly what the workers last committed: no worker needs to be asked,
and a stopped deployment can still be inspected. ``crmstream models`` prints it.
"""

from __future__ import annotations

import pickle
from typing import Any

from crmstream.streams.profiles import ProfileStore
from crmstream.streams.replicas import checkpoint_key

#: Names of the replica sets the workers checkpoint.
PURCHASES, CONVERSATIONS = "purchases", "conversations"


def purchase_quality(state: dict[str, Any]) -> dict[str, Any]:
    """What a ``purchases`` checkpoint says about its models."""
    models = state["models"]
    anomaly = models["anomaly"]
    return {
        "learned": state["learned"],
        "propensity": {
            "horizon_days": models["propensity"].horizon_days,
            **models["propensity"].quality(),
        },
        "segments": models["segments"].describe(),
        "anomaly": {
            "purchases": anomaly.seen,
            "flagged": anomaly.flagged,
            "rate": round(anomaly.rate(), 4),
            "threshold": anomaly.threshold,
            "warming_up": anomaly.seen < anomaly.warmup,
        },
    }


def conversation_quality(state: dict[str, Any]) -> dict[str, Any]:
    """What a ``conversations`` checkpoint says about its models."""
    models = state["models"]
    return {
        "learned": state["learned"],
        "sentiment_ratings_learned": models["sentiment"].n_learned,
        "intent_labels_learned": models["intent"].n_learned,
    }


async def read_quality(store: ProfileStore, partitions: int) -> dict[str, dict[int, Any]]:
    """The quality of every checkpointed replica of partitions ``0 .. partitions - 1``.

    Checkpoints are pickles: Redis must be trusted storage (as for the workers).
    """
    report: dict[str, dict[int, Any]] = {}
    for name, describe in ((PURCHASES, purchase_quality), (CONVERSATIONS, conversation_quality)):
        keys = [checkpoint_key(name, p) for p in range(partitions)]
        blobs = await store.raw_client.mget(keys) if keys else []
        report[name] = {
            p: describe(pickle.loads(blob)) for p, blob in enumerate(blobs) if blob is not None
        }
    return report
