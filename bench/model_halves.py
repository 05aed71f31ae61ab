"""The propensity grid and the value comparison on each half of CDNOW's customers.

The models' defaults were chosen on the whole CDNOW history (the hazard's shape of the
elapsed time by prequential log loss, the spend shrinkage by how well it predicts the next
order value). This checks the claims on split families they were not chosen on: the
customers with an even id and those with an odd id, each replayed on its own (half the
purchases, a different population, and batch baselines refitted on it).

* ``propensity``: the grid of ``crmstream evaluate propensity --grid`` per half, and how
  often the online model is at or above the batch logistic regression;
* ``value``: the six splits of the README's value table per half, online against
  BG/NBD x Gamma-Gamma on Spearman and top-decile capture.

    python bench/model_halves.py [--what propensity,value]

About a minute for the propensity grids and two for the value splits on this 2-core
machine.
"""

from __future__ import annotations

import argparse
from datetime import date

from crmstream.streams.evaluation.propensity_grid import evaluate_grid, summary
from crmstream.streams.evaluation.value import evaluate_value
from crmstream.streams.tools.backfill import load_cdnow

VALUE_SPLITS = (
    (date(1997, 6, 30), 365),
    (date(1997, 9, 30), 273),
    (date(1997, 9, 30), 90),
    (date(1997, 12, 31), 180),
    (date(1997, 12, 31), 90),
    (date(1998, 3, 31), 90),
)


def halves():
    frame, _ = load_cdnow(None)
    number = frame["customer_id"].astype(str).str.extract(r"(\d+)$")[0].astype(int)
    for parity, name in ((0, "even ids"), (1, "odd ids")):
        yield name, frame[number % 2 == parity]


def propensity() -> None:
    print("| half | splits | online >= LR | mean margin | worst margin (split) |")
    print("|---|---|---|---|---|")
    for name, frame in halves():
        facts = summary(evaluate_grid(frame))
        print(
            f"| {name} | {facts['splits']} | {facts['online_at_least_lr']} | "
            f"{facts['mean_margin']:+.4f} | {facts['worst_margin']:+.4f} "
            f"({facts['worst_split']}) |"
        )


def value() -> None:
    print("| half | split | Spearman online / BG/NBD×GG | top-decile online / BG/NBD×GG |")
    print("|---|---|---|---|")
    for name, frame in halves():
        for end, horizon in VALUE_SPLITS:
            m = evaluate_value(frame, end, horizon).metrics
            online, classic = m["online"], m["bgnbd_gamma_gamma"]
            print(
                f"| {name} | {end}, {horizon} days | {online['spearman']:.4f} / "
                f"{classic['spearman']:.4f} | {online['top_decile_capture']:.4f} / "
                f"{classic['top_decile_capture']:.4f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="propensity,value")
    chosen = parser.parse_args().what.split(",")
    if "propensity" in chosen:
        propensity()
    if "value" in chosen:
        value()


if __name__ == "__main__":
    main()
