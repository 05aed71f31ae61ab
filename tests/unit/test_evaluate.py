"""``crmstream evaluate sentiment``: input parsing, metrics, and the --json contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crmstream.models.sentiment import vader_score
from crmstream.streams.cli import main
from crmstream.streams.evaluation.sentiment import (
    DataError,
    Example,
    classification_metrics,
    evaluate_sentiment,
    predict,
    read_examples,
    reorder,
)

P, N = True, False


def write_lines(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_metrics_on_a_hand_made_set():
    truth = [P, P, P, P, N, N, N, N]
    said = ["positive", "positive", "positive", "neutral"]  # for the four positives
    said += ["negative", "negative", "positive", "neutral"]  # for the four negatives
    metrics = classification_metrics(truth, said)
    assert metrics["accuracy"] == 5 / 8
    assert metrics["recall"] == {"positive": 3 / 4, "negative": 2 / 4}
    # positive: precision 3/4, recall 3/4 -> F1 0.75; negative: precision 1, recall 1/2 -> 2/3
    assert metrics["macro_f1"] == pytest.approx((0.75 + 2 / 3) / 2)


def test_a_class_never_predicted_has_zero_f1_not_an_error():
    metrics = classification_metrics([P, N], ["positive", "positive"])
    assert metrics["recall"] == {"positive": 1.0, "negative": 0.0}
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_the_neutral_band_is_vaders():
    assert [predict(s) for s in (0.051, 0.05, 0.0, -0.05, -0.051)] == [
        "positive",
        "neutral",
        "neutral",
        "neutral",
        "negative",
    ]


def test_a_neutral_vader_score_counts_as_wrong():
    neutral, positive = "The parcel arrived on Tuesday.", "I love it, wonderful!"
    assert vader_score(neutral) == 0.0 and vader_score(positive) > 0.05
    test = [Example(neutral, P), Example(positive, P), Example(neutral, N)]
    report = evaluate_sentiment([], test)
    assert report["n_test"] == 3  # nothing skipped
    assert report["vader"]["accuracy"] == pytest.approx(1 / 3)
    assert report["vader"]["recall"] == {"positive": 0.5, "negative": 0.0}
    assert report["adapted"] == report["vader"]  # nothing learned: the adapted model is VADER


def test_reading_labels_and_ratings(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"text": "good", "label": "positive"}\n'
        "\n"
        '{"text": "bad", "rating": 1}\n'
        '{"text": "meh", "rating": 3}\n'
        '{"text": "fine", "rating": 4, "extra": "ignored"}\n',
        encoding="utf-8",
    )
    assert read_examples(path) == [
        Example("good", P),
        Example("bad", N),
        Example("fine", P),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["text"]', "expected a JSON object"),
        ('{"label": "positive"}', "'text' must be a string"),
        ('{"text": "x", "label": "good"}', "'label' must be 'positive' or 'negative'"),
        ('{"text": "x", "rating": 6}', "'rating' must be an integer from 1 to 5"),
        ('{"text": "x", "rating": "5"}', "'rating' must be an integer from 1 to 5"),
        ('{"text": "x", "rating": true}', "'rating' must be an integer from 1 to 5"),
        ('{"text": "x"}', "needs 'label'"),
    ],
)
def test_bad_lines_are_reported_with_their_line_number(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": "negative"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_examples(path)
    assert str(error.value).startswith(f"{path}:2: ")
    assert message in str(error.value)


def test_a_file_without_labelled_texts_is_an_error(tmp_path):
    path = write_lines(tmp_path / "only3.jsonl", [{"text": "meh", "rating": 3}])
    with pytest.raises(DataError, match="no labelled texts"):
        read_examples(path)


def test_the_adapted_model_learns_the_train_file(tmp_path):
    # the newest 200 texts of each class are held out as evidence before they are learned
    train = [Example("the parcel arrived smashed", N), Example("crisp and crunchy", P)] * 300
    test = [Example("the parcel arrived smashed", N), Example("crisp and crunchy", P)]
    report = evaluate_sentiment(train, test)
    assert report["n_train"] == 600
    assert report["vader"]["accuracy"] == 0.0  # both neutral to VADER
    assert report["adapted"]["accuracy"] == 1.0
    assert report["adapted"]["macro_f1"] == 1.0


def test_json_output_is_one_object_with_the_documented_keys(tmp_path):
    train = write_lines(
        tmp_path / "train.jsonl",
        [{"text": "the parcel arrived smashed", "rating": 1}, {"text": "crisp", "rating": 5}] * 5
        + [{"text": "so-so", "rating": 3}],
    )
    test = write_lines(
        tmp_path / "test.jsonl",
        [
            {"text": "I hate it", "label": "negative"},
            {"text": "I love it", "label": "positive"},
            {"text": "arrived smashed", "label": "negative"},
        ],
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "crmstream.streams.cli", "evaluate", "sentiment"),
            *("--train", str(train), "--test", str(test), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert done.stdout.strip().count("\n") == 0
    assert set(report) == {
        *("vader", "adapted", "texts_per_second", "n_train", "n_test", "order", "weight")
    }
    assert report["order"] == "given" and report["weight"] == 0.0  # too few texts to earn any
    for model in ("vader", "adapted"):
        assert set(report[model]) == {"accuracy", "macro_f1", "recall"}
        assert set(report[model]["recall"]) == {"negative", "positive"}
        assert 0.0 <= report[model]["accuracy"] <= 1.0
        assert 0.0 <= report[model]["macro_f1"] <= 1.0
    assert set(report["texts_per_second"]) == {"vader", "adapted"}
    assert all(rate > 0 for rate in report["texts_per_second"].values())
    assert (report["n_train"], report["n_test"]) == (10, 3)


def test_the_table_names_the_metrics(tmp_path, capsys):
    train = write_lines(tmp_path / "train.jsonl", [{"text": "bad", "label": "negative"}])
    test = write_lines(tmp_path / "test.jsonl", [{"text": "I love it", "label": "positive"}])
    assert main(["evaluate", "sentiment", "--train", str(train), "--test", str(test)]) == 0
    out = capsys.readouterr().out
    for word in ("accuracy", "macro F1", "recall negative", "recall positive", "texts/s"):
        assert word in out


def test_a_bad_file_exits_2_naming_the_line(tmp_path, capsys):
    train = write_lines(tmp_path / "train.jsonl", [{"text": "ok", "label": "negative"}, {}])
    test = write_lines(tmp_path / "test.jsonl", [{"text": "ok", "label": "negative"}])
    assert main(["evaluate", "sentiment", "--train", str(train), "--test", str(test)]) == 2
    captured = capsys.readouterr()
    assert f"{train}:2:" in captured.err
    assert captured.out == ""


def test_the_cli_offers_every_training_order():
    from crmstream.streams.cli import SENTIMENT_ORDERS
    from crmstream.streams.evaluation.sentiment import ORDERS

    assert SENTIMENT_ORDERS == ORDERS


@pytest.mark.parametrize("order", ["sorted", "runs", "skewed", "shuffled"])
def test_the_order_option_reorders_the_train_file(tmp_path, capsys, order):
    records = [{"text": f"smashed {i}", "label": "negative"} for i in range(300)]
    records += [{"text": f"crunchy {i}", "label": "positive"} for i in range(300)]
    train = write_lines(tmp_path / "train.jsonl", records)
    test = write_lines(tmp_path / "test.jsonl", [{"text": "smashed", "label": "negative"}])
    argv = ["evaluate", "sentiment", "--train", str(train), "--test", str(test), "--json"]
    assert main([*argv, "--order", order]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["order"] == order and report["n_train"] == 600
    assert report["adapted"]["recall"]["negative"] == 1.0  # learned in any order


def test_an_unknown_order_is_refused(tmp_path, capsys):
    train = write_lines(tmp_path / "train.jsonl", [{"text": "bad", "label": "negative"}])
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "sentiment", "--train", str(train), "--test", str(train), "--order", "x"])
    assert exit_.value.code == 2
    assert "invalid choice: 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("order", ["given", "shuffled", "sorted", "runs", "skewed"])
def test_every_order_is_a_permutation(order):
    examples = [Example(f"t{i}", i % 7 < 2) for i in range(2500)]
    ordered = reorder(examples, order, seed=3)
    assert sorted(e.text for e in ordered) == sorted(e.text for e in examples)


def test_the_adversarial_orders_have_their_shape():
    examples = [Example(f"t{i}", i % 2 == 0) for i in range(4000)]
    labels = [e.positive for e in reorder(examples, "sorted")]
    assert labels == [True] * 2000 + [False] * 2000
    labels = [e.positive for e in reorder(examples, "runs")]
    assert labels == ([True] * 1000 + [False] * 1000) * 2
    labels = [e.positive for e in reorder(examples, "skewed")]
    assert sum(labels[:2000]) == 1900 and sum(labels[2000:]) == 100
