"""Sentiment: VADER offline, rating labels, and the model that adapts to a shop's words."""

from __future__ import annotations

import pickle
import socket

import nltk
import pytest

from crmstream.models.sentiment import (
    SentimentModel,
    load_vader,
    rating_label,
    text_classifier,
    text_features,
    vader_lexicon_path,
    vader_score,
)

# Complaints and praise in a snack shop's own words, all neutral to VADER.
SHOP_NEGATIVE = [
    "the parcel arrived smashed",
    "box arrived smashed again",
    "lid was dented and leaking",
    "crisps arrived smashed and stale",
    "the tin was dented",
    "bag arrived leaking",
]
SHOP_POSITIVE = [
    "crisp and crunchy as always",
    "arrived crisp and crunchy",
    "so crunchy, arrived on time",
    "crunchy crisps, spot on",
    "crisp crackers",
    "crunchy and arrived on time",
]
UNSEEN_NEGATIVE = ["my order arrived smashed", "the jar was dented"]
UNSEEN_POSITIVE = ["the crackers are crunchy", "crisp biscuits this week"]

OTHER_TEXTS = [
    "I love this shop!",
    "Worst service ever. Never again.",
    "The order arrived on Tuesday.",
    "not bad at all",
    "It's OK, I guess :)",
    "",
    "REFUND NOW!!!",
    "the parcel arrived smashed but the crisps were crunchy",
]


def taught(rounds: int = 20) -> SentimentModel:
    model = SentimentModel(holdout_size=40, min_evidence=20, refresh_every=20)
    for _ in range(rounds):
        for negative, positive in zip(SHOP_NEGATIVE, SHOP_POSITIVE, strict=True):
            model.learn(negative, positive=False)
            model.learn(positive, positive=True)
    return model


def test_vader_loads_offline_from_the_wheel(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("VADER must not touch the network")

    monkeypatch.setattr(nltk, "download", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    load_vader.cache_clear()
    analyzer = load_vader()
    assert vader_lexicon_path().is_file()
    assert str(vader_lexicon_path().parent) in nltk.data.path
    assert len(analyzer.lexicon) > 7000


@pytest.mark.parametrize(
    "text", ["I love this, thank you so much!", "Great quality and a wonderful team."]
)
def test_vader_scores_obviously_positive_text_positive(text):
    assert vader_score(text) > 0.5


@pytest.mark.parametrize(
    "text", ["This is terrible, I hate it.", "Awful service, the worst shop ever."]
)
def test_vader_scores_obviously_negative_text_negative(text):
    assert vader_score(text) < -0.5


@pytest.mark.parametrize(
    ("rating", "expected"), [(1, False), (2, False), (3, None), (4, True), (5, True)]
)
def test_rating_label(rating, expected):
    assert rating_label(rating) is expected


@pytest.mark.parametrize("rating", [0, 6, -1])
def test_rating_label_rejects_impossible_ratings(rating):
    with pytest.raises(ValueError, match="1 to 5"):
        rating_label(rating)


def test_before_learning_the_score_is_vaders_compound():
    model = SentimentModel()
    for text in OTHER_TEXTS + SHOP_NEGATIVE + SHOP_POSITIVE:
        assert model.score(text) == vader_score(text) == model.vader(text)
    assert model.n_learned == 0
    assert model.weight == 0.0


def test_it_learns_shop_words_that_vader_finds_neutral():
    for text in SHOP_NEGATIVE + SHOP_POSITIVE + UNSEEN_NEGATIVE + UNSEEN_POSITIVE:
        assert vader_score(text) == 0.0, text  # the premise: VADER cannot tell
    model = taught()
    assert model.n_learned == 240
    assert model.weight > 0
    for text in SHOP_NEGATIVE:
        assert model.score(text) < -0.05, text
    for text in SHOP_POSITIVE:
        assert model.score(text) > 0.05, text
    # texts it never saw lean the right way (VADER gives them exactly 0)
    for text in UNSEEN_NEGATIVE:
        assert model.score(text) < 0.0, text
    for text in UNSEEN_POSITIVE:
        assert model.score(text) > 0.0, text


def test_scores_stay_in_range():
    model = taught()
    for text in OTHER_TEXTS + SHOP_NEGATIVE + SHOP_POSITIVE:
        assert -1.0 <= model.score(text) <= 1.0


def test_a_restored_copy_predicts_exactly_as_the_original():
    model = taught()
    model.learn("I love this shop!", positive=True)
    blob = pickle.dumps(model)
    assert b"SentimentIntensityAnalyzer" not in blob
    assert b"nltk" not in blob
    restored = pickle.loads(blob)
    assert restored.n_learned == model.n_learned
    assert restored.weight == model.weight > 0
    texts = OTHER_TEXTS + SHOP_NEGATIVE + SHOP_POSITIVE + UNSEEN_NEGATIVE + UNSEEN_POSITIVE
    assert [restored.score(t) for t in texts] == [model.score(t) for t in texts]
    # and both keep learning the same way (the replay's random draws included)
    for _ in range(3):
        for negative, positive in zip(SHOP_NEGATIVE, SHOP_POSITIVE, strict=True):
            for copy in (model, restored):
                copy.learn(negative, positive=False)
                copy.learn(positive, positive=True)
    assert [restored.score(t) for t in texts] == [model.score(t) for t in texts]


def test_learning_returns_nothing_and_leaves_its_input_alone():
    model = SentimentModel()
    text = "the parcel arrived smashed"
    assert model.learn(text, positive=False) is None
    assert text == "the parcel arrived smashed"
    pipeline = text_classifier()
    features = text_features("Crisp and crunchy, arrived on time!")
    before = dict(features)
    assert pipeline.learn_one(features, True) is None
    pipeline.predict_proba_one(features)
    assert features == before


@pytest.mark.parametrize(
    ("option", "value"),
    [("holdout_size", 0), ("min_evidence", 0), ("refresh_every", 0), ("replay_size", 0)],
)
def test_sizes_must_be_positive(option, value):
    with pytest.raises(ValueError, match=option):
        SentimentModel(**{option: value})


@pytest.mark.parametrize("cap", [-0.1, 1.5])
def test_the_weight_cap_is_a_weight(cap):
    with pytest.raises(ValueError, match="max_weight"):
        SentimentModel(max_weight=cap)


def test_evidence_needs_no_more_than_the_holdout():
    with pytest.raises(ValueError, match="exceeds holdout_size"):
        SentimentModel(holdout_size=10, min_evidence=11)


def test_an_old_checkpoint_restores_as_vader_alone():
    old = {
        "half_weight_at": 100,
        "classifier": text_classifier,
        "pipeline": None,
        "counts": {False: 5, True: 9},
    }
    model = SentimentModel.__new__(SentimentModel)
    model.__setstate__(old)
    assert model.n_learned == 0 and model.weight == 0.0
    assert model.score("This is terrible.") == vader_score("This is terrible.")


def test_crmstream_models_shows_the_earned_weight():
    from types import SimpleNamespace

    from crmstream.streams.tools.quality import conversation_quality

    model = taught()
    models = SimpleNamespace(conversations=SimpleNamespace(sentiment=model, intent=model))
    row = conversation_quality({"learned": 7, "models": models})
    assert row["sentiment_weight"] == model.weight > 0
    assert row["sentiment_ratings_learned"] == 240
