"""A logistic regression over hashed features whose weights are two flat arrays.

River's :class:`~river.linear_model.LogisticRegression` keeps its weights, and AdaGrad its
squared-gradient sums, in hash maps that grow with every hash bucket a text touches: on a
long-tailed stream they fill up to all ``n_features`` buckets, about 12 MB per model at
2^16 buckets, grown while the worker runs, and a few milliseconds to pickle at every
checkpoint. :class:`HashedLogisticRegression` keeps both in ``array('d')`` of
``n_features`` slots from the start (1 MB at 2^16), which pickles as two byte strings.
Features that are not bucket numbers (VADER's scores, by name) keep dictionary weights.
A pickle (a checkpoint) holds only the buckets in use while fewer than a third are, so a
young model's checkpoint stays small.

The arithmetic is River's, step for step: the log loss's gradient from River's own
``Log`` loss, the intercept moved by ``intercept_lr`` times it, then AdaGrad on each
feature. Only the order in which the dot product adds up its terms can differ: weights,
intercept and probabilities agree with River's within 1e-9 after 3,000 updates
(``tests/unit/test_hashed_regression.py``).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
from river import base, optim
from river.utils.math import sigmoid


class HashedLogisticRegression(base.Classifier):
    """Binary logistic regression trained by AdaGrad, its weights in flat arrays.

    Parameters
    ----------
    n_features : int
        Number of hash buckets: integer features in ``[0, n_features)`` are kept in the
        arrays; every other feature (a name) in a dictionary.
    lr : float
        AdaGrad's learning rate.
    intercept_lr : float
        Learning rate of the intercept (plain gradient steps, as River's).
    eps : float
        AdaGrad's smoothing term.

    Examples
    --------
    >>> model = HashedLogisticRegression(n_features=16)
    >>> for _ in range(50):
    ...     model.learn_one({3: 1.0, "vader": 0.5}, True)
    ...     model.learn_one({7: 1.0, "vader": -0.5}, False)
    >>> yes, no = model.predict_proba_one({3: 1.0}), model.predict_proba_one({7: 1.0})
    >>> yes[True] > 0.7 > 0.3 > no[True]
    True
    >>> len(model.weights), sorted(model.named)
    (16, ['vader'])
    """

    def __init__(
        self,
        n_features: int = 2**16,
        lr: float = 0.1,
        intercept_lr: float = 0.01,
        eps: float = 1e-8,
    ) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be at least 1, got {n_features}")
        self.n_features = n_features
        self.lr = lr
        self.intercept_lr = intercept_lr
        self.eps = eps
        self.weights = array("d", bytes(8 * n_features))
        self.g2 = array("d", bytes(8 * n_features))
        self.named: dict[Any, float] = {}
        self.named_g2: dict[Any, float] = {}
        self.intercept = 0.0
        self.n_iterations = 0
        self._loss = optim.losses.Log()

    @property
    def _multiclass(self) -> bool:
        return False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        weights = np.frombuffer(self.weights, dtype=np.float64)
        sums = np.frombuffer(self.g2, dtype=np.float64)
        used = np.flatnonzero((weights != 0.0) | (sums != 0.0))
        if 3 * used.size < self.n_features:  # 20 bytes a used bucket instead of 16 a bucket
            state["weights"] = (
                used.astype("<i4").tobytes(),
                weights[used].astype("<f8").tobytes(),
                sums[used].astype("<f8").tobytes(),
            )
            state["g2"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["weights"], tuple):  # only the buckets in use
            used, weights, sums = (
                np.frombuffer(raw, dtype=kind)
                for raw, kind in zip(state["weights"], ("<i4", "<f8", "<f8"), strict=True)
            )
            dense = np.zeros((2, state["n_features"]), dtype=np.float64)
            dense[0, used], dense[1, used] = weights, sums
            state = {
                **state,
                "weights": array("d", dense[0].tobytes()),
                "g2": array("d", dense[1].tobytes()),
            }
        self.__dict__.update(state)

    def _raw(self, x: dict[Any, float]) -> float:
        weights, named, n = self.weights, self.named, self.n_features
        total = 0.0
        for key, value in x.items():
            if type(key) is int and 0 <= key < n:
                total += weights[key] * value
            else:
                total += named.get(key, 0.0) * value
        return total + self.intercept

    def learn_one(self, x: dict[Any, float], y: bool) -> None:  # type: ignore[override]
        gradient = float(self._loss.gradient(y_true=y, y_pred=self._raw(x)))
        self.intercept -= self.intercept_lr * gradient
        rate, eps, n = self.lr, self.eps, self.n_features
        weights, g2 = self.weights, self.g2
        for key, value in x.items():
            g = value * gradient
            if type(key) is int and 0 <= key < n:
                total = g2[key] + g**2
                g2[key] = total
                weights[key] -= rate / (total + eps) ** 0.5 * g
            else:
                total = self.named_g2.get(key, 0.0) + g**2
                self.named_g2[key] = total
                self.named[key] = self.named.get(key, 0.0) - rate / (total + eps) ** 0.5 * g
        self.n_iterations += 1

    def predict_proba_one(self, x: dict[Any, float]) -> dict[bool, float]:  # type: ignore[override]
        p = sigmoid(self._raw(x))
        return {False: 1.0 - p, True: p}

    def predict_one(self, x: dict[Any, float]) -> bool:  # type: ignore[override]
        return self.predict_proba_one(x)[True] >= 0.5
