"""The fast VADER gives NLTK's scores: on the VADER paper's corpora and on generated text.

NLTK's ``SentimentIntensityAnalyzer`` (``load_vader``) is the reference. The corpora are the
four human-rated sets of the paper (tweets, movie reviews, Amazon reviews, NYT editorials),
read from the ``vaderSentiment`` source distribution, which ``vader_sdist`` downloads once
with ``pip download`` into ``~/.cache/crmstream/datasets`` (CI has PyPI access). A failed
download fails the test: it is never skipped.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nltk.sentiment.vader import SentiText, VaderConstants

from crmstream.models.sentiment import load_vader
from crmstream.models.vader import (
    BOOST,
    BOOSTERS,
    CAPS_BOOST,
    EDGE_MARKS,
    IDIOMS,
    NEGATION,
    NEGATIONS,
    Vader,
    load_fast_vader,
    split_words,
)
from crmstream.streams.datasets.reviews import VADER_CORPORA, load_vader_corpora

KEYS = ("neg", "neu", "pos", "compound")
TOLERANCE = 1e-9

#: Sentences per corpus in vaderSentiment 3.3.2's hutto_ICWSM_2014.tar.gz.
CORPUS_SIZES = {
    "tweets": 4200,
    "movie-reviews": 10605,
    "amazon-reviews": 3708,
    "nyt-editorials": 5190,
}


def differences(text: str) -> dict[str, float]:
    """Absolute difference of each score between NLTK and the fast scorer on ``text``."""
    expected = load_vader().polarity_scores(text)
    vader = load_fast_vader()
    got = vader.polarity_scores(text)
    assert list(got) == list(KEYS)
    assert vader.compound(text) == got["compound"]
    assert vader.compound_pos_neg(text) == (got["compound"], got["pos"], got["neg"])
    return {key: abs(got[key] - expected[key]) for key in KEYS}


@pytest.fixture(scope="module")
def corpora() -> dict[str, list[str]]:
    frame = load_vader_corpora()
    return {name: frame.loc[frame["corpus"] == name, "text"].tolist() for name in VADER_CORPORA}


def test_the_word_lists_and_constants_are_nltks():
    constants = VaderConstants()
    assert BOOSTERS == constants.BOOSTER_DICT
    assert NEGATIONS == constants.NEGATE
    assert IDIOMS == constants.SPECIAL_CASE_IDIOMS
    assert set(constants.PUNC_LIST) == EDGE_MARKS
    assert (BOOST, CAPS_BOOST, NEGATION) == (
        constants.B_INCR,
        constants.C_INCR,
        constants.N_SCALAR,
    )
    assert load_fast_vader().lexicon == load_vader().lexicon


def test_every_sentence_of_the_vader_corpora_scores_as_in_nltk(corpora):
    sizes = {name: len(texts) for name, texts in corpora.items()}
    wrong = []
    largest = 0.0
    for name, texts in corpora.items():
        for number, text in enumerate(texts, start=1):
            difference = differences(text)
            largest = max(largest, *difference.values())
            if max(difference.values()) > TOLERANCE:
                wrong.append((name, number, text, difference))
    print(
        f"compared {sum(sizes.values())} sentences with NLTK ({sizes}); "
        f"largest absolute difference {largest}"
    )
    assert sum(sizes.values()) >= 20_000
    assert sizes == CORPUS_SIZES
    assert not wrong, f"{len(wrong)} sentences differ from NLTK, first: {wrong[:3]}"


def test_words_are_split_as_in_nltk(corpora):
    constants = VaderConstants()
    for texts in corpora.values():
        for text in texts:
            nltk_words = SentiText(
                text, constants.PUNC_LIST, constants.REGEX_REMOVE_PUNCTUATION
            ).words_and_emoticons
            assert split_words(text) == nltk_words, text


# Words that trigger VADER's rules, in the cases and with the punctuation that matter.
RULE_WORDS = sorted(
    {word for word in BOOSTERS if " " not in word}
    | NEGATIONS
    | {word for phrase in IDIOMS for word in phrase.split()}
    | {"kind", "sort", "just", "enough", "least", "at", "never", "so", "this", "but", "no"}
)
PHRASES = [
    *(phrase for phrase in BOOSTERS if " " in phrase),
    *IDIOMS,
    *("never so", "never this", "at least", "very least", "not the least", "but not"),
]
NEUTRAL_WORDS = ["the", "food", "service", "was", "I", "it", "a", "x", "OK", "2", "é"]
MARKS = [*sorted(EDGE_MARKS), "!!!!", "...", "(", ")", "*", "'s", ":", ":)", ":("]
LEXICON_WORDS = sorted(load_fast_vader().lexicon)


def decorated(words: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``words`` in some case, maybe with punctuation around, then white space (or none)."""
    marks = st.sampled_from([""] * len(MARKS) * 3 + MARKS)
    return st.builds(
        lambda before, word, case, after, space: before + case(word) + after + space,
        marks,
        words,
        st.sampled_from([str, str, str, str, str.upper, str.title]),
        marks,
        st.sampled_from([" "] * 8 + ["  ", "\t", "\n", ""]),
    )


lexicon_words = st.sampled_from(LEXICON_WORDS)
modifiers = st.sampled_from(RULE_WORDS) | st.sampled_from(PHRASES)
# A lexicon word after up to three modifiers: where the rules apply.
clauses = st.builds(
    lambda before, word: "".join([*before, word]),
    st.lists(decorated(modifiers), max_size=3),
    decorated(lexicon_words),
)
others = decorated(st.sampled_from(NEUTRAL_WORDS) | st.sampled_from(MARKS) | lexicon_words)
texts = st.lists(clauses | others, max_size=12).map("".join)


@settings(max_examples=1500, deadline=None)
@given(texts)
@example("oh the bomb, bad ass, yeah right, not the shit")  # idioms
@example("the food was GOOD, GOOD and good but not GREAT")  # repeats: first context
@example("least good. at least good. very least good. not the least bit bad")
@example("never so good, never this bad, it is so bad, I am kind of happy")
def test_generated_texts_score_as_in_nltk(text):
    difference = differences(text)
    assert max(difference.values()) <= TOLERANCE, (text, difference)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_any_text_scores_and_splits_as_in_nltk(text):
    constants = VaderConstants()
    nltk_words = SentiText(
        text, constants.PUNC_LIST, constants.REGEX_REMOVE_PUNCTUATION
    ).words_and_emoticons
    assert split_words(text) == nltk_words
    assert max(differences(text).values()) <= TOLERANCE


def test_a_scorer_takes_any_lexicon():
    vader = Vader({"nice": 1.8, "awful": -2.0})
    assert vader.compound("nice") > 0 > vader.compound("awful")
    assert vader.polarity_scores("nothing to see") == {
        "neg": 0.0,
        "neu": 1.0,
        "pos": 0.0,
        "compound": 0.0,
    }
