"""Intent: keyword rules with negation and precedence, and an online classifier behind them."""

from __future__ import annotations

import itertools
import math
import pickle
import random
import typing

import pytest

from crmstream.models.intent import INTENTS, PRECEDENCE, IntentModel, intent_classifier, rule_intent
from crmstream.schemas.inputs import Intent


def test_intents_follow_the_schema_literal_in_order():
    assert typing.get_args(Intent) == INTENTS
    assert INTENTS[:-1] == PRECEDENCE


RULE_TABLE = [
    # cancel
    ("Please cancel my subscription", "cancel"),
    ("How do I cancel my account?", "cancel"),
    ("I need to cancel order 1234", "cancel"),
    ("Can you close my account please", "cancel"),
    ("UNSUBSCRIBE me from everything", "cancel"),
    ("I want to terminate my contract", "cancel"),
    ("That's it, I'm leaving.", "cancel"),
    ("I am leaving for a competitor", "cancel"),
    ("We're switching to a competitor next month", "cancel"),
    ("Why won't you cancel my membership?", "cancel"),
    ("I can not cancel my plan on the website", "cancel"),
    ("Please get my account cancelled", "cancel"),
    # refund
    ("I want a refund", "refund"),
    ("Can I get my money back?", "refund"),
    ("Will you reimburse the postage?", "refund"),
    ("I will file a chargeback with my bank", "refund"),
    ("I returned the jacket for a refund two weeks ago", "refund"),
    ("I still haven't been refunded", "refund"),
    ("You charged me twice this month", "refund"),
    # complaint
    ("I want to make a complaint", "complaint"),
    ("This is completely unacceptable", "complaint"),
    ("Terrible service from start to finish", "complaint"),
    ("Worst shop I have ever used", "complaint"),
    ("Really disappointed with the quality", "complaint"),
    ("Let me speak to a manager", "complaint"),
    ("Your agent was so rude to me", "complaint"),
    ("I'm not happy with this at all", "complaint"),
    # delivery
    ("Where is my order?", "delivery"),
    ("where's my parcel", "delivery"),
    ("Can you send me the tracking number?", "delivery"),
    ("My package has not arrived yet", "delivery"),
    ("It still hasn't arrived", "delivery"),
    ("Late delivery again", "delivery"),
    ("How long does shipping take to Spain?", "delivery"),
    ("The courier left it at the wrong house", "delivery"),
    # purchase_question
    ("What's the price of the blue kettle?", "purchase_question"),
    ("Is the XL in stock?", "purchase_question"),
    ("Is this available in other colours?", "purchase_question"),
    ("What size should I get? I'm usually a 10", "purchase_question"),
    ("Does it come in black?", "purchase_question"),
    ("Do you have a discount code for first orders?", "purchase_question"),
    ("Which model is best for a small kitchen?", "purchase_question"),
    ("How much is the annual plan?", "purchase_question"),
    # negation: the negated phrase does not count, other phrases still do
    ("I don't want to cancel, I love the service", None),
    ("I'm not going to cancel my subscription", None),
    ("No need to cancel anything, thanks", None),
    ("I'm not asking for a refund, just a replacement", None),
    ("I don\u2019t want a refund", None),
    ("This is not a complaint, just feedback", None),
    ("No complaints here!", None),
    ("Never disappointed with you guys", None),
    ("I don't want to cancel, just tell me where my order is", "delivery"),
    ("I don't want a refund. I want to cancel my account", "cancel"),
    ("Not a complaint, but is the XL in stock?", "purchase_question"),
    ("I don't want it anymore so cancel my order", "cancel"),
    # precedence: cancel > refund > complaint > delivery > purchase_question
    ("Cancel my order and give me a refund", "cancel"),
    ("Worst service ever, I want my money back", "refund"),
    ("Where is my parcel? This is unacceptable", "complaint"),
    ("Where is my order, and is the red one in stock?", "delivery"),
    ("Terrible service, I'm leaving", "cancel"),
    ("The price went up, unsubscribe me", "cancel"),
    # ordinary words that must not trigger rules
    ("In the worst case I'll order two", None),
    ("My cat loves the cardboard box", None),
    ("I'm leaving a five star review", None),
    ("Thanks, have a nice day", None),
]


@pytest.mark.parametrize(("text", "expected"), RULE_TABLE)
def test_rules_on_realistic_phrasings(text, expected):
    assert rule_intent(text) == expected


def test_rules_are_case_insensitive_and_on_word_boundaries():
    assert rule_intent("PLEASE CANCEL MY SUBSCRIPTION") == "cancel"
    assert rule_intent("Where Is My Parcel") == "delivery"
    assert rule_intent("a sizeable, priceless trackpad") is None
    assert rule_intent("my refundsmith app crashed") is None


SMALL_TALK = [
    "hi",
    "Hello there!",
    "Good morning :)",
    "thanks so much",
    "ok cool",
    "how are you today?",
    "that's all, thank you",
    "sorry, wrong chat",
    "lol",
    "see you",
]


@pytest.mark.parametrize("text", SMALL_TALK)
def test_small_talk_is_other(text):
    assert rule_intent(text) is None
    assert IntentModel().predict(text) == "other"


# A meal-kit shop's own phrasings that no rule knows: a "box" that "never showed up" is a
# delivery problem, and "pausing the plan" is how its customers cancel.
BOX_SUBJECTS = ["my box", "the box", "my meal box", "this week's box", "our box"]
BOX_PROBLEMS = [
    "never showed up",
    "hasn't shown up",
    "still hasn't turned up",
    "didn't turn up",
    "is nowhere to be seen",
    "never came",
    "went missing",
    "has not shown up yet",
]
PLAN_REQUESTS = [
    "pause {}",
    "can I pause {}",
    "please put {} on hold",
    "I'd like to freeze {}",
    "suspend {} for a month",
    "hold off on {} for now",
    "could you pause {} for a bit",
]
PLANS = ["my plan", "the plan", "my meal plan", "our plan", "my weekly plan"]
THANKS = [
    "thanks so much",
    "hello there",
    "have a great day",
    "ok cool",
    "good morning",
    "that's all, thank you",
    "you've been very helpful",
    "hi, quick question",
    "cheers",
]

TRAIN: list[tuple[str, str]] = (
    [(f"{s} {p}", "delivery") for s, p in itertools.product(BOX_SUBJECTS[:4], BOX_PROBLEMS[:6])]
    + [(t.format(p), "cancel") for t, p in itertools.product(PLAN_REQUESTS[:5], PLANS[:4])]
    + [(text, "other") for text in THANKS]
)
random.Random(7).shuffle(TRAIN)

# Unseen combinations: a new subject with every problem, every subject with new problems,
# new request templates with every plan, and every template with a new plan.
HELD_OUT: list[tuple[str, str]] = (
    [(f"{BOX_SUBJECTS[4]} {p}", "delivery") for p in BOX_PROBLEMS]
    + [(f"{s} {p}", "delivery") for s, p in itertools.product(BOX_SUBJECTS[:4], BOX_PROBLEMS[6:])]
    + [(t.format(p), "cancel") for t, p in itertools.product(PLAN_REQUESTS[5:], PLANS)]
    + [(t.format(PLANS[4]), "cancel") for t in PLAN_REQUESTS[:5]]
)


def trained(model: IntentModel | None = None) -> IntentModel:
    model = model if model is not None else IntentModel()
    for text, intent in TRAIN:
        model.learn(text, intent)
    return model


def test_shop_phrasings_are_unknown_to_the_rules():
    assert len(TRAIN) >= 50
    assert len(HELD_OUT) >= 30
    assert not {text for text, _ in HELD_OUT} & {text for text, _ in TRAIN}
    for text, _ in TRAIN + HELD_OUT:
        assert rule_intent(text) is None, text


def test_classifier_learns_shop_phrasings_and_generalises_to_paraphrases():
    model = IntentModel()
    assert [model.predict(text) for text, _ in HELD_OUT] == ["other"] * len(HELD_OUT)

    trained(model)

    assert model.n_learned == len(TRAIN)
    assert [model.predict(text) for text, _ in HELD_OUT] == [intent for _, intent in HELD_OUT]


def test_small_talk_stays_other_after_learning():
    model = trained()
    for text in SMALL_TALK:
        assert model.predict(text) == "other", text
    for text in ["what a lovely morning", "no worries at all", "bye for now"]:
        assert model.predict(text) == "other", text


def test_below_min_examples_the_classifier_never_overrides():
    model = IntentModel(min_examples=len(TRAIN))
    for text, intent in TRAIN[:-1]:
        model.learn(text, intent)
    assert [model.predict(text) for text, _ in HELD_OUT] == ["other"] * len(HELD_OUT)
    assert all(model.predict_proba(text)["other"] == 1.0 for text, _ in HELD_OUT)

    model.learn(*TRAIN[-1])

    assert [model.predict(text) for text, _ in HELD_OUT] == [intent for _, intent in HELD_OUT]


def test_below_min_confidence_the_classifier_never_overrides():
    model = trained(IntentModel(min_confidence=1.0))
    assert [model.predict(text) for text, _ in HELD_OUT] == ["other"] * len(HELD_OUT)


def test_rules_win_over_the_classifier():
    model = IntentModel(min_examples=1)
    for _ in range(30):
        model.learn("I want a refund", "other")
        model.learn("where is my order", "complaint")
    assert model.predict("I want a refund") == "refund"
    assert model.predict("where is my order") == "delivery"
    assert model.predict_proba("where is my order")["delivery"] == 1.0


def test_predict_proba_covers_every_intent_and_agrees_with_predict():
    model = trained()
    for text in [t for t, _ in HELD_OUT] + SMALL_TALK + [t for t, _ in RULE_TABLE]:
        proba = model.predict_proba(text)
        assert tuple(proba) == INTENTS
        assert math.isclose(sum(proba.values()), 1.0)
        assert all(0.0 <= p <= 1.0 for p in proba.values())
        best = max(proba, key=proba.__getitem__)
        if best != "other" and proba[best] >= model.min_confidence:
            assert model.predict(text) == best
        else:
            assert model.predict(text) == "other"


def test_unknown_label_raises_and_leaves_the_model_unchanged():
    model = trained()
    before = pickle.dumps(model)
    with pytest.raises(ValueError, match="unknown intent 'pause'"):
        model.learn("pause my plan", "pause")
    with pytest.raises(ValueError, match="unknown intent"):
        model.learn("pause my plan", "Cancel")
    assert model.n_learned == len(TRAIN)
    assert pickle.dumps(model) == before


def test_learn_returns_none():
    assert IntentModel().learn("pause my plan", "cancel") is None


def test_predict_does_not_learn():
    model = trained()
    before = pickle.dumps(model)
    for text, _ in HELD_OUT:
        model.predict(text)
        model.predict_proba(text)
    assert pickle.dumps(model) == before


def test_learn_does_not_mutate_inputs_or_share_state_between_models():
    examples = list(TRAIN)
    snapshot = [tuple(example) for example in examples]
    model, untouched = IntentModel(), IntentModel()
    for text, intent in examples:
        model.learn(text, intent)
    assert examples == snapshot
    assert untouched.n_learned == 0
    assert untouched.classifier is not model.classifier
    assert untouched.classifier.predict_proba_one(HELD_OUT[0][0]) in (None, {})


def test_parameters_are_stored_unchanged():
    model = IntentModel(min_examples=7, min_confidence=0.75, make_classifier=intent_classifier)
    assert model.min_examples == 7
    assert model.min_confidence == 0.75
    assert model.make_classifier is intent_classifier
    assert "min_examples=7" in repr(model)


@pytest.mark.parametrize(
    "kwargs", [{"min_examples": -1}, {"min_confidence": -0.1}, {"min_confidence": 1.5}]
)
def test_invalid_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        IntentModel(**kwargs)


def test_pickle_round_trip_predicts_identically_and_keeps_learning_identically():
    model = trained()
    restored = pickle.loads(pickle.dumps(model))
    texts = [t for t, _ in HELD_OUT + TRAIN + RULE_TABLE] + SMALL_TALK
    assert restored.n_learned == model.n_learned
    assert [restored.predict(t) for t in texts] == [model.predict(t) for t in texts]
    assert [restored.predict_proba(t) for t in texts] == [model.predict_proba(t) for t in texts]

    for text, intent in HELD_OUT[:5]:
        model.learn(text, intent)
        restored.learn(text, intent)
    assert [restored.predict_proba(t) for t in texts] == [model.predict_proba(t) for t in texts]


# -- the required-word filter ---------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from crmstream.models import intent as intent_module  # noqa: E402
from crmstream.models.intent import required_words  # noqa: E402


def _every_pattern(text: str) -> Intent | None:
    """``rule_intent`` without the required-word filter: every pattern runs."""
    normalised = intent_module._normalise(text)
    for intent in PRECEDENCE:
        if intent_module._matches(intent, normalised, None):
            return intent
    return None


# Words of the rules, negations and fillers, in any case, so that generated messages hit
# the patterns, their negations and their near misses.
_EXTRA = (
    "i i'm am we my our the a to it this you your me us not no don't never do did want "
    "need asking for of up at all over another different instead store shop is are "
    "where when will arrive come get here how much in does have sell stock can't won't "
    "switching going moving competitor cancelled cancelling refunds charged double "
    "over-charged money back twice auto-renew renew account close leaving . , ! ?"
)
_TOKENS = sorted(
    {
        *(w for words in intent_module._COMPILED.values() for _, r in words for w in r or ()),
        *_EXTRA.split(),
    }
)
_MESSAGES = st.lists(
    st.sampled_from(_TOKENS).flatmap(lambda w: st.sampled_from([w, w.upper(), w.capitalize()])),
    max_size=14,
).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(_MESSAGES)
def test_the_required_word_filter_never_hides_a_match(text):
    for intent, patterns in intent_module._COMPILED.items():
        for pattern, words in patterns:
            if pattern.search(text) and words is not None:
                assert any(w in text.lower() for w in words), (intent, pattern.pattern, text)
    assert rule_intent(text) == _every_pattern(text)


def test_the_filter_agrees_with_every_pattern_on_real_text():
    from crmstream.streams.datasets.reviews import load_vader_corpora

    texts = list(load_vader_corpora()["text"])
    assert len(texts) > 20_000
    found = [rule_intent(t) for t in texts]
    assert found == [_every_pattern(t) for t in texts]
    assert sum(f is not None for f in found) > 500  # the rules do fire on this text


def test_non_ascii_text_runs_every_pattern():
    # The engine folds the Kelvin sign to "k" and the long s to "s"; str.lower() does not.
    for text, intent in (
        ("Please unſubscribe me", "cancel"),
        ("Any trac\u212aing number?", "delivery"),
    ):
        assert rule_intent(text) == intent == _every_pattern(text)


def test_required_words_of_alternations_and_repeats():
    assert required_words(r"\b(?:lost|missing)\s+(?:parcel|package)s?\b") == {"lost", "missing"}
    assert required_words(r"(?:ab|\w+)cd") == {"cd"}  # one alternative promises nothing
    assert required_words(r"(?:xyz)*\bq") == {"q"}  # zero repetitions promise nothing
    assert required_words(r"\s+\w*") is None
