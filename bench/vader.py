"""CPU cost of VADER per sentence: NLTK's analyzer against ``crmstream.models.vader``.

The text is the four human-rated corpora of the VADER paper (tweets, movie reviews, Amazon
reviews, NYT editorials: 23,703 sentences, from the ``vaderSentiment`` source distribution,
downloaded once by ``load_vader_corpora``). First every sentence is scored by both and the
scores compared: the run stops unless the fast scorer gives NLTK's, within 1e-9. Then each
repeat times, for one corpus after the other, one pass over it with each of (interleaved
so that drift on a shared machine hits them alike):

* ``nltk``: ``SentimentIntensityAnalyzer.polarity_scores`` (``load_vader()``);
* ``fast``: ``Vader.polarity_scores`` (``load_fast_vader()``), the same dict;
* ``fast c/p/n``: ``Vader.compound_pos_neg``, what ``text_features`` calls.

The garbage collector is off while a pass is timed (as ``timeit`` does). It prints µs per
sentence (median, min and max over the repeats) per corpus and over all of them, and
``nltk / fast``: the ratio of the medians, and the range of the ratios of the repeats.

    python bench/vader.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable

import nltk

from crmstream.models.sentiment import load_vader
from crmstream.models.vader import load_fast_vader
from crmstream.streams.datasets.reviews import VADER_CORPORA, load_vader_corpora

KEYS = ("neg", "neu", "pos", "compound")
TOLERANCE = 1e-9


def scorers() -> dict[str, Callable[[str], object]]:
    return {
        "nltk": load_vader().polarity_scores,
        "fast": load_fast_vader().polarity_scores,
        "fast c/p/n": load_fast_vader().compound_pos_neg,
    }


def largest_difference(texts: list[str]) -> float:
    """The largest absolute difference of any score between NLTK and the fast scorer."""
    nltk_scores, fast_scores = load_vader().polarity_scores, load_fast_vader().polarity_scores
    largest = 0.0
    for text in texts:
        expected, got = nltk_scores(text), fast_scores(text)
        largest = max(largest, *(abs(got[key] - expected[key]) for key in KEYS))
    return largest


def time_pass(score: Callable[[str], object], texts: list[str]) -> float:
    """µs per sentence of one pass over ``texts``."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for text in texts:
            score(text)
        elapsed_ns = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed_ns / len(texts) / 1000


def measure(corpora: dict[str, list[str]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """µs per sentence for every corpus (and ``all``) and scorer, one value per repeat."""
    methods = scorers()
    for score in methods.values():  # warm up: caches, allocator
        for texts in corpora.values():
            for text in texts[:500]:
                score(text)
    results = {name: {method: [] for method in methods} for name in [*corpora, "all"]}
    total = sum(len(texts) for texts in corpora.values())
    for _ in range(repeats):
        spent = dict.fromkeys(methods, 0.0)
        for name, texts in corpora.items():
            for method, score in methods.items():
                per_sentence = time_pass(score, texts)
                results[name][method].append(per_sentence)
                spent[method] += per_sentence * len(texts)
        for method in methods:
            results["all"][method].append(spent[method] / total)
    return results


def report(corpora: dict[str, list[str]], results: dict[str, dict[str, list[float]]]) -> None:
    sizes = {name: len(texts) for name, texts in corpora.items()}
    sizes["all"] = sum(sizes.values())
    header = (
        f"{'corpus':15s} {'sentences':>9s} │ {'nltk µs':>8s} {'min':>7s} {'max':>7s}"
        f" │ {'fast µs':>7s} {'min':>6s} {'max':>6s} │ {'c/p/n µs':>8s}"
        f" │ {'nltk/fast':>9s} {'(repeats)':>13s}"
    )
    print(header)
    print("─" * len(header))
    for name, runs in results.items():
        slow, fast, cpn = runs["nltk"], runs["fast"], runs["fast c/p/n"]
        ratios = [a / b for a, b in zip(slow, fast, strict=True)]
        print(
            f"{name:15s} {sizes[name]:9d}"
            f" │ {statistics.median(slow):8.2f} {min(slow):7.2f} {max(slow):7.2f}"
            f" │ {statistics.median(fast):7.2f} {min(fast):6.2f} {max(fast):6.2f}"
            f" │ {statistics.median(cpn):8.2f}"
            f" │ {statistics.median(slow) / statistics.median(fast):8.1f}x"
            f" {min(ratios):5.1f}–{max(ratios):4.1f}x"
        )
    print(
        "\nµs per sentence, median (min, max) of the repeats; c/p/n: Vader.compound_pos_neg."
        "\nnltk/fast: ratio of the medians, then the range of the per-repeat ratios."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed passes over each corpus")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    frame = load_vader_corpora()
    corpora = {name: frame.loc[frame["corpus"] == name, "text"].tolist() for name in VADER_CORPORA}
    texts = [text for texts in corpora.values() for text in texts]
    largest = largest_difference(texts)
    print(
        f"{len(texts)} sentences; largest absolute difference of any score between NLTK and "
        f"the fast scorer: {largest}"
    )
    if largest > TOLERANCE:
        raise SystemExit("the fast scorer does not give NLTK's scores: nothing to time")
    results = measure(corpora, args.repeats)
    print(
        f"VADER polarity scores, {args.repeats} interleaved repeats; "
        f"Python {platform.python_version()}, NLTK {nltk.__version__}\n"
    )
    report(corpora, results)


if __name__ == "__main__":
    main()
