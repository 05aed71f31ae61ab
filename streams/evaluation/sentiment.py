"""``crmstream evaluate sentiment``: VADER alone against the adapted model on labelled text.

Input files are JSON lines, each an object with ``text`` and either ``label``
(``"positive"`` or ``"negative"``) or ``rating`` (1–5 stars: 1–2 negative, 4–5 positive,
3 skipped). The adapted model learns the train file once, in file order, one text at a
time (or in another order, ``--order``, to test robustness to it), then both are
scored on the test file without learning.

A score above 0.05 predicts positive, below -0.05 negative; anything in between (VADER's
"neutral") is a prediction too, and always a wrong one: it is not skipped.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmstream.models.sentiment import NEUTRAL, SentimentModel, rating_label, vader_score

LABELS = ("negative", "positive")

#: Orders in which ``--order`` feeds the training texts to the model (see :func:`reorder`).
ORDERS = ("given", "shuffled", "sorted", "runs", "skewed")

#: Length of each one-class run of the ``runs`` order.
RUN_LENGTH = 1000

#: Share of the majority class in the first half of the ``skewed`` order.
SKEW = 0.95


class DataError(ValueError):
    """A labelled-text file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    text: str
    positive: bool


def parse_example(line: str, where: str) -> Example | None:
    """Parse one JSON line; None for a rating of 3 stars. ``where`` prefixes errors.

    Examples
    --------
    >>> parse_example('{"text": "great", "label": "positive"}', "f:1")
    Example(text='great', positive=True)
    >>> parse_example('{"text": "meh", "rating": 3}', "f:2") is None
    True
    >>> try:
    ...     parse_example('{"text": "bad", "rating": 9}', "f:3")
    ... except DataError as error:
    ...     print(error)
    f:3: 'rating' must be an integer from 1 to 5, got 9
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string")
    if "label" in record:
        label = record["label"]
        if label not in LABELS:
            raise DataError(f"{where}: 'label' must be 'positive' or 'negative', got {label!r}")
        return Example(text, label == "positive")
    if "rating" in record:
        rating = record["rating"]
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise DataError(f"{where}: 'rating' must be an integer from 1 to 5, got {rating!r}")
        positive = rating_label(rating)
        return None if positive is None else Example(text, positive)
    raise DataError(f"{where}: needs 'label' (positive|negative) or 'rating' (1-5)")


def read_examples(path: Path) -> list[Example]:
    """Read a JSON-lines file of labelled texts; blank lines and 3-star ratings are skipped."""
    examples = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    example = parse_example(line, f"{path}:{number}")
                    if example is not None:
                        examples.append(example)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not examples:
        raise DataError(f"{path}: no labelled texts")
    return examples


def reorder(examples: Sequence[Example], order: str, seed: int = 0) -> list[Example]:
    """The training texts in one of :data:`ORDERS`, to test robustness to the stream's order.

    ``given`` keeps the file order; ``shuffled`` is a random permutation (``seed``);
    ``sorted`` puts every positive text first, then every negative one (a good month, then
    a defective product); ``runs`` alternates runs of :data:`RUN_LENGTH` texts of one class,
    positive first; ``skewed`` makes the first half :data:`SKEW` positive (as far as there
    are positives), the second half the rest, each half shuffled. Within a class the file
    order is kept (except where shuffled), and no text is added or dropped.

    Examples
    --------
    >>> texts = [Example(str(i), i % 3 == 0) for i in range(6)]
    >>> [e.text for e in reorder(texts, "sorted")]
    ['0', '3', '1', '2', '4', '5']
    >>> sorted(e.text for e in reorder(texts, "shuffled")) == [e.text for e in texts]
    True
    >>> try:
    ...     reorder(texts, "backwards")
    ... except ValueError as error:
    ...     print(error)
    unknown order 'backwards'; expected one of given, shuffled, sorted, runs, skewed
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    rng = random.Random(seed)
    positives = [e for e in examples if e.positive]
    negatives = [e for e in examples if not e.positive]
    if order == "given":
        return list(examples)
    if order == "shuffled":
        shuffled = list(examples)
        rng.shuffle(shuffled)
        return shuffled
    if order == "sorted":
        return positives + negatives
    if order == "runs":
        runs: list[Example] = []
        start = 0
        while start < max(len(positives), len(negatives)):
            runs += positives[start : start + RUN_LENGTH] + negatives[start : start + RUN_LENGTH]
            start += RUN_LENGTH
        return runs
    half = len(examples) // 2
    majority = min(len(positives), round(SKEW * half))
    minority = min(len(negatives), half - majority)
    first = positives[:majority] + negatives[:minority]
    second = positives[majority:] + negatives[minority:]
    rng.shuffle(first)
    rng.shuffle(second)
    return first + second


def predict(score: float) -> str:
    """Turn a score into ``"positive"``, ``"negative"`` or ``"neutral"``.

    Examples
    --------
    >>> predict(0.3), predict(-0.06), predict(0.05)
    ('positive', 'negative', 'neutral')
    """
    if score > NEUTRAL:
        return "positive"
    if score < -NEUTRAL:
        return "negative"
    return "neutral"


def classification_metrics(truth: Sequence[bool], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy, recall per class and macro F1; a ``"neutral"`` prediction is always wrong.

    Examples
    --------
    >>> truth = [True, True, True, False, False]
    >>> said = ["positive", "positive", "neutral", "negative", "positive"]
    >>> m = classification_metrics(truth, said)
    >>> m["accuracy"], m["recall"]
    (0.6, {'negative': 0.5, 'positive': 0.6666666666666666})
    >>> round(m["macro_f1"], 4)  # positive: P 2/3 R 2/3; negative: P 1 R 1/2
    0.6667
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    actual = ["positive" if t else "negative" for t in truth]
    recall: dict[str, float] = {}
    f1 = []
    for label in LABELS:
        hits = sum(a == p == label for a, p in zip(actual, predicted, strict=True))
        relevant = actual.count(label)
        chosen = predicted.count(label)
        r = hits / relevant if relevant else 0.0
        p = hits / chosen if chosen else 0.0
        recall[label] = r
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    correct = sum(a == p for a, p in zip(actual, predicted, strict=True))
    return {
        "accuracy": correct / len(actual) if actual else 0.0,
        "macro_f1": sum(f1) / len(f1),
        "recall": recall,
    }


def _timed_scores(score: Callable[[str], float], texts: Sequence[str]) -> tuple[list[str], float]:
    start = time.perf_counter()
    predictions = [predict(score(text)) for text in texts]
    elapsed = time.perf_counter() - start
    return predictions, len(texts) / elapsed if elapsed > 0 else float("inf")


def evaluate_sentiment(
    train: Sequence[Example],
    test: Sequence[Example],
    model: SentimentModel | None = None,
    progress: Callable[[Iterable[Example], str], Iterable[Example]] | None = None,
    order: str = "given",
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``model`` (a new :class:`SentimentModel` by default) on ``train``, score ``test``.

    ``train`` is learned in ``order`` (see :func:`reorder`). Returns the report printed by
    ``--json``. ``progress`` may wrap the training examples (e.g. in a progress bar); it
    must yield them unchanged and in order.
    """
    model = SentimentModel() if model is None else model
    vader_score("warm up")  # loading the lexicon is a one-off cost, not per text
    ordered = reorder(train, order, seed)
    for example in progress(ordered, "learning") if progress else ordered:
        model.learn(example.text, example.positive)
    texts = [example.text for example in test]
    truth = [example.positive for example in test]
    vader_predictions, vader_rate = _timed_scores(vader_score, texts)
    adapted_predictions, adapted_rate = _timed_scores(model.score, texts)
    return {
        "vader": classification_metrics(truth, vader_predictions),
        "adapted": classification_metrics(truth, adapted_predictions),
        "texts_per_second": {"vader": round(vader_rate, 1), "adapted": round(adapted_rate, 1)},
        "n_train": len(train),
        "n_test": len(test),
        "order": order,
        "weight": model.weight,
    }


def render_report(report: dict[str, Any], train: Path, test: Path) -> Any:
    """The readable table of a report (a rich renderable)."""
    from rich.table import Table

    table = Table(
        title=f"sentiment: {report['n_train']} texts learned from {train.name} "
        f"({report['order']} order), {report['n_test']} tested from {test.name}",
        title_justify="left",
        caption="a neutral score (|score| <= 0.05) counts as wrong; the learned model's "
        f"weight in the blend: {report['weight']}",
        caption_justify="left",
    )
    table.add_column("metric")
    table.add_column("VADER", justify="right")
    table.add_column("adapted", justify="right")
    table.add_column("change", justify="right")
    vader, adapted = report["vader"], report["adapted"]
    rows = [
        ("accuracy", vader["accuracy"], adapted["accuracy"]),
        ("macro F1", vader["macro_f1"], adapted["macro_f1"]),
        ("recall negative", vader["recall"]["negative"], adapted["recall"]["negative"]),
        ("recall positive", vader["recall"]["positive"], adapted["recall"]["positive"]),
    ]
    for name, before, after in rows:
        table.add_row(name, f"{before:.3f}", f"{after:.3f}", f"{after - before:+.3f}")
    rates = report["texts_per_second"]
    table.add_row("texts/s", f"{rates['vader']:,.0f}", f"{rates['adapted']:,.0f}", "")
    return table


def run(
    train_path: Path, test_path: Path, as_json: bool, order: str = "given", seed: int = 0
) -> int:
    """Run the evaluation and print it; progress goes to standard error."""
    from rich.console import Console
    from rich.progress import track

    errors = Console(stderr=True)
    train = read_examples(train_path)
    test = read_examples(test_path)

    def progress(examples: Iterable[Example], what: str) -> Iterable[Example]:
        return track(
            examples,
            description=what,
            total=len(train),
            console=errors,
            transient=True,
            disable=not errors.is_terminal,
        )

    report = evaluate_sentiment(train, test, progress=progress, order=order, seed=seed)
    if as_json:
        print(json.dumps(report))
    else:
        Console().print(render_report(report, train_path, test_path))
    return 0
