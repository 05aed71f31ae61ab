"""CustomerSegments' inlined scaling and nearest centre are River's StandardScaler and
KMeans (River is the reference): the same segments and the same centres, on shuffled,
sorted and long-run streams."""

from __future__ import annotations

import random

import pytest
from river import cluster, preprocessing

from crmstream.models.segments import FEATURES, CustomerSegments, rfm_features


def stream(seed: int, order: str) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(3000):
        if rng.random() < 0.6:  # occasional small buyers
            x = rfm_features(rng.uniform(30, 400), rng.randint(1, 3), rng.uniform(5, 80))
        else:  # frequent big spenders
            x = rfm_features(rng.uniform(0, 20), rng.randint(10, 60), rng.uniform(500, 9000))
        rows.append(x)
    if order == "sorted":
        rows.sort(key=lambda x: x["monetary"])
    elif order == "runs":
        rows.sort(key=lambda x: (x["frequency"] > 2, rng.random()))
    return rows


@pytest.mark.parametrize("order", ["shuffled", "sorted", "runs"])
@pytest.mark.parametrize("seed", [1, 2])
def test_segments_and_centres_are_rivers(seed, order):
    ours = CustomerSegments(n_segments=4, seed=seed)
    scaler = preprocessing.StandardScaler()
    kmeans = cluster.KMeans(n_clusters=4, halflife=ours.halflife, sigma=1.0, seed=seed)
    for centre in kmeans.centers.values():
        for name in FEATURES:
            centre[name]
    for x in stream(seed, order):
        expected = kmeans.predict_one(scaler.transform_one(x))
        assert ours.predict_one(x) == expected
        ours.learn_one(x)
        scaler.learn_one(x)
        kmeans.learn_one(scaler.transform_one(x))
    assert {c: dict(v) for c, v in ours.kmeans.centers.items()} == {
        c: dict(v) for c, v in kmeans.centers.items()
    }
    assert dict(ours.scaler.means) == dict(scaler.means)
    assert len({ours.predict_one(x) for x in stream(seed + 7, "shuffled")}) > 1


def test_a_feature_the_centres_lack_counts_as_in_river():
    ours = CustomerSegments(n_segments=3, seed=4)
    for x in stream(4, "shuffled")[:200]:
        ours.learn_one(x)
    odd = {"recency": 1.0, "frequency": 0.5}  # no monetary value
    scaled = ours.scaler.transform_one(odd)
    assert ours.predict_one(odd) == ours.kmeans.predict_one(scaled)
