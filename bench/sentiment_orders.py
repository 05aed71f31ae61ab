"""The adapted sentiment model against VADER alone, across training orders and sources.

For each source of rated review text (``crmstream datasets sentiment --source ...``:
``vader-movies``, ``vader-amazon``, ``fine-food``), the model learns the source's train
part in each order of ``crmstream evaluate sentiment --order`` (given, shuffled, sorted:
every positive text first, runs: alternating runs of 1,000, skewed: a first half 95%
positive) and is scored, without learning, on the test part of every source: its own
(held-out reviews, or products for fine-food) and the two others. Nothing is tuned on
these test parts.

It prints a Markdown table (macro F1 of VADER and of the adapted model, the difference,
the adapted model's negative recall and its earned weight) and the worst difference, and
writes every report to ``bench/out/sentiment_orders.json``.

    python bench/sentiment_orders.py [--sources vader-movies,vader-amazon,fine-food]
        [--orders given,shuffled,sorted,runs,skewed] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from crmstream.models.sentiment import SentimentModel
from crmstream.streams.datasets.reviews import sentiment_datasets
from crmstream.streams.evaluation.sentiment import ORDERS, Example, evaluate_sentiment

SOURCES = ("vader-movies", "vader-amazon", "fine-food")
OUT = Path(__file__).parent / "out" / "sentiment_orders.json"


def examples(frame) -> list[Example]:
    labels = frame["label"] == "positive"
    return [Example(str(t), bool(p)) for t, p in zip(frame["text"], labels, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled and skewed orders")
    parser.add_argument("--orders", default=",".join(ORDERS))
    args = parser.parse_args()
    sources = args.sources.split(",")
    parts = {}
    for source in sources:
        train, test = sentiment_datasets(source)  # type: ignore[arg-type]
        parts[source] = (examples(train), examples(test))
    started = time.perf_counter()
    rows = []
    print(
        "| trained on (n) | order | tested on | n test | VADER F1 | adapted F1 | Δ "
        "| neg. recall VADER → adapted | weight |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for trained_on in sources:
        for order in args.orders.split(","):
            model = SentimentModel()
            train = parts[trained_on][0]
            for tested_on in [trained_on] + [s for s in sources if s != trained_on]:
                # the model learns the train part once, then is only scored
                report = evaluate_sentiment(
                    train, parts[tested_on][1], model=model, order=order, seed=args.seed
                )
                report["n_train"], train = len(parts[trained_on][0]), []
                vader, adapted = report["vader"], report["adapted"]
                delta = adapted["macro_f1"] - vader["macro_f1"]
                rows.append(
                    {"trained_on": trained_on, "tested_on": tested_on, **report, "delta": delta}
                )
                print(
                    f"| {trained_on} ({report['n_train']}) | {order} | {tested_on} | "
                    f"{report['n_test']} | {vader['macro_f1']:.3f} | {adapted['macro_f1']:.3f} | "
                    f"{delta:+.3f} | {vader['recall']['negative']:.2f} → "
                    f"{adapted['recall']['negative']:.2f} | {report['weight']} |",
                    flush=True,
                )
    worst = min(rows, key=lambda row: row["delta"])
    print(
        f"\nworst: {worst['delta']:+.3f} macro F1 ({worst['trained_on']}, {worst['order']} "
        f"order, tested on {worst['tested_on']}); {time.perf_counter() - started:.0f} s"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
