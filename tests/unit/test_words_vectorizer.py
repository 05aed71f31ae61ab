"""The sentiment classifier's inlined word features are its River pipeline's (River is the
reference): the same features in the same order, and a model that learns with them learns
exactly what one going through the pipeline's steps learns."""

from __future__ import annotations

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from river import compose, feature_extraction, linear_model

from crmstream.models.sentiment import (
    SentimentModel,
    text_classifier,
    text_features,
    words_vectorizer,
)

WORDS = ["great", "stale", "café", "NAÏVE", "re-order", "don't", "5-star", "smashed", "ok", "!!"]


@settings(max_examples=150, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join),
    )
)
def test_the_features_and_their_order_are_the_pipelines(text):
    pipeline = text_classifier()
    features = text_features(text)
    expected = pipeline.steps["TransformerUnion"].transform_one(features)
    assert list(words_vectorizer(pipeline)(features).items()) == list(expected.items())


def test_a_pipeline_of_another_shape_has_no_inlined_features():
    assert words_vectorizer(compose.Pipeline(linear_model.LogisticRegression())) is None
    other = compose.Pipeline(
        compose.TransformerUnion(
            compose.Select("vader"),
            feature_extraction.BagOfWords(on="text", ngram_range=(1, 3))
            | compose.FuncTransformer(dict)
            | feature_extraction.TFIDF(on="text"),
        ),
        linear_model.LogisticRegression(),
    )
    assert words_vectorizer(other) is None


def test_a_model_learns_and_scores_exactly_as_through_the_pipeline():
    rng = random.Random(2)
    inlined, stepwise = (
        SentimentModel(holdout_size=30, min_evidence=5, refresh_every=20) for _ in range(2)
    )
    stepwise._vectorizer = (stepwise._pipeline, None)  # the pipeline's own steps
    for n in range(400):
        positive = rng.random() < 0.5
        words = rng.choices([w for w in WORDS if w != "re-order"], k=rng.randint(1, 25))
        if positive:  # a word VADER knows nothing of
            words.insert(rng.randrange(len(words) + 1), "re-order")
        text = " ".join(words)
        inlined.learn(text, positive)
        stepwise.learn(text, positive)
        if n % 50 == 49:
            assert inlined.score(text) == stepwise.score(text)
    assert inlined.weight == stepwise.weight > 0
    assert inlined._regression().weights == stepwise._regression().weights
    restored = pickle.loads(pickle.dumps(inlined))
    assert restored.score("great café") == inlined.score("great café")
