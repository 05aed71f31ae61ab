"""Sentiment of customer text: VADER as the prior, adapted online to the shop's own language.

VADER (NLTK's ``SentimentIntensityAnalyzer``, computed exactly but about ten times faster
by :mod:`crmstream.models.vader`) knows general English but not that "arrived
smashed" is a complaint or "crisp and crunchy" praise in a snack shop, and on review text it
misses about half of the negative ones (they are written with polite, positive words). A
River logistic regression learns from rated feedback (1–2 stars negative, 4–5 positive) on
word uni- and bigrams plus VADER's own scores, and its opinion is blended into VADER's with
a weight that grows with the number of ratings it has learned from.

The lexicon is read offline from the ``vaderSentiment`` wheel: ``nltk.download()`` is not
needed (and cannot work without internet access).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from river import compose, feature_extraction, linear_model, optim, preprocessing

from crmstream.models.vader import load_fast_vader, vader_lexicon_path

if TYPE_CHECKING:
    from nltk.sentiment.vader import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

#: VADER's compound scores within this distance of 0 mean "neutral" (VADER's convention).
NEUTRAL = 0.05

#: Ratings (stars) at or below this are negative feedback, at or above ``POSITIVE_FROM``
#: positive; those in between teach nothing.
NEGATIVE_UP_TO = 2
POSITIVE_FROM = 4


@functools.cache
def load_vader() -> SentimentIntensityAnalyzer:
    """Return NLTK's VADER analyzer with the lexicon of the ``vaderSentiment`` wheel (cached).

    NLTK 3.10 loads a ``file:`` resource only from a folder on ``nltk.data.path``, so the
    lexicon's folder is appended to it (once).

    Examples
    --------
    >>> analyzer = load_vader()
    >>> analyzer is load_vader()
    True
    >>> analyzer.polarity_scores("I love this!")["compound"]
    0.6696
    """
    import nltk.data  # type: ignore[import-untyped]
    from nltk.sentiment.vader import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

    path = vader_lexicon_path()
    if str(path.parent) not in nltk.data.path:
        nltk.data.path.append(str(path.parent))
    return SentimentIntensityAnalyzer(lexicon_file="file:" + str(path))


def vader_score(text: str) -> float:
    """Return VADER's compound score of ``text``, in [-1, 1].

    Examples
    --------
    >>> vader_score("Great service, thank you!")
    0.784
    >>> vader_score("This is terrible.")
    -0.4767
    >>> vader_score("The parcel arrived smashed")  # VADER does not know this is bad
    0.0
    """
    return load_fast_vader().compound(text)


def rating_label(rating: int) -> bool | None:
    """Return what a star rating teaches: True positive, False negative, None nothing.

    Examples
    --------
    >>> [rating_label(stars) for stars in (1, 2, 3, 4, 5)]
    [False, False, None, True, True]
    """
    if not 1 <= rating <= 5:
        raise ValueError(f"a rating is 1 to 5 stars, got {rating}")
    if rating <= NEGATIVE_UP_TO:
        return False
    if rating >= POSITIVE_FROM:
        return True
    return None


def text_features(text: str) -> dict[str, Any]:
    """Return the input of :func:`text_classifier`: the text and VADER's view of it.

    ``vader`` is the compound score, ``vader_pos`` and ``vader_neg`` the shares of
    positive and negative words (one VADER pass).

    Examples
    --------
    >>> features = text_features("Lovely taste, but the box arrived crushed and I hate that.")
    >>> features["vader"], features["vader_pos"], features["vader_neg"]
    (-0.81, 0.132, 0.482)
    """
    compound, pos, neg = load_fast_vader().compound_pos_neg(text)
    return {"text": text, "vader": compound, "vader_pos": pos, "vader_neg": neg}


def log_counts(counts: dict[str, float]) -> dict[str, float]:
    """Dampen word counts to ``log(1 + count)`` so long reviews do not dominate.

    Examples
    --------
    >>> log_counts({"good": 1, "very": 3})
    {'good': 0.6931471805599453, 'very': 1.3862943611198906}
    """
    return {word: math.log1p(count) for word, count in counts.items()}


def text_classifier() -> compose.Pipeline:
    """Build the online text classifier: word uni- and bigrams and VADER's scores.

    Lower-cased counts of single words and pairs of words, dampened to ``log(1 + count)``
    and hashed into ``2**20`` buckets (the model's size stays bounded however many words a
    shop's customers invent), are joined with the VADER features of :func:`text_features`
    and fed to a logistic regression trained by AdaGrad: its per-feature step sizes suit
    sparse text, and unlike Adam its cost per update does not grow with the vocabulary.
    This was chosen on held-out parts of the *training* data of the fine-food and VADER
    Amazon review sets (``crmstream datasets sentiment``), against naive Bayes, TF-IDF and
    other step sizes.

    Examples
    --------
    >>> model = text_classifier()
    >>> model.learn_one(text_features("stale and soggy"), False)
    >>> model.learn_one(text_features("crisp and fresh"), True)
    >>> model.predict_proba_one(text_features("soggy"))[True] < 0.5
    True
    """
    words = (
        feature_extraction.BagOfWords(on="text", lowercase=True, ngram_range=(1, 2))
        | compose.FuncTransformer(log_counts)
        | preprocessing.FeatureHasher(n_features=2**20, seed=0)
    )
    vader = compose.Select("vader", "vader_pos", "vader_neg")
    return compose.Pipeline(
        compose.TransformerUnion(vader, words),
        linear_model.LogisticRegression(optimizer=optim.AdaGrad(lr=0.1)),
    )


class SentimentModel:
    """VADER blended with an online text classifier that learns from rated feedback.

    ``score(text) = (1 - w) * vader + w * (2 * p - 1)`` where ``p`` is the classifier's
    probability that the text is positive and ``w = n / (n + half_weight_at)`` grows with
    the number ``n`` of texts learned: before any learning the score is exactly VADER's
    compound, after ``half_weight_at`` texts both count equally, and with thousands the
    learned model dominates (it keeps VADER's scores among its features).

    Each learned text is weighted by ``n / (2 * n_class)`` (the "balanced" class weight,
    from the counts so far), so that a shop whose ratings are mostly positive still learns
    to recognise the rarer complaints.

    The model pickles (for checkpoints) without the VADER scorer, which is reloaded through
    the cached :func:`~crmstream.models.vader.load_fast_vader`; a restored copy scores
    exactly as the original.

    Parameters
    ----------
    half_weight_at : int
        Number of learned texts at which the classifier weighs as much as VADER.
    classifier : callable
        Factory of the River pipeline; it receives :func:`text_features` dicts.

    Examples
    --------
    >>> model = SentimentModel()
    >>> model.score("The parcel arrived smashed") == model.vader("The parcel arrived smashed")
    True
    >>> for _ in range(30):
    ...     model.learn("the parcel arrived smashed again", positive=False)
    ...     model.learn("crisp and crunchy as always", positive=True)
    >>> model.n_learned
    60
    >>> model.score("arrived smashed") < -0.05 < 0.05 < model.score("so crisp and crunchy")
    True
    """

    def __init__(
        self,
        half_weight_at: int = 100,
        classifier: Callable[[], compose.Pipeline] = text_classifier,
    ) -> None:
        if half_weight_at <= 0:
            raise ValueError(f"half_weight_at must be positive, got {half_weight_at}")
        self.half_weight_at = half_weight_at
        self.classifier = classifier
        self._pipeline = classifier()
        self._counts = {False: 0, True: 0}

    @property
    def n_learned(self) -> int:
        """Number of texts learned so far.

        Examples
        --------
        >>> SentimentModel().n_learned
        0
        """
        return self._counts[False] + self._counts[True]

    @property
    def weight(self) -> float:
        """Weight of the learned classifier in :meth:`score`: ``n / (n + half_weight_at)``.

        Examples
        --------
        >>> model = SentimentModel(half_weight_at=2)
        >>> model.weight
        0.0
        >>> model.learn("fine", positive=True)
        >>> model.learn("awful", positive=False)
        >>> model.weight
        0.5
        """
        n = self.n_learned
        return n / (n + self.half_weight_at)

    def vader(self, text: str) -> float:
        """VADER's compound score of ``text`` alone, in [-1, 1].

        Examples
        --------
        >>> SentimentModel().vader("I love this!")
        0.6696
        """
        return vader_score(text)

    def score(self, text: str) -> float:
        """Return the blended sentiment of ``text`` in [-1, 1] (> 0.05 positive, < -0.05 negative).

        Examples
        --------
        >>> SentimentModel().score("This is terrible.")
        -0.4767
        """
        if self.n_learned == 0:
            return vader_score(text)
        features = text_features(text)
        weight = self.weight
        probability = self._pipeline.predict_proba_one(features).get(True, 0.5)
        blended = (1.0 - weight) * features["vader"] + weight * (2.0 * probability - 1.0)
        return min(1.0, max(-1.0, blended))

    def learn(self, text: str, positive: bool) -> None:
        """Learn that ``text`` is positive (True) or negative (False) feedback.

        Examples
        --------
        >>> model = SentimentModel()
        >>> model.learn("arrived smashed", positive=False)
        >>> model.n_learned
        1
        """
        label = bool(positive)
        self._counts[label] += 1
        class_weight = self.n_learned / (2.0 * self._counts[label])
        self._pipeline.learn_one(text_features(text), label, w=class_weight)

    def __getstate__(self) -> dict[str, Any]:
        # Only River's state and counts: never the VADER scorer (load_fast_vader is cached).
        return {
            "half_weight_at": self.half_weight_at,
            "classifier": self.classifier,
            "pipeline": self._pipeline,
            "counts": dict(self._counts),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.half_weight_at = state["half_weight_at"]
        self.classifier = state["classifier"]
        self._pipeline = state["pipeline"]
        self._counts = {False: state["counts"][False], True: state["counts"][True]}

    def __repr__(self) -> str:
        return f"SentimentModel(half_weight_at={self.half_weight_at}, n_learned={self.n_learned})"
