"""Intent of a chat message: keyword rules first, then an online classifier.

Rules give a useful answer from the first message and are explainable; the classifier
learns the shop's own phrasings from chats whose ``intent`` a human has confirmed (see
:class:`crmstream.schemas.inputs.ChatMessage`) and takes over where the rules say nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from river import compose, feature_extraction, linear_model, multiclass, optim

from crmstream.schemas.inputs import Intent

#: Every intent, in the order of :data:`crmstream.schemas.inputs.Intent`.
INTENTS: tuple[Intent, ...] = (
    "cancel",
    "refund",
    "complaint",
    "delivery",
    "purchase_question",
    "other",
)

#: The order in which rules win when several match: churn risk first, then money, then
#: service quality, logistics, and finally sales questions.
PRECEDENCE: tuple[Intent, ...] = ("cancel", "refund", "complaint", "delivery", "purchase_question")

# Words allowed between a negation cue and the phrase it negates ("not asking *for a*
# refund", "no need *to* cancel"). "you" is deliberately absent: "why won't you cancel"
# is a request to cancel, not a refusal.
_FILLER = r"(?:\s+(?:to|on|of|for|a|an|the|my|our|any|this|that|it|be|been|about|just|really))"

# A refusal in the customer's own voice: "I don't want to", "I'm not asking for",
# "no need to", "I won't". Past-tense complaints ("I didn't get my refund") are not
# refusals, so "didn't" only counts together with want/need/mean.
_REFUSAL = (
    r"(?:\b(?:do|does|did)(?:n'?t|\s+not)\s+(?:want|need|wish|plan|intend|mean)"
    r"|\b(?:i|we)(?:\s+won'?t|\s+will\s+not|\s+wouldn'?t|\s+would\s+(?:not|never)|'d\s+never)"
    r"|\bnot\s+(?:going|trying|looking|planning|asking|wanting|here)"
    r"|\bno\s+(?:need|intention|plans?|wish)"
    r"|\bnever\s+(?:wanted|intended|meant)"
    r"|\brather\s+not)"
)

# A bare negation right before the phrase: "not cancelling", "no complaints", "never
# disappointed", "don't cancel". Only for intents where "not X" cannot mean "X is the
# problem" (unlike "I have not been refunded"). "can not cancel" is a blocked request.
_BARE_NEGATION = r"(?:\bdon'?t|\bdo\s+not|(?<!\bcan\s)\bnot|\bno|\bnever)"

_I_AM = r"\bi(?:'?m|\s+am)"

_RULES: dict[Intent, tuple[str, ...]] = {
    "cancel": (
        r"\bcancel(?:l?ing|s)?\b",
        r"\bcancell?ations?\b",
        r"\b(?:get|have)\s+(?:it|this|that|them|my\s+\w+)\s+cancell?ed\b",
        r"\b(?:close|delete|deactivate|terminate)\s+(?:down\s+)?(?:my|our|the)\s+account\b",
        r"\bunsubscrib\w*",
        r"\bterminat(?:e|ing|ion)\b",
        r"\b(?:end|stop)\s+(?:my|our|the)\s+(?:subscription|membership|contract|plan)\b",
        r"\b(?:do\s+not|don'?t)\s+(?:auto-?)?renew\b",
        _I_AM + r"\s+leaving(?=\s*(?:[.!?,;]|$))",
        _I_AM + r"\s+leaving\s+(?:you|this\s+(?:shop|store|service|company|site|platform)"
        r"|for\s+(?:another|a\s+different|a\s+competitor|your\s+competitor))\b",
        r"\bswitch(?:ing)?\s+(?:over\s+)?to\s+(?:a\s+|your\s+|another\s+)?competitors?\b",
        r"\bswitch(?:ing)?\s+(?:over\s+)?to\s+(?:another|a\s+different)\s+"
        r"(?:provider|company|shop|store|supplier|service|brand)\b",
        r"\b(?:go|going|move|moving)\s+(?:over\s+)?to\s+(?:a|your)\s+competitors?\b",
        r"\bswitch(?:ing)?\s+(?:over\s+)?to\s+\w+\s+instead\b",
    ),
    "refund": (
        r"\brefund(?:s|ed|ing|able)?\b",
        r"\bmoney\s+back\b",
        r"\breimburs\w*",
        r"\bcharge-?\s?backs?\b",
        r"\b(?:charged|billed)\s+(?:me\s+|us\s+)?twice\b",
        r"\bdouble[-\s]charged\b",
        r"\bover-?charged\b",
    ),
    "complaint": (
        r"\bcomplain(?:t|ts|ing|ed)?\b",
        r"\bunacceptable\b",
        r"\b(?:terrible|awful|horrible|appalling|dreadful|shocking|lousy|poor|bad)\s+"
        r"(?:customer\s+)?(?:service|support|experience|quality)\b",
        r"\bworst\b(?!\s+case)",
        r"\bdisappoint(?:ed|ing|ment)\b",
        r"\b(?:speak|talk)\s+(?:to|with)\s+(?:a|an|your|the)\s+(?:manager|supervisor)\b",
        r"\brude(?:ly|ness)?\b",
        r"\bridiculous\b",
        r"\bdisgust(?:ed|ing)\b",
        r"\bdisgrace(?:ful)?\b",
        r"\bfed\s+up\b",
        r"\bnot\s+(?:at\s+all\s+)?happy\b",
        r"\bunhappy\b",
    ),
    "delivery": (
        r"\bwhere(?:'?s|\s+is|\s+are)?\s+(?:my|our|the)\s+"
        r"(?:order|orders|parcel|package|delivery|shipment|stuff|items?)\b",
        r"\btrack(?:ing)?\b",
        r"(?:\bnot|\bnever|n't|\byet\s+to)\s+(?:yet\s+)?(?:arrived?|been\s+delivered|been\s+received)\b",
        r"\bdeliver(?:y|ies|ed)?\b",
        r"\bship(?:ping|ped|ment|ments)?\b",
        r"\bdispatch(?:ed)?\b",
        r"\bcouriers?\b",
        r"\bwhen\s+will\s+(?:it|they|my\s+\w+)\s+(?:arrive|come|get\s+here)\b",
        r"\b(?:lost|missing)\s+(?:parcel|package|order|item)s?\b",
    ),
    "purchase_question": (
        r"\bprices?\b",
        r"\bpricing\b",
        r"\bhow\s+much\s+(?:is|are|does|do|for)\b",
        r"\bin\s+stock\b",
        r"\bavailab(?:le|ility)\b",
        r"\bsiz(?:e|es|ing)\b",
        r"\bdoes\s+(?:it|this|that)\s+come\s+in\b",
        r"\bdo\s+(?:they|these|those)\s+come\s+in\b",
        r"\bdo\s+you\s+(?:have|sell|stock|carry)\b",
        r"\b(?:discount|promo|coupon|voucher)(?:\s+codes?)?\b",
        r"\bwhich\s+(?:model|version|one)\b",
        r"\bdifference\s+between\b",
        r"\bcompatible\b",
    ),
}

_NEGATABLE: dict[Intent, str] = {
    "cancel": f"(?:{_REFUSAL}|{_BARE_NEGATION})",
    "refund": _REFUSAL,
    "complaint": f"(?:{_REFUSAL}|{_BARE_NEGATION})",
}

_FLAGS = re.IGNORECASE


def required_words(pattern: str) -> frozenset[str] | None:
    r"""Lower-case strings one of which every match of ``pattern`` contains, or ``None``
    when the pattern promises none: a cheap test (``word in text``) that rules a pattern
    out before the regular expression engine runs.

    Derived from the parsed pattern: a run of literal characters is required; so is one of
    the strings of each alternative of a required alternation, and what a group or a
    repetition of at least one holds. Of the required sets of a sequence the one with the
    longest shortest string is kept (the most selective).

    Examples
    --------
    >>> sorted(required_words(r"\bcancel(?:l?ing|s)?\b"))
    ['cancel']
    >>> sorted(required_words(r"\b(?:charged|billed)\s+(?:me\s+)?twice\b"))
    ['billed', 'charged']
    >>> required_words(r"\b\w+\b") is None
    True
    """
    return _required(re._parser.parse(pattern, _FLAGS))  # type: ignore[attr-defined]


def _required(items: Any) -> frozenset[str] | None:
    c = re._constants  # type: ignore[attr-defined]
    repeats = (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT)
    found: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            found.append(frozenset(["".join(run)]))
            run.clear()

    for op, arg in items:
        if op is c.LITERAL:
            run.append(chr(arg).lower())
            continue
        end_run()
        inner: frozenset[str] | None = None
        if op is c.SUBPATTERN:
            inner = _required(arg[-1])
        elif op is c.BRANCH:
            branches = [_required(branch) for branch in arg[1]]
            if all(b is not None for b in branches):
                inner = frozenset().union(*branches)  # type: ignore[arg-type]
        elif op in repeats and arg[0] >= 1:
            inner = _required(arg[2])
        if inner:
            found.append(inner)
    end_run()
    if not found:
        return None
    return max(found, key=lambda words: min(map(len, words)))


_COMPILED: dict[Intent, tuple[tuple[re.Pattern[str], frozenset[str] | None], ...]] = {
    intent: tuple((re.compile(pattern, _FLAGS), required_words(pattern)) for pattern in patterns)
    for intent, patterns in _RULES.items()
}
_NEGATED_BEFORE: dict[Intent, re.Pattern[str]] = {
    intent: re.compile(f"{cue}{_FILLER}{{0,3}}\\s*$", _FLAGS) for intent, cue in _NEGATABLE.items()
}

# How far back to look for a negation cue; longer than any cue plus three fillers.
_NEGATION_WINDOW = 60


def _normalise(text: str) -> str:
    # Phones type curly apostrophes; the rules are written with straight ones.
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _matches(intent: Intent, text: str, lowered: str | None) -> bool:
    negated = _NEGATED_BEFORE.get(intent)
    for pattern, words in _COMPILED[intent]:
        if lowered is not None and words is not None and not any(w in lowered for w in words):
            continue  # a word every match contains is missing: the pattern cannot match
        for match in pattern.finditer(text):
            before = text[max(0, match.start() - _NEGATION_WINDOW) : match.start()]
            if negated is None or not negated.search(before):
                return True
    return False


def rule_intent(text: str) -> Intent | None:
    """Return the intent that keyword rules find in ``text``, or ``None``.

    Matching is case-insensitive and on word boundaries. A cancel, refund or complaint
    phrase directly preceded by a refusal or negation ("I don't want to cancel", "I'm not
    asking for a refund", "no complaints") does not count; other phrases in the message
    still do. When several intents match, the first in :data:`PRECEDENCE` wins: cancel,
    refund, complaint, delivery, purchase_question, so that churn risk is never hidden
    behind a less urgent intent.

    Parameters
    ----------
    text : str
        The message, as the customer wrote it.

    Returns
    -------
    str or None
        One of :data:`INTENTS` other than ``"other"``, or ``None`` when no rule matches.

    Examples
    --------
    >>> rule_intent("Please cancel my subscription")
    'cancel'
    >>> rule_intent("Where is my parcel? I want my money back!")   # refund beats delivery
    'refund'
    >>> rule_intent("I don't want to cancel, just tell me where my order is")
    'delivery'
    >>> rule_intent("Does it come in blue?")
    'purchase_question'
    >>> rule_intent("Thanks, have a nice day") is None
    True
    """
    normalised = _normalise(text)
    # Case-insensitive matching and str.lower() agree on ASCII only (the engine also
    # folds e.g. the Kelvin sign to "k"): other text runs every pattern.
    lowered = normalised.lower() if normalised.isascii() else None
    for intent in PRECEDENCE:
        if _matches(intent, normalised, lowered):
            return intent
    return None


def intent_classifier() -> compose.Pipeline:
    """Build the default online text classifier for intents.

    Word unigrams and bigrams feed one logistic regression per intent (one-vs-rest),
    trained with Adam so that a few dozen labelled chats are enough to become confident.
    Unlike naive Bayes, a logistic regression gives words it has never seen no weight, so
    small talk made of unfamiliar words gets an uncertain, not a confident, prediction
    (naive Bayes favours the class with the fewest words for every unseen word).

    Returns
    -------
    river.compose.Pipeline
        A fresh, untrained classifier that takes the raw text as its input.

    Examples
    --------
    >>> model = intent_classifier()
    >>> for _ in range(20):
    ...     model.learn_one("my box never showed up", "delivery")
    ...     model.learn_one("please pause my plan", "cancel")
    >>> model.predict_one("the box still has not showed up")
    'delivery'
    """
    words = feature_extraction.BagOfWords(lowercase=True, ngram_range=(1, 2))
    logistic = linear_model.LogisticRegression(optimizer=optim.Adam(lr=0.1))
    return words | multiclass.OneVsRestClassifier(logistic)


class TextClassifier(Protocol):
    """What :class:`IntentModel` needs of a classifier: River's methods, on raw text.

    River annotates ``x`` as a dict, but a pipeline that starts with a text vectoriser such
    as :class:`river.feature_extraction.BagOfWords` takes a string.

    Examples
    --------
    >>> classifier: TextClassifier = intent_classifier()
    >>> classifier.learn_one("pause my plan", "cancel")
    >>> classifier.predict_proba_one("pause my plan")
    {'cancel': 1.0}
    """

    def learn_one(self, x: Any, y: Any, /) -> None:
        """Learn that text ``x`` has label ``y``."""

    def predict_proba_one(self, x: Any, /) -> dict[Any, float] | None:
        """Return the probability of each label seen so far for text ``x``."""


class IntentModel:
    """Intent of chat messages from rules, and from what confirmed labels have taught.

    :meth:`predict` answers with the rules when one matches (:func:`rule_intent`).
    Otherwise it uses the online classifier, but only once it has learned from
    ``min_examples`` labelled chats and only when its most probable intent reaches
    ``min_confidence``; in every other case the answer is ``"other"``.

    Evaluate prequentially: call :meth:`predict` on a chat *before* :meth:`learn` on its
    label, or the measured accuracy is that of a model that has seen the answer. Ordering
    the two calls is the caller's job.

    Parameters
    ----------
    min_examples : int
        Labelled chats the classifier must have learned before its predictions are used.
    min_confidence : float
        Probability in [0, 1] the classifier's top intent needs to be used.
    make_classifier : callable
        Returns a fresh River classifier taking the raw text as input, such as
        :func:`intent_classifier`. It must be picklable (a module-level function) for the
        model to pickle.

    Attributes
    ----------
    classifier : TextClassifier
        The classifier built by ``make_classifier``.
    n_learned : int
        Number of labelled chats learned so far.

    Examples
    --------
    >>> model = IntentModel(min_examples=4)
    >>> model.predict("I want a refund")
    'refund'
    >>> model.predict("my box never showed up")   # no rule, nothing learned yet
    'other'
    >>> for _ in range(5):
    ...     model.learn("my box never showed up", "delivery")
    ...     model.learn("can I pause my plan", "cancel")
    >>> model.n_learned
    10
    >>> model.predict("the box still hasn't showed up")
    'delivery'
    >>> model.predict("pause the plan please")
    'cancel'
    >>> round(sum(model.predict_proba("pause the plan please").values()), 6)
    1.0
    """

    def __init__(
        self,
        min_examples: int = 20,
        min_confidence: float = 0.6,
        make_classifier: Callable[[], TextClassifier] = intent_classifier,
    ) -> None:
        if min_examples < 0:
            raise ValueError(f"min_examples must be >= 0, got {min_examples}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.min_examples = min_examples
        self.min_confidence = min_confidence
        self.make_classifier = make_classifier
        self.classifier = make_classifier()
        self.n_learned = 0

    def __repr__(self) -> str:
        return (
            f"IntentModel(min_examples={self.min_examples!r}, "
            f"min_confidence={self.min_confidence!r}, "
            f"make_classifier={getattr(self.make_classifier, '__name__', self.make_classifier)})"
        )

    @property
    def trusted(self) -> bool:
        """Whether the classifier has learned enough labelled chats to be used.

        Examples
        --------
        >>> IntentModel(min_examples=1).trusted
        False
        """
        return self.n_learned >= self.min_examples and self.n_learned > 0

    def predict_proba(self, text: str) -> dict[str, float]:
        """Return the probability of each intent in :data:`INTENTS` for ``text``.

        A matching rule gives probability 1 to its intent; an untrusted classifier (see
        :attr:`trusted`) gives probability 1 to ``"other"``; otherwise the classifier's
        probabilities, with 0 for intents it has not seen. The values sum to 1.
        :meth:`predict` takes the most probable intent only when it reaches
        ``min_confidence``, so it may say ``"other"`` where this does not.

        Parameters
        ----------
        text : str
            The message.

        Returns
        -------
        dict of str to float
            Keyed by every intent in :data:`INTENTS`, in that order.

        Examples
        --------
        >>> proba = IntentModel().predict_proba("Where is my package?")
        >>> proba["delivery"], proba["other"]
        (1.0, 0.0)
        >>> IntentModel().predict_proba("hello there")["other"]
        1.0
        """
        proba = dict.fromkeys(INTENTS, 0.0)
        ruled = rule_intent(text)
        if ruled is not None:
            proba[ruled] = 1.0
            return proba
        if not self.trusted:
            proba["other"] = 1.0
            return proba
        learned: dict[Any, float] = self.classifier.predict_proba_one(text) or {}
        total = sum(learned.get(intent, 0.0) for intent in INTENTS)
        if total <= 0.0:
            proba["other"] = 1.0
            return proba
        for intent in INTENTS:
            proba[intent] = learned.get(intent, 0.0) / total
        return proba

    def predict(self, text: str) -> Intent:
        """Return the intent of ``text``, one of :data:`INTENTS`.

        Parameters
        ----------
        text : str
            The message.

        Returns
        -------
        str
            The rule's intent if one matches; else the classifier's, if it is trusted and
            confident enough; else ``"other"``.

        Examples
        --------
        >>> IntentModel().predict("This is unacceptable, I want to speak to a manager")
        'complaint'
        >>> IntentModel().predict("hi, how are you?")
        'other'
        """
        proba = self.predict_proba(text)
        best = max(INTENTS, key=proba.__getitem__)
        if best != "other" and proba[best] >= self.min_confidence:
            return best
        return "other"

    def learn(self, text: str, intent: str) -> None:
        """Learn that ``text`` has the human-confirmed ``intent``.

        Call :meth:`predict` on the same text first if the prediction is to be
        evaluated. The rules are not affected; only the classifier learns.

        Parameters
        ----------
        text : str
            The message.
        intent : str
            Its confirmed label, one of :data:`INTENTS`.

        Raises
        ------
        ValueError
            If ``intent`` is not one of :data:`INTENTS`; the model is left unchanged.

        Examples
        --------
        >>> model = IntentModel()
        >>> model.learn("pause my plan", "cancel")
        >>> model.n_learned
        1
        >>> model.learn("pause my plan", "pause")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown intent 'pause'; expected one of cancel, refund, ...
        """
        if intent not in INTENTS:
            raise ValueError(f"unknown intent {intent!r}; expected one of {', '.join(INTENTS)}")
        self.classifier.learn_one(text, intent)
        self.n_learned += 1
