"""What the propensity hazard costs per event: learning one label, scoring one purchase.

A purchase is scored once (its snapshot's horizon probability: one hazard per period of
the horizon, four for the default 90 days with 30-day periods) and, over its life, teaches
a few period labels (about five per purchase on CDNOW). Both are timed on a hazard trained
on 20,000 synthetic labels, with customers of 1 to 40 purchases, best of ``--repeat`` runs
in one process.

    python bench/hazard_cost.py [--module PATH] [--repeat 5]

``--module`` times another version of ``models/propensity.py`` (for instance the one
before a change, from ``git show``) instead of the installed one, so that a before/after
comparison runs the same harness, alternately, on the same machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from types import ModuleType


def load(path: str | None) -> ModuleType:
    if path is None:
        from crmstream.models import propensity

        return propensity
    spec = importlib.util.spec_from_file_location("propensity_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def customers(n: int, rng: random.Random) -> list[dict[str, float]]:
    out = []
    for _ in range(n):
        orders = rng.choice([1, 1, 1, 2, 3, 5, 8, 13, 40])
        tenure = 0.0 if orders == 1 else rng.uniform(5.0, 400.0)
        out.append(
            {
                "orders": float(orders),
                "mean_value": rng.uniform(5.0, 120.0),
                "tenure": tenure,
                "mean_gap": tenure / (orders - 1) if orders > 1 else 0.0,
                "sentiment": 0.0,
                "t": 30.0 * rng.randrange(12),
            }
        )
    return out


def measure(module: ModuleType, repeat: int) -> tuple[float, float]:
    rng = random.Random(7)
    model = module.PropensityModel(horizon_days=90.0)
    xs = customers(1000, rng)
    for i in range(20_000):
        model.hazard.learn_one(xs[i % 1000], rng.random() < 0.2)
    histories = [
        module.History(int(x["orders"]), x["mean_value"] * x["orders"], 0.0, x["tenure"])
        for x in xs
    ]
    learn, score = [], []
    for _ in range(repeat):
        began = time.perf_counter()
        for x in xs * 5:
            model.hazard.learn_one(x, False)
        learn.append((time.perf_counter() - began) / (5 * len(xs)))
        began = time.perf_counter()
        for history in histories * 5:
            model.predict_history(history, history.last)
        score.append((time.perf_counter() - began) / (5 * len(histories)))
    return min(learn) * 1e6, min(score) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", help="a propensity.py to time instead of the installed one")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    learn, score = measure(load(options.module), options.repeat)
    print(f"learning a label: {learn:.2f} µs; scoring a purchase (90 days): {score:.2f} µs")


if __name__ == "__main__":
    main()
