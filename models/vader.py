"""VADER sentiment scores exactly as NLTK computes them, several times faster.

NLTK's ``SentimentIntensityAnalyzer.polarity_scores`` (``nltk/sentiment/vader.py``) is the
reference: :class:`Vader` gives the same ``neg``, ``neu``, ``pos`` and ``compound`` for
every text, rule for rule and float operation for float operation: ``tests/unit/test_vader.py``
compares both on the 23,703 human-rated sentences of the VADER paper and on generated texts.
It is faster because it does less work per text, not different work:

* NLTK strips punctuation from a word by building, for every text, a dict of each of its
  words joined to each of 17 punctuation marks on either side. Here a word's leading or
  trailing marks are looked at directly, and only when it starts or ends with one.
* every word is lowercased once; only words of the lexicon go through the rules (the
  others score 0 and are only counted), and each distinct one once;
* the constants are frozensets and dicts built at import, the lexicon once per process
  (:func:`load_fast_vader`).

NLTK's results depend on some details that look accidental; they are kept on purpose,
since the point is to give NLTK's numbers:

* a word that occurs twice is scored twice with the words around its *first* occurrence;
* words are lowercased before the lexicon lookup, so lexicon entries with capitals (such
  as ``:D``) never match;
* the idioms ("the bomb", "yeah right", ...) and "never so"/"never this" are matched
  case-sensitively, and idioms only when the word three before is not in the lexicon;
* "so" or "this" right before a word multiplies it by 1.25 whenever the word three before
  is not in the lexicon (the precedence of ``and``/``or`` in NLTK's condition);
* "kind of", "sort of" and "just enough" two or three words before lower a valence by
  0.293 whatever its sign;
* the sum of valences uses the built-in :func:`sum`, exactly as NLTK, so that both agree
  on every Python version (3.12 made it a compensated sum).
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

#: Valence added by an intensifier ("very") before a word, taken away by a dampener.
BOOST = 0.293

#: Valence added to a word written in capitals when the text is not all capitals.
CAPS_BOOST = 0.733

#: A negated valence is multiplied by this.
NEGATION = -0.74

#: ``compound = s / sqrt(s * s + ALPHA)`` for the sum ``s`` of valences.
ALPHA = 15

_INTENSIFIERS = [
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormously",
    "entirely",
    "especially",
    "exceptionally",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fucking",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredibly",
    "intensely",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "totally",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utterly",
    "very",
]
_DAMPENERS = [
    "almost",
    "barely",
    "hardly",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginally",
    "occasionally",
    "partly",
    "scarcely",
    "slightly",
    "somewhat",
    "sorta",
    "sortof",
    "sort-of",
    "just enough",
    "kind of",
    "sort of",
]

#: Words (and three two-word phrases) that raise or lower the valence of the word after.
BOOSTERS: Mapping[str, float] = {
    **dict.fromkeys(_INTENSIFIERS, BOOST),
    **dict.fromkeys(_DAMPENERS, -BOOST),
}

#: Words that negate the valence of the words after them; so does any word with "n't".
NEGATIONS = frozenset(
    [
        "aint",
        "arent",
        "cannot",
        "cant",
        "couldnt",
        "darent",
        "didnt",
        "doesnt",
        "dont",
        "hadnt",
        "hasnt",
        "havent",
        "isnt",
        "mightnt",
        "mustnt",
        "neednt",
        "oughtnt",
        "shant",
        "shouldnt",
        "wasnt",
        "werent",
        "wont",
        "wouldnt",
        "ain't",
        "aren't",
        "can't",
        "couldn't",
        "daren't",
        "didn't",
        "doesn't",
        "don't",
        "hadn't",
        "hasn't",
        "haven't",
        "isn't",
        "mightn't",
        "mustn't",
        "needn't",
        "oughtn't",
        "shan't",
        "shouldn't",
        "wasn't",
        "weren't",
        "won't",
        "wouldn't",
        "neither",
        "never",
        "none",
        "nope",
        "nor",
        "not",
        "nothing",
        "nowhere",
        "uhuh",
        "uh-uh",
        "without",
        "rarely",
        "seldom",
        "despite",
    ]
)

#: Phrases whose valence replaces that of the lexicon word they contain.
IDIOMS: Mapping[str, float] = {
    "the shit": 3.0,
    "the bomb": 3.0,
    "bad ass": 1.5,
    "yeah right": -2.0,
    "cut the mustard": 2.0,
    "kiss of death": -1.5,
    "hand to mouth": -2.0,
}

#: Punctuation that is stripped when it is all that precedes or follows a word.
EDGE_MARKS = frozenset(
    [
        ".",
        "!",
        "?",
        ",",
        ";",
        ":",
        "-",
        "'",
        '"',
        "!!",
        "!!!",
        "??",
        "???",
        "?!?",
        "!?!",
        "?!?!",
        "!?!?",
    ]
)

_PUNCTUATION = string.punctuation
_PUNCTUATION_CHARS = frozenset(_PUNCTUATION)
_has_punctuation = re.compile(f"[{re.escape(_PUNCTUATION)}]").search

_BOOSTER_WORDS = {word: value for word, value in BOOSTERS.items() if " " not in word}
_BOOSTER_PAIRS = frozenset(tuple(phrase.split()) for phrase in BOOSTERS if " " in phrase)
_BOOSTER_PAIR_STARTS = frozenset(first for first, _ in _BOOSTER_PAIRS)
_IDIOMS = {tuple(phrase.split()): value for phrase, value in IDIOMS.items()}
_IDIOM_STARTS = frozenset(phrase[0] for phrase in _IDIOMS)
_SO_THIS = ("so", "this")
_NEVER_SO_THIS = 1.5
_SO_THIS_BEFORE = 1.25
_FARTHER = {2: 0.95, 3: 0.9}
_BEFORE_BUT = 0.5
_AFTER_BUT = 1.5


def vader_lexicon_path() -> Path:
    """Return the path of ``vader_lexicon.txt`` inside the installed ``vaderSentiment`` package.

    Examples
    --------
    >>> path = vader_lexicon_path()
    >>> path.name, path.is_file()
    ('vader_lexicon.txt', True)
    """
    return Path(str(resources.files("vaderSentiment").joinpath("vader_lexicon.txt")))


def read_lexicon(path: Path) -> dict[str, float]:
    """Read a VADER lexicon file: one ``word<TAB>mean valence<TAB>...`` per line.

    Words are kept as written, and a word listed twice keeps its last valence (as NLTK).

    Examples
    --------
    >>> lexicon = read_lexicon(vader_lexicon_path())
    >>> len(lexicon), lexicon["good"], lexicon["hate"]
    (7506, 1.9, -2.7)
    """
    lexicon = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            word, valence = line.strip().split("\t")[:2]
            lexicon[word] = float(valence)
    return lexicon


def split_words(text: str) -> list[str]:
    """Split ``text`` into the words VADER scores: on white space, with some punctuation off.

    Words of one character are dropped; one run of :data:`EDGE_MARKS` before or after a
    word is removed if what remains has no punctuation and at least two characters, so
    contractions and emoticons are kept whole.

    Examples
    --------
    >>> split_words("Well... it's GOOD, isn't it? :) a 'quoted' (sic) e.g. !!cool")
    ['Well...', "it's", 'GOOD', "isn't", 'it', ':)', "'quoted'", '(sic)', 'e.g.', 'cool']
    """
    return [
        _strip_marks(token)
        if token[0] in _PUNCTUATION_CHARS or token[-1] in _PUNCTUATION_CHARS
        else token
        for token in text.split()
        if len(token) > 1
    ]


def _strip_marks(token: str) -> str:
    if token[-1] in _PUNCTUATION_CHARS:
        word = token.rstrip(_PUNCTUATION)
        marks = token[len(word) :]
    else:
        word = token.lstrip(_PUNCTUATION)
        marks = token[: len(token) - len(word)]
    if len(word) > 1 and marks in EDGE_MARKS and not _has_punctuation(word):
        return word
    return token


def _negates(lowered: str) -> bool:
    return lowered in NEGATIONS or "n't" in lowered


def _punctuation_emphasis(text: str) -> float:
    """Valence added by up to 4 exclamation marks, and by 2 or more question marks."""
    exclamation = min(text.count("!"), 4) * 0.292
    questions = text.count("?")
    if questions <= 1:
        return exclamation
    return exclamation + (questions * 0.18 if questions <= 3 else 0.96)


def _compound(valences: list[float], emphasis: float) -> float:
    total = float(sum(valences))  # the built-in sum, as NLTK (see the module docstring)
    if total > 0:
        total += emphasis
    elif total < 0:
        total -= emphasis
    return total / math.sqrt(total * total + ALPHA)


def _shares(valences: list[float], neutral: int, emphasis: float) -> tuple[float, float, float]:
    """(pos, neg, neu): each side's valences, counted from 1 like a neutral word, over all."""
    positive = 0.0
    negative = 0.0
    for valence in valences:
        if valence > 0:
            positive += valence + 1
        elif valence < 0:
            negative += valence - 1
        else:
            neutral += 1
    if positive > math.fabs(negative):
        positive += emphasis
    elif positive < math.fabs(negative):
        negative -= emphasis
    total = positive + math.fabs(negative) + neutral
    return math.fabs(positive / total), math.fabs(negative / total), math.fabs(neutral / total)


class Vader:
    """NLTK's VADER sentiment analyzer, reimplemented to give its exact scores faster.

    Parameters
    ----------
    lexicon : mapping of str to float
        Each word's mean valence, from -4 to 4 (:func:`read_lexicon`).

    Examples
    --------
    >>> vader = load_fast_vader()
    >>> vader.polarity_scores("The food was GREAT, but the service was kind of slow!")
    {'neg': 0.0, 'neu': 0.757, 'pos': 0.243, 'compound': 0.4954}
    >>> vader.compound("not bad at all")
    0.431
    >>> Vader({"nice": 1.8}).polarity_scores("very nice")
    {'neg': 0.0, 'neu': 0.244, 'pos': 0.756, 'compound': 0.4754}
    """

    def __init__(self, lexicon: Mapping[str, float]) -> None:
        self.lexicon = dict(lexicon)
        # What a word scores on its own: boosters score 0 even when they are in the lexicon.
        self._rated = {w: v for w, v in self.lexicon.items() if w not in _BOOSTER_WORDS}

    def polarity_scores(self, text: str) -> dict[str, float]:
        """Return NLTK's scores of ``text``: ``neg``, ``neu``, ``pos`` and ``compound``.

        ``neg``, ``neu`` and ``pos`` are the shares of negative, neutral and positive
        sentiment (each scored word counts from 1, a word outside the lexicon as 1 neutral),
        rounded to 3 decimals: they sum to about 1, or are all 0 for a text without words.
        ``compound`` is the normalised sum of the valences, in [-1, 1], rounded to 4 decimals.

        Examples
        --------
        >>> load_fast_vader().polarity_scores("I love this!")
        {'neg': 0.0, 'neu': 0.182, 'pos': 0.818, 'compound': 0.6696}
        >>> load_fast_vader().polarity_scores("")
        {'neg': 0.0, 'neu': 0.0, 'pos': 0.0, 'compound': 0.0}
        """
        valences, neutral = self._valences(text)
        if not valences:
            neu = 1.0 if neutral else 0.0
            return {"neg": 0.0, "neu": neu, "pos": 0.0, "compound": 0.0}
        emphasis = _punctuation_emphasis(text)
        pos, neg, neu = _shares(valences, neutral, emphasis)
        return {
            "neg": round(neg, 3),
            "neu": round(neu, 3),
            "pos": round(pos, 3),
            "compound": round(_compound(valences, emphasis), 4),
        }

    def compound(self, text: str) -> float:
        """Return only the compound score of ``text`` (``polarity_scores(text)["compound"]``).

        Examples
        --------
        >>> load_fast_vader().compound("This is terrible.")
        -0.4767
        """
        valences, _ = self._valences(text)
        if not valences:
            return 0.0
        return round(_compound(valences, _punctuation_emphasis(text)), 4)

    def compound_pos_neg(self, text: str) -> tuple[float, float, float]:
        """Return the ``compound``, ``pos`` and ``neg`` scores of ``text`` in one pass.

        Examples
        --------
        >>> load_fast_vader().compound_pos_neg("Lovely taste, but the box arrived crushed.")
        (-0.3182, 0.216, 0.333)
        """
        valences, neutral = self._valences(text)
        if not valences:
            return 0.0, 0.0, 0.0
        emphasis = _punctuation_emphasis(text)
        pos, neg, _ = _shares(valences, neutral, emphasis)
        return round(_compound(valences, emphasis), 4), round(pos, 3), round(neg, 3)

    def _valences(self, text: str) -> tuple[list[float], int]:
        """Valences of the lexicon words of ``text`` in order, and the number of other words.

        Words outside the lexicon (and boosters) score 0: they are only counted.
        """
        words = split_words(text)
        lowered = [word.lower() for word in words]
        rated = self._rated
        found = [i for i, word in enumerate(lowered) if word in rated]
        if not found:
            return [], len(words)
        uppers = sum(map(str.isupper, words))
        shouting = 0 < uppers < len(words)
        but = lowered.index("but") if "but" in lowered else -1
        first: dict[str, float] = {}
        valences = []
        for i in found:
            valence = first.get(words[i])
            if valence is None:
                valence = first[words[i]] = self._valence(i, words, lowered, shouting)
            if but >= 0:
                if i < but:
                    valence = valence * _BEFORE_BUT
                elif i > but:
                    valence = valence * _AFTER_BUT
            valences.append(valence)
        return valences, len(words) - len(valences)

    def _valence(self, i: int, words: list[str], lowered: list[str], shouting: bool) -> float:
        """Valence of the lexicon word ``words[i]`` given the words around it."""
        lexicon = self.lexicon
        if lowered[i] == "kind" and i + 1 < len(words) and lowered[i + 1] == "of":
            return 0.0
        valence = self._rated[lowered[i]]
        if shouting and words[i].isupper():
            valence = valence + CAPS_BOOST if valence > 0 else valence - CAPS_BOOST
        for distance in (1, 2, 3):
            if i < distance:
                break
            before = lowered[i - distance]
            if before in lexicon:
                continue
            boost = _BOOSTER_WORDS.get(before)
            if boost is not None:
                if valence < 0:
                    boost = -boost
                if shouting and words[i - distance].isupper():
                    boost = boost + CAPS_BOOST if valence > 0 else boost - CAPS_BOOST
                if distance > 1:
                    boost = boost * _FARTHER[distance]
                valence = valence + boost
            if distance == 2 and words[i - 2] == "never" and words[i - 1] in _SO_THIS:
                valence = valence * _NEVER_SO_THIS
            elif distance == 3 and (
                (words[i - 3] == "never" and words[i - 2] in _SO_THIS) or words[i - 1] in _SO_THIS
            ):
                valence = valence * _SO_THIS_BEFORE
            elif _negates(before):
                valence = valence * NEGATION
            if distance == 3:
                valence = _idioms(valence, words, i)
        least = i > 0 and lowered[i - 1] == "least" and "least" not in lexicon
        if least and (i == 1 or lowered[i - 2] not in ("at", "very")):
            valence = valence * NEGATION
        return valence


def _idioms(valence: float, words: list[str], i: int) -> float:
    """Apply the idioms and the two-word dampeners around ``words[i]`` (``i >= 3``)."""
    w3, w2, w1, w0 = words[i - 3 : i + 1]
    if w3 in _IDIOM_STARTS or w2 in _IDIOM_STARTS or w1 in _IDIOM_STARTS:
        for phrase in ((w1, w0), (w2, w1, w0), (w2, w1), (w3, w2, w1), (w3, w2)):
            if phrase in _IDIOMS:
                valence = _IDIOMS[phrase]
                break
    if w0 in _IDIOM_STARTS:
        after = words[i + 1 : i + 3]
        if after and (w0, after[0]) in _IDIOMS:
            valence = _IDIOMS[(w0, after[0])]
        if len(after) == 2 and (w0, *after) in _IDIOMS:
            valence = _IDIOMS[(w0, *after)]
    if (w3 in _BOOSTER_PAIR_STARTS and (w3, w2) in _BOOSTER_PAIRS) or (
        w2 in _BOOSTER_PAIR_STARTS and (w2, w1) in _BOOSTER_PAIRS
    ):
        valence = valence - BOOST
    return valence


@functools.cache
def load_fast_vader() -> Vader:
    """Return a :class:`Vader` with the lexicon of the ``vaderSentiment`` wheel (cached).

    Examples
    --------
    >>> load_fast_vader() is load_fast_vader()
    True
    >>> load_fast_vader().compound("Great service, thank you!")
    0.784
    """
    return Vader(read_lexicon(vader_lexicon_path()))
