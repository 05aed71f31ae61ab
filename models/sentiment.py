"""Sentiment of customer text: VADER as the prior, adapted online to the shop's own language.

VADER (NLTK's ``SentimentIntensityAnalyzer``, computed exactly but about ten times faster
by :mod:`crmstream.models.vader`) knows general English but not that "arrived
smashed" is a complaint or "crisp and crunchy" praise in a snack shop, and on review text it
misses about half of the negative ones (they are written with polite, positive words). A
River logistic regression learns from rated feedback (1–2 stars negative, 4–5 positive) on
word uni- and bigrams plus VADER's own scores, and its opinion is blended into VADER's with
a weight it earns on held-out feedback of both classes (:class:`SentimentModel`), so that
the order in which ratings arrive (a good month, then a defective product) cannot make it
worse than VADER alone.

The lexicon is read offline from the ``vaderSentiment`` wheel: ``nltk.download()`` is not
needed (and cannot work without internet access).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from river import compose, feature_extraction, preprocessing
from river.feature_extraction import vectorize

from crmstream.models.hashed_regression import HashedLogisticRegression
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


#: Hash buckets of the word features: the classifier's weights never outnumber them (two
#: arrays of this many floats, 1 MB). 2**18 buckets gave no measurable gain in macro F1.
N_FEATURES = 2**16


def text_classifier(n_features: int = N_FEATURES) -> compose.Pipeline:
    """Build the online text classifier: word uni- and bigrams and VADER's scores.

    Lower-cased counts of single words and pairs of words, dampened to ``log(1 + count)``
    and hashed into ``n_features`` buckets (the model's size stays bounded however many
    words a shop's customers invent), are joined with the VADER features of
    :func:`text_features` and fed to a logistic regression trained by AdaGrad: its
    per-feature step sizes suit sparse text, and unlike Adam its cost per update does not
    grow with the vocabulary. Its weights are flat arrays of ``n_features`` slots
    (:class:`~crmstream.models.hashed_regression.HashedLogisticRegression`: River's
    arithmetic, 1 MB at 2**16 buckets from the start instead of hash maps growing to about
    12 MB); a checkpoint written with River's own regression keeps it.
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
        | preprocessing.FeatureHasher(n_features=n_features, seed=0)
    )
    vader = compose.Select("vader", "vader_pos", "vader_neg")
    return compose.Pipeline(
        compose.TransformerUnion(vader, words),
        HashedLogisticRegression(n_features=n_features, lr=0.1),
    )


#: Where a kept text's classifier input is cached (never pickled: see ``__getstate__``).
_VECTOR = "_vector"


def words_vectorizer(
    pipeline: compose.Pipeline,
) -> Callable[[dict[str, Any]], dict[Any, float]] | None:
    """The input :func:`text_classifier`'s pipeline gives its regression, computed in one
    pass: River's ``BagOfWords`` (accents stripped, lower case, River's token pattern, words
    and pairs of words, counted in the same order) inlined, then the pipeline's own
    ``log_counts``, ``FeatureHasher`` and ``Select``, merged as its ``TransformerUnion``
    merges them. ``None`` for a pipeline of another shape (one of an older checkpoint):
    use its own steps.

    Examples
    --------
    >>> pipeline = text_classifier()
    >>> features = text_features("Crisp, fresh and cheap; the best café in town!")
    >>> vector = words_vectorizer(pipeline)(features)
    >>> vector == pipeline.steps["TransformerUnion"].transform_one(features)
    True
    """
    steps = list(pipeline.steps.values())
    union = steps[0] if len(steps) == 2 else None
    if not isinstance(union, compose.TransformerUnion) or len(union.transformers) != 2:
        return None
    select, words = union.transformers.values()
    parts = list(words.steps.values()) if isinstance(words, compose.Pipeline) else []
    if not isinstance(select, compose.Select) or len(parts) != 3:
        return None
    bag, dampen, hasher = parts
    if not (
        type(bag) is feature_extraction.BagOfWords
        and bag.on == "text"
        and bag.lowercase
        and bag.strip_accents
        and bag.preprocessor is None
        and bag.tokenizer is None
        and not bag.stop_words
        and tuple(bag.ngram_range) == (1, 2)
        and isinstance(dampen, compose.FuncTransformer)
        and isinstance(hasher, preprocessing.FeatureHasher)
    ):
        return None
    token = re.compile(bag.tokenizer_pattern)
    strip = vectorize.strip_accents_unicode
    dampen_one, hash_one, select_one = (
        dampen.transform_one,
        hasher.transform_one,
        select.transform_one,
    )

    def vectorize_one(features: dict[str, Any]) -> dict[Any, float]:
        tokens = token.findall(strip(features["text"]).lower())
        counts = Counter(tokens)
        counts.update(itertools.pairwise(tokens))
        vector = hash_one(dampen_one(counts))
        vector.update(select_one(features))
        return vector

    return vectorize_one


def _plain(kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kept texts without their cached vectors (what a checkpoint holds)."""
    return [{k: v for k, v in features.items() if k != _VECTOR} for features in kept]


#: Number of steps from 0 (VADER alone) to ``max_weight`` among which the evidence chooses.
WEIGHT_STEPS = 4

#: Characters of a text kept in the held-out and replay buffers (bounds the model's state).
KEPT_CHARS = 1000


def blend(vader: float, probability: float, weight: float) -> float:
    """VADER's compound and the classifier's probability blended into one score in [-1, 1].

    Examples
    --------
    >>> blend(0.5, 0.0, 0.0), blend(0.5, 0.0, 1.0), blend(0.5, 0.0, 0.5)
    (0.5, -1.0, -0.25)
    """
    return min(1.0, max(-1.0, (1.0 - weight) * vader + weight * (2.0 * probability - 1.0)))


def _says(score: float, positive: bool) -> bool:
    """Whether ``score`` names the class ``positive`` (a neutral score names neither)."""
    return score > NEUTRAL if positive else score < -NEUTRAL


class SentimentModel:
    """VADER blended with an online text classifier, weighted by held-out evidence.

    ``score(text) = (1 - w) * vader + w * (2 * p - 1)``, where ``p`` is the classifier's
    probability that the text is positive. The weight ``w`` is earned, never granted by a
    count of labels: each class's newest ``holdout_size`` rated texts are held out (learned
    only when newer ones push them out), and every ``refresh_every`` texts the model scores
    them with each weight of :attr:`candidates` (0 to ``max_weight`` in :data:`WEIGHT_STEPS`
    steps); ``w`` becomes the smallest weight whose balanced accuracy (the mean of both
    classes' recall, a neutral score counting as wrong) is within ``tolerance`` of the best.
    So ``w`` is 0, and the score exactly VADER's, until both classes hold ``min_evidence``
    texts and the classifier does better than VADER on recent feedback of *both* classes,
    measured now, whatever order the feedback came in.

    The evidence is the shop's own feedback, so it cannot tell how the classifier fares on
    text unlike it (chats about other products, another kind of customer). ``max_weight``
    of 0.5 keeps VADER's voice at least equal to the classifier's: measured on review text
    of other sources than the feedback's, in five orders of it, a larger cap gained more on
    text like the feedback's but fell up to 0.1 macro F1 below VADER on other text (README,
    "Sentiment across training orders"); so did a ``tolerance`` of 0.01 or 0 (up to 0.12
    below), even with the cap.

    Held-out texts are learned late: the classifier learns nothing of a class until more
    than ``holdout_size`` texts of it have arrived, and never speaks before it has seen
    ``min_evidence`` held-out texts of each class.

    Learning is balanced whatever the order: each text learned is followed by one replayed
    text of the other class, drawn from a uniform reservoir of ``replay_size`` texts per
    class, and the classifier's intercept is kept within ``±intercept_bound``. A run of
    thousands of positive ratings therefore cannot teach the classifier that everything is
    positive (the intercept is bounded until the first negative arrives, and from then on
    both classes are learned as often).

    The state is bounded: hashed word features (:data:`N_FEATURES` weights at most), and
    ``2 * (holdout_size + replay_size)`` kept texts of at most :data:`KEPT_CHARS`
    characters. It pickles (for checkpoints) without the VADER scorer, which is reloaded
    through the cached :func:`~crmstream.models.vader.load_fast_vader`; a restored copy
    scores and learns exactly as the original.

    Parameters
    ----------
    holdout_size : int
        Newest rated texts per class held out as evidence before they are learned.
    min_evidence : int
        Held-out texts each class needs before the classifier can earn any weight.
    refresh_every : int
        Rated texts between two measurements of the weight on the held-out texts.
    replay_size : int
        Texts per class kept for balanced replay.
    intercept_bound : float
        Largest absolute value of the classifier's intercept.
    tolerance : float
        Balanced accuracy a larger weight must gain to be preferred to a smaller one.
    max_weight : float
        Largest weight the classifier can earn, in [0, 1].
    seed : int
        Seed of the replay's random choices.
    classifier : callable
        Factory of the River pipeline; it receives :func:`text_features` dicts.

    Examples
    --------
    >>> model = SentimentModel(holdout_size=10, min_evidence=5, refresh_every=5)
    >>> model.score("The parcel arrived smashed") == model.vader("The parcel arrived smashed")
    True
    >>> for _ in range(30):
    ...     model.learn("the parcel arrived smashed again", positive=False)
    ...     model.learn("crisp and crunchy as always", positive=True)
    >>> model.n_learned, model.weight > 0
    (60, True)
    >>> model.score("arrived smashed") < -0.05 < 0.05 < model.score("so crisp and crunchy")
    True
    """

    def __init__(
        self,
        holdout_size: int = 200,
        min_evidence: int = 30,
        refresh_every: int = 200,
        replay_size: int = 128,
        intercept_bound: float = 1.0,
        tolerance: float = 0.02,
        max_weight: float = 0.5,
        seed: int = 0,
        classifier: Callable[[], compose.Pipeline] = text_classifier,
    ) -> None:
        for name, value in (
            ("holdout_size", holdout_size),
            ("min_evidence", min_evidence),
            ("refresh_every", refresh_every),
            ("replay_size", replay_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if min_evidence > holdout_size:
            raise ValueError(f"min_evidence ({min_evidence}) exceeds holdout_size ({holdout_size})")
        if intercept_bound < 0 or tolerance < 0:
            raise ValueError("intercept_bound and tolerance cannot be negative")
        if not 0.0 <= max_weight <= 1.0:
            raise ValueError(f"max_weight must be in [0, 1], got {max_weight}")
        self.holdout_size = holdout_size
        self.min_evidence = min_evidence
        self.refresh_every = refresh_every
        self.replay_size = replay_size
        self.intercept_bound = intercept_bound
        self.tolerance = tolerance
        self.max_weight = max_weight
        self.seed = seed
        self.classifier = classifier
        self._reset()

    def _reset(self) -> None:
        self._pipeline = self.classifier()
        self._vectorizer: tuple[Any, Any] = (None, None)  # the pipeline's, see _vector
        self._counts = {False: 0, True: 0}
        self._holdout: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        self._replay: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        self._trained = {False: 0, True: 0}
        self._rng = random.Random(self.seed)
        self._weight = 0.0
        self._evidence: dict[float, float] = {}
        self._since_refresh = 0

    @property
    def n_learned(self) -> int:
        """Number of rated texts learned so far (held out ones included).

        Examples
        --------
        >>> SentimentModel().n_learned
        0
        """
        return self._counts[False] + self._counts[True]

    @property
    def weight(self) -> float:
        """Weight of the learned classifier in :meth:`score`, earned on held-out feedback.

        Examples
        --------
        >>> SentimentModel().weight
        0.0
        """
        return self._weight

    @property
    def candidates(self) -> tuple[float, ...]:
        """The weights the evidence chooses among, from 0 (VADER alone) to ``max_weight``.

        Examples
        --------
        >>> SentimentModel().candidates
        (0.0, 0.125, 0.25, 0.375, 0.5)
        """
        return tuple(self.max_weight * step / WEIGHT_STEPS for step in range(WEIGHT_STEPS + 1))

    @property
    def evidence(self) -> dict[float, float]:
        """Balanced accuracy on the held-out texts of each blend weight, at the last refresh.

        Empty until both classes hold ``min_evidence`` held-out texts; weight 0 is VADER's.

        Examples
        --------
        >>> SentimentModel().evidence
        {}
        """
        return dict(self._evidence)

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
        if self._weight == 0.0:
            return vader_score(text)
        features = text_features(text)
        probability = self._regression().predict_proba_one(self._vector(features)).get(True, 0.5)
        return blend(features["vader"], probability, self._weight)

    def learn(self, text: str, positive: bool) -> None:
        """Learn that ``text`` is positive (True) or negative (False) feedback.

        The text joins its class's held-out texts; the oldest of them, once there are more
        than ``holdout_size``, is learned (with one replayed text of the other class).

        Examples
        --------
        >>> model = SentimentModel()
        >>> model.learn("arrived smashed", positive=False)
        >>> model.n_learned
        1
        """
        label = bool(positive)
        self._counts[label] += 1
        features = text_features(text[:KEPT_CHARS])
        held = self._holdout[label]
        held.append(features)
        if len(held) > self.holdout_size:
            self._train(held.pop(0), label)
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every or (not self._evidence and self._ready()):
            self._since_refresh = 0
            self._refresh_weight()

    def _ready(self) -> bool:
        """Whether both classes hold enough held-out texts and taught the classifier."""
        held = min(len(self._holdout[False]), len(self._holdout[True]))
        return held >= self.min_evidence and self._trained[False] > 0 and self._trained[True] > 0

    def _vector(self, features: dict[str, Any]) -> dict[Any, float]:
        """The classifier's input for a kept text: the pipeline's transformers applied
        once and cached with the text (they keep no state, so the vector never changes;
        held-out and replayed texts are used again and again)."""
        vector = features.get(_VECTOR)
        if vector is None:
            pipeline = self._pipeline
            if self._vectorizer[0] is not pipeline:
                self._vectorizer = (pipeline, words_vectorizer(pipeline))
            vectorize_one = self._vectorizer[1]
            if vectorize_one is not None:
                vector = vectorize_one(features)
            else:
                vector = features
                for step in list(pipeline.steps.values())[:-1]:
                    vector = step.transform_one(vector)
            features[_VECTOR] = vector
        return vector

    def _regression(self) -> Any:
        return self._pipeline.steps[next(reversed(self._pipeline.steps))]

    def _train(self, features: dict[str, Any], label: bool) -> None:
        """Learn one text, then replay one of the other class; keep the text for replay."""
        regression = self._regression()
        regression.learn_one(self._vector(features), label)
        others = self._replay[not label]
        if others:
            replayed = others[self._rng.randrange(len(others))]
            regression.learn_one(self._vector(replayed), not label)
        bound = self.intercept_bound
        regression.intercept = min(bound, max(-bound, regression.intercept))
        self._trained[label] += 1
        kept = self._replay[label]
        if len(kept) < self.replay_size:
            kept.append(features)
        else:  # reservoir sampling: every text learned is kept with the same chance
            slot = self._rng.randrange(self._trained[label])
            if slot < self.replay_size:
                kept[slot] = features

    def _refresh_weight(self) -> None:
        """Measure every blend weight on the held-out texts; keep the smallest near-best."""
        if not self._ready():
            self._weight, self._evidence = 0.0, {}
            return
        candidates = self.candidates
        recall: dict[float, float] = dict.fromkeys(candidates, 0.0)
        for label in (False, True):
            held = self._holdout[label]
            regression = self._regression()
            for features in held:
                probability = regression.predict_proba_one(self._vector(features)).get(True, 0.5)
                for weight in candidates:
                    if _says(blend(features["vader"], probability, weight), label):
                        recall[weight] += 0.5 / len(held)
        best = max(recall.values())
        self._evidence = recall
        self._weight = min(w for w, r in recall.items() if r >= best - self.tolerance)

    def __getstate__(self) -> dict[str, Any]:
        # River's state, the kept texts and counts: never the VADER scorer (it is cached).
        return {
            "params": {
                "holdout_size": self.holdout_size,
                "min_evidence": self.min_evidence,
                "refresh_every": self.refresh_every,
                "replay_size": self.replay_size,
                "intercept_bound": self.intercept_bound,
                "tolerance": self.tolerance,
                "max_weight": self.max_weight,
                "seed": self.seed,
                "classifier": self.classifier,
            },
            "pipeline": self._pipeline,
            "counts": dict(self._counts),
            "trained": dict(self._trained),
            "holdout": {label: _plain(kept) for label, kept in self._holdout.items()},
            "replay": {label: _plain(kept) for label, kept in self._replay.items()},
            "rng": self._rng.getstate(),
            "weight": self._weight,
            "evidence": self._evidence,
            "since_refresh": self._since_refresh,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "params" not in state:
            # A checkpoint of the earlier model (weighted by a count of labels, and not
            # robust to the order of its feedback): start again from VADER alone.
            self.__init__()  # type: ignore[misc]
            return
        self.__init__(**state["params"])  # type: ignore[misc]
        self._pipeline = state["pipeline"]
        self._counts = {False: state["counts"][False], True: state["counts"][True]}
        self._trained = {False: state["trained"][False], True: state["trained"][True]}
        self._holdout = state["holdout"]
        self._replay = state["replay"]
        self._rng.setstate(state["rng"])
        self._weight = state["weight"]
        self._evidence = state["evidence"]
        self._since_refresh = state["since_refresh"]

    def __repr__(self) -> str:
        return f"SentimentModel(n_learned={self.n_learned}, weight={self._weight})"
